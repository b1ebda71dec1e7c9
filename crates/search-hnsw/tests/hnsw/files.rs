//! Our own file: round trip, in-place search, and corrupt files.

use search_core::{Error, SearchIndex};
use search_hnsw::{HnswIndex, HnswParams};

use crate::common::random_vectors;

fn built(n: usize, dim: usize) -> HnswIndex {
    let gallery = random_vectors(n, dim, 11);
    let p = HnswParams {
        m: 8,
        ef_construction: 60,
        ef: 30,
        seed: 5,
        ..Default::default()
    };
    HnswIndex::build(gallery.view(), &p, &()).unwrap()
}

#[test]
fn save_load_round_trip() {
    let index = built(2000, 24);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.hnsw");
    index.save(&path).unwrap();
    let loaded = HnswIndex::load(&path).unwrap();
    assert!(loaded.is_mapped());
    assert_eq!((loaded.len(), loaded.dim(), loaded.m()), (2000, 24, 8));
    assert_eq!(loaded.knob(), index.knob());
    loaded.verify().unwrap();
    for q in random_vectors(50, 24, 99).view().rows() {
        assert_eq!(index.search(q, 5).unwrap(), loaded.search(q, 5).unwrap());
        assert_eq!(
            index.search_threshold(q, 0.3).unwrap(),
            loaded.search_threshold(q, 0.3).unwrap()
        );
    }
    // Saving a mapped index writes the same bytes.
    let again = dir.path().join("again.hnsw");
    loaded.save(&again).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&again).unwrap()
    );
}

#[test]
fn truncated_or_corrupt_files_are_errors() {
    let index = built(300, 8);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.hnsw");
    index.save(&path).unwrap();
    let full = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.hnsw");
    // The last 63 bytes may be padding after the last section.
    for len in (0..full.len() - 63).step_by(97) {
        std::fs::write(&cut, &full[..len]).unwrap();
        assert!(
            HnswIndex::load(&cut).is_err(),
            "a file cut to {len} bytes opened"
        );
    }
    // Every single header word changed to a huge value: an error, or (for fields a search
    // tolerates, like the seed) an index that still answers without panicking.
    let meta_at = 128; // the first section starts after the table, at 128 bytes
    for word in 0..15 {
        for value in [u64::MAX, 4_000_000_000, 0] {
            let mut bytes = full.clone();
            bytes[meta_at + 8 * word..meta_at + 8 * word + 8].copy_from_slice(&value.to_le_bytes());
            std::fs::write(&cut, &bytes).unwrap();
            if let Ok(i) = HnswIndex::load(&cut) {
                let _ = i.search(&[1.0; 8], 3);
            }
        }
    }
    // Garbage links: loading succeeds (no O(n) scan), searching never panics, verify reports it.
    let mut bytes = full.clone();
    let links_at = full.len() / 2;
    for b in &mut bytes[links_at..] {
        *b = 0xff;
    }
    std::fs::write(&cut, &bytes).unwrap();
    if let Ok(i) = HnswIndex::load(&cut) {
        let _ = i.search(&[1.0; 8], 3);
        let _ = i.search_threshold(&[1.0; 8], 0.1);
        let _ = i.verify();
    }
    assert!(matches!(
        HnswIndex::load(&dir.path().join("missing")),
        Err(Error::Io { .. })
    ));
}
