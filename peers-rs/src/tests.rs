//! Both peers through the trait on a small gallery: save, load, answers, the knob, threads,
//! and damaged files (errors, never panics).

use std::path::Path;

use embed_store::synth::{SynthSpec, generate};
use embed_store::{SearchIndex, Vectors};
use rayon::prelude::*;

use crate::annoy_peer::AnnoyRs;
use crate::hnswlib_peer::HnswlibRs;

fn gallery() -> Vectors {
    let spec = SynthSpec {
        identities: 20,
        images_per_identity: 3,
        distractors: 400,
        dim: 24,
        seed: 3,
    };
    let (vectors, _) = generate(&spec, &()).gallery.into_parts();
    vectors
}

/// Saves `index`, loads it back, and checks what both peers must do.
fn round_trip<E: SearchIndex>(index: &E, dir: &Path, rows: &Vectors) -> E {
    let path = dir.join(format!("{}.idx", E::NAME));
    index.save(&path).unwrap();
    let mut loaded = E::load(&path).unwrap();
    assert_eq!((loaded.len(), loaded.dim()), (rows.len(), rows.dim()));
    // Each row finds itself first at a generous knob.
    let generous = if E::NAME == "annoy-rs" { 100_000 } else { 400 };
    loaded.set_knob(generous).unwrap();
    for i in (0..rows.len()).step_by(37) {
        let hits = loaded.search(rows.row(i), 4).unwrap();
        assert_eq!(hits[0].id as usize, i, "{}", E::NAME);
        assert!((hits[0].score - 1.0).abs() < 1e-4, "{}", E::NAME);
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        let above = loaded.search_threshold(rows.row(i), 0.5).unwrap();
        assert!(above.iter().all(|h| h.score > 0.5) && above[0].id as usize == i);
    }
    // Many threads at once answer as one.
    let one: Vec<_> = (0..rows.len())
        .map(|i| loaded.search(rows.row(i), 4).unwrap())
        .collect();
    let many: Vec<_> = (0..rows.len())
        .into_par_iter()
        .map(|i| loaded.search(rows.row(i), 4).unwrap())
        .collect();
    assert_eq!(one, many);
    assert!(loaded.search(&[f32::NAN; 24], 4).is_err());
    assert!(loaded.search(&[1.0; 23], 4).is_err());
    assert!(loaded.search(rows.row(0), 0).is_err());
    assert!(loaded.search_threshold(rows.row(0), 2.0).is_err());
    // Damaged files: errors, not panics.
    let bytes = std::fs::read(&path).unwrap();
    let bad = dir.join("damaged.idx");
    for cut in [0, 7, 40, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&bad, &bytes[..cut]).unwrap();
        assert!(E::load(&bad).is_err(), "{} cut at {cut}", E::NAME);
    }
    std::fs::write(&bad, vec![0x5a; 4096]).unwrap();
    assert!(E::load(&bad).is_err());
    loaded
}

#[test]
fn hnswlib_rs_through_the_trait() {
    let rows = gallery();
    let dir = tempfile::tempdir().unwrap();
    let built = HnswlibRs::build(rows.view(), &Default::default(), &()).unwrap();
    assert_eq!(built.knob().unwrap().value, 100);
    let loaded = round_trip(&built, dir.path(), &rows);
    assert_eq!(loaded.knob().unwrap().value, 400);
}

#[test]
fn annoy_rs_serves_our_forest_file() {
    let rows = gallery();
    let dir = tempfile::tempdir().unwrap();
    let built = AnnoyRs::build(rows.view(), &Default::default(), &()).unwrap();
    // annoy-rs serves files only.
    assert!(built.search(rows.row(0), 4).is_err());
    let mut loaded = round_trip(&built, dir.path(), &rows);
    loaded.set_knob(0).unwrap();
    assert_eq!(loaded.knob().unwrap().value, 0);
    assert!(loaded.set_knob(usize::MAX).is_err());
    // Loaded twice: each instance has its own per-thread copies.
    let again = AnnoyRs::load(Path::new(&dir.path().join("annoy-rs.idx"))).unwrap();
    assert_eq!(
        again.search(rows.row(5), 4).unwrap(),
        loaded.search(rows.row(5), 4).unwrap()
    );
}
