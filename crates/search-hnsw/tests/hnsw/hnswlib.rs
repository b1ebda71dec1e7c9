//! hnswlib's own files: fixtures written by Python hnswlib, and files we write for it.

use std::path::PathBuf;

use search_core::{Error, SearchIndex};
use search_hnsw::{HnswIndex, HnswParams, Space};

use crate::common::random_vectors;

fn fixture(name: &str) -> PathBuf {
    test_support::fixture(&format!("hnsw/{name}"))
}

fn queries(dim: usize) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(fixture("queries.f32")).unwrap();
    let all: Vec<f32> = bytemuck_free_cast(&bytes);
    all.chunks_exact(dim).map(<[f32]>::to_vec).collect()
}

fn bytemuck_free_cast(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn answers() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("answers.json")).unwrap()).unwrap()
}

#[test]
fn returns_python_hnswlibs_neighbours() {
    let answers = answers();
    let k = answers["k"].as_u64().unwrap() as usize;
    for (name, space) in [
        ("cosine", Space::Cosine),
        ("ip", Space::InnerProduct),
        ("l2", Space::L2),
    ] {
        let mut index =
            HnswIndex::load_hnswlib(&fixture(&format!("{name}.bin")), 16, space).unwrap();
        index.verify().unwrap();
        assert_eq!(index.knob().unwrap().value, 10, "hnswlib's ef after a load");
        for ef in [10usize, 50] {
            index.set_knob(ef).unwrap();
            let expected = &answers[name][ef.to_string()];
            for (qi, q) in queries(16).iter().enumerate() {
                let hits = index.search(q, k).unwrap();
                let labels: Vec<u64> = hits.iter().map(|h| u64::from(h.id)).collect();
                let want: Vec<u64> = expected["labels"][qi]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap())
                    .collect();
                assert_eq!(labels, want, "{name} ef={ef} query {qi}");
                for (h, d) in hits
                    .iter()
                    .zip(expected["distances"][qi].as_array().unwrap())
                {
                    let d = d.as_f64().unwrap();
                    let ours = match space {
                        Space::L2 => -f64::from(h.score),
                        _ => 1.0 - f64::from(h.score),
                    };
                    assert!(
                        (ours - d).abs() < 1e-4 * (1.0 + d.abs()),
                        "{name}: {ours} vs {d}"
                    );
                }
            }
        }
    }
}

#[test]
fn labels_and_deleted_marks_are_kept() {
    let ip = HnswIndex::load_hnswlib(&fixture("ip.bin"), 16, Space::InnerProduct).unwrap();
    assert!(ip.contains(1000) && ip.contains(1003) && !ip.contains(1001));
    let l2 = HnswIndex::load_hnswlib(&fixture("l2.bin"), 16, Space::L2).unwrap();
    assert_eq!((l2.len(), l2.deleted_count()), (398, 2));
    assert!(!l2.contains(5) && !l2.contains(17) && l2.contains(6));
    for q in queries(16) {
        let hits = l2.search_ef(&q, 50, 100).unwrap();
        assert!(hits.iter().all(|h| h.id != 5 && h.id != 17));
    }
    // l2 has no cosine threshold.
    assert!(matches!(
        l2.search_threshold(&queries(16)[0], 0.5),
        Err(Error::InvalidArgument(_))
    ));
    // And our own file keeps labels and marks.
    let dir = tempfile::tempdir().unwrap();
    ip.save(&dir.path().join("ip.hnsw")).unwrap();
    let back = HnswIndex::load(&dir.path().join("ip.hnsw")).unwrap();
    assert_eq!(back.space(), Space::InnerProduct);
    assert!(back.contains(1003) && !back.contains(3));
    l2.save(&dir.path().join("l2.hnsw")).unwrap();
    let back = HnswIndex::load(&dir.path().join("l2.hnsw")).unwrap();
    assert_eq!(back.deleted_count(), 2);
    let q = &queries(16)[3];
    assert_eq!(back.search(q, 5).unwrap(), l2.search(q, 5).unwrap());
}

#[test]
fn corrupt_or_mismatched_files_are_errors() {
    let full = std::fs::read(fixture("cosine.bin")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.bin");
    let open = |bytes: &[u8]| {
        std::fs::write(&cut, bytes).unwrap();
        HnswIndex::load_hnswlib(&cut, 16, Space::Cosine)
    };
    for len in (0..full.len()).step_by(61) {
        assert!(
            matches!(open(&full[..len]), Err(Error::Format { .. })),
            "cut to {len} bytes"
        );
    }
    // max_elements edited to 4e9: an error, not a huge allocation.
    let mut edited = full.clone();
    edited[8..16].copy_from_slice(&4_000_000_000u64.to_le_bytes());
    let err = open(&edited).unwrap_err();
    assert!(err.to_string().contains("max_elements"), "{err}");
    // Every header field set to something absurd: an error (or, for fields nothing depends
    // on, a working index), never a panic.
    for at in (0..96).step_by(4) {
        for value in [u32::MAX, 0x7fff_ffff, 1 << 20] {
            let mut edited = full.clone();
            edited[at..at + 4].copy_from_slice(&value.to_le_bytes());
            if let Ok(index) = open(&edited) {
                let _ = index.search(&[1.0; 16], 3);
            }
        }
    }
    // The wrong dimension does not fit the record size.
    assert!(HnswIndex::load_hnswlib(&fixture("cosine.bin"), 15, Space::Cosine).is_err());
    assert!(HnswIndex::load_hnswlib(&fixture("cosine.bin"), 0, Space::Cosine).is_err());
    // Garbage neighbour ids load (they are not scanned) but are never followed out of bounds.
    let mut garbage = full.clone();
    for rec in 0..400 {
        let at = 96 + rec * (4 + 4 * 16 + 4 * 16 + 8) + 4;
        garbage[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    }
    let index = open(&garbage).unwrap();
    assert!(index.verify().is_err());
    let _ = index.search(&[1.0; 16], 3).unwrap();
}

#[test]
fn python_hnswlib_opens_our_files_and_agrees() {
    let (n, dim, k, ef) = (1500, 24, 5, 40);
    let gallery = random_vectors(n, dim, 21);
    let qs = random_vectors(30, dim, 22);
    let dir = tempfile::tempdir().unwrap();
    let qpath = dir.path().join("q.f32");
    let qbytes: Vec<u8> = qs.as_slice().iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(&qpath, qbytes).unwrap();
    for quantize in [false, true] {
        let p = HnswParams {
            m: 10,
            ef_construction: 60,
            quantize,
            ..Default::default()
        };
        let mut index = HnswIndex::build(gallery.view(), &p, &()).unwrap();
        index.delete(7).unwrap();
        let path = dir.path().join("ours.bin");
        index.save_hnswlib(&path).unwrap();
        let out = test_support::run_python(
            "fixtures/scripts/check_hnsw_load.py",
            [
                path.to_str().unwrap(),
                "cosine",
                &dim.to_string(),
                qpath.to_str().unwrap(),
                &k.to_string(),
                &ef.to_string(),
            ],
        );
        let theirs: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(theirs["count"].as_u64().unwrap() as usize, n); // deleted items count too
        // Reading our hnswlib file back gives the same graph, and the same answers as ours
        // when walking in f32.
        let back = HnswIndex::load_hnswlib(&path, dim, Space::Cosine).unwrap();
        back.verify().unwrap();
        let mut same = 0;
        for (qi, q) in qs.view().rows().enumerate() {
            let want: Vec<u32> = theirs["labels"][qi]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            let mine: Vec<u32> = back
                .search_ef(q, k, ef)
                .unwrap()
                .iter()
                .map(|h| h.id)
                .collect();
            assert_eq!(
                mine, want,
                "hnswlib and our reading of the same file differ, query {qi}"
            );
            assert!(!want.contains(&7));
            let ours: Vec<u32> = index
                .search_ef(q, k, ef)
                .unwrap()
                .iter()
                .map(|h| h.id)
                .collect();
            same += usize::from(ours == want);
        }
        if !quantize {
            assert_eq!(same, 30, "our f32 walk and hnswlib's differ");
        } else {
            assert!(
                same >= 27,
                "only {same}/30 queries agree after int8 walk + re-rank"
            );
        }
    }
}
