//! The linear engine against a naive f64 reference, on random galleries.

use proptest::prelude::*;
use search_core::{Hit, SearchIndex, Vectors};
use search_linear::{LinearIndex, ScanMode};

fn naive_cosines(gallery: &[Vec<f32>], q: &[f32]) -> Vec<f64> {
    let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    gallery
        .iter()
        .map(|r| {
            r.iter()
                .zip(q)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum::<f64>()
                / (norm(r) * norm(q))
        })
        .collect()
}

fn gallery_and_query(dim: usize) -> impl Strategy<Value = (Vec<Vec<f32>>, Vec<f32>)> {
    let row = proptest::collection::vec(-1f32..1.0, dim)
        .prop_filter("non-zero", |v| v.iter().any(|&x| x.abs() > 1e-3));
    (proptest::collection::vec(row.clone(), 1..300), row)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn threshold_search_equals_naive_reference((gallery, q) in gallery_and_query(24), tau in -0.5f32..0.9) {
        let flat: Vec<f32> = gallery.iter().flatten().copied().collect();
        let index = LinearIndex::build(Vectors::new(24, flat).unwrap().view(), &Default::default(), &()).unwrap();
        let cos = naive_cosines(&gallery, &q);
        let got = index.search_threshold(&q, tau).unwrap();
        // Rows clearly above or below τ must be decided the same way; rows within float
        // rounding of τ may go either way.
        let eps = 1e-5;
        for (i, &c) in cos.iter().enumerate() {
            let found = got.iter().any(|h| h.id as usize == i);
            if c > f64::from(tau) + eps { prop_assert!(found, "row {i} (cos {c}) missing at tau {tau}"); }
            if c < f64::from(tau) - eps { prop_assert!(!found, "row {i} (cos {c}) returned at tau {tau}"); }
        }
        for h in &got {
            prop_assert!((f64::from(h.score) - cos[h.id as usize]).abs() < eps);
        }
        prop_assert!(got.windows(2).all(|w| Hit::ranking(&w[0], &w[1]).is_le()));
    }

    #[test]
    fn top_k_equals_naive_reference((gallery, q) in gallery_and_query(16), k in 1usize..20) {
        let flat: Vec<f32> = gallery.iter().flatten().copied().collect();
        let mut index = LinearIndex::build(Vectors::new(16, flat).unwrap().view(), &Default::default(), &()).unwrap();
        let cos = naive_cosines(&gallery, &q);
        let mut order: Vec<usize> = (0..gallery.len()).collect();
        order.sort_by(|&a, &b| cos[b].total_cmp(&cos[a]).then(a.cmp(&b)));
        let single = index.search(&q, k).unwrap();
        index.set_scan_mode(ScanMode::Compact).unwrap();
        let compact = index.search(&q, k).unwrap();
        let batch = index.search_batch(Vectors::new(16, q.clone()).unwrap().view(), k).unwrap().remove(0);
        for got in [single, compact, batch] {
            prop_assert_eq!(got.len(), k.min(gallery.len()));
            prop_assert!(got.windows(2).all(|w| Hit::ranking(&w[0], &w[1]).is_lt()));
            for (rank, h) in got.iter().enumerate() {
                // The score at each rank equals the reference's score at that rank (ties may swap ids).
                prop_assert!((f64::from(h.score) - cos[order[rank]]).abs() < 1e-5, "rank {rank}: {} vs {}", h.score, cos[order[rank]]);
                prop_assert!((f64::from(h.score) - cos[h.id as usize]).abs() < 1e-5);
            }
        }
    }
}

#[test]
fn save_load_round_trip_gives_identical_answers() {
    let data: Vec<f32> = (0..64 * 40)
        .map(|i| ((i * 7919 % 113) as f32) - 56.0)
        .collect();
    let index = LinearIndex::build(
        Vectors::new(64, data).unwrap().view(),
        &Default::default(),
        &(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("linear.idx");
    index.save(&path).unwrap();
    let loaded = LinearIndex::load(&path).unwrap();
    let q: Vec<f32> = (0..64).map(|i| (i % 5) as f32 - 2.0).collect();
    assert_eq!(index.search(&q, 7).unwrap(), loaded.search(&q, 7).unwrap());
    assert_eq!(
        index.search_threshold(&q, 0.1).unwrap(),
        loaded.search_threshold(&q, 0.1).unwrap()
    );
    assert_eq!((loaded.dim(), loaded.len()), (64, 40));
}

#[test]
fn bad_inputs_are_errors() {
    let index = LinearIndex::build(
        Vectors::new(2, vec![1.0, 0.0]).unwrap().view(),
        &Default::default(),
        &(),
    )
    .unwrap();
    assert!(index.search(&[1.0, 0.0], 0).is_err());
    assert!(index.search(&[1.0], 1).is_err());
    assert!(index.search(&[0.0, 0.0], 1).is_err());
    assert!(index.search(&[f32::NAN, 1.0], 1).is_err());
    assert!(index.search_threshold(&[1.0, 0.0], 1.5).is_err());
    assert!(
        LinearIndex::build(
            Vectors::new(2, vec![0.0, 0.0]).unwrap().view(),
            &Default::default(),
            &()
        )
        .is_err()
    );
}

/// Galleries that stress the exact re-check: clusters of near-duplicates (scores within the
/// compact error bound of each other), exact duplicates (ties broken by row), spiky rows.
fn hard_gallery(dim: usize) -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
    (
        proptest::collection::vec(proptest::collection::vec(-1f32..1.0, dim), 1..6),
        proptest::collection::vec((0usize..6, -1e-3f32..1e-3, 0usize..3), 1..400),
        proptest::collection::vec(-1f32..1.0, dim),
    )
        .prop_map(move |(centres, rows, q)| {
            let mut flat = Vec::with_capacity(rows.len() * dim);
            for (i, &(c, jitter, kind)) in rows.iter().enumerate() {
                let centre = &centres[c % centres.len()];
                for (j, &x) in centre.iter().enumerate() {
                    flat.push(match kind {
                        0 => x,                                           // duplicate
                        1 => x + jitter * ((i * 31 + j * 17) % 7) as f32, // near-duplicate
                        _ => {
                            if j == i % dim {
                                1.0
                            } else {
                                x * 1e-3
                            }
                        } // spiky
                    });
                }
            }
            let mut q = q;
            if q.iter().all(|&x| x.abs() < 1e-3) {
                q[0] = 1.0;
            }
            (flat, q)
        })
}

fn with_mode(flat: &[f32], dim: usize, mode: ScanMode) -> LinearIndex {
    let mut index = LinearIndex::build(
        Vectors::new(dim, flat.to_vec()).unwrap().view(),
        &Default::default(),
        &(),
    )
    .unwrap();
    index.set_scan_mode(mode).unwrap();
    index
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn compact_scan_equals_f32_scan_exactly((flat, q) in hard_gallery(40), k in 1usize..30, tau in -0.2f32..0.99) {
        let plain = with_mode(&flat, 40, ScanMode::F32);
        let compact = with_mode(&flat, 40, ScanMode::Compact);
        prop_assert_eq!(compact.search(&q, k).unwrap(), plain.search(&q, k).unwrap());
        prop_assert_eq!(compact.search_threshold(&q, tau).unwrap(), plain.search_threshold(&q, tau).unwrap());
        // A gallery row as the query: its own cluster ties at the top.
        let row0 = flat[..40].to_vec();
        prop_assert_eq!(compact.search(&row0, k).unwrap(), plain.search(&row0, k).unwrap());
    }

    #[test]
    fn batch_equals_single_queries_exactly((flat, q) in hard_gallery(24), k in 1usize..30, tau in -0.2f32..0.99) {
        let index = with_mode(&flat, 24, ScanMode::F32);
        let mut queries = q.clone();
        queries.extend_from_slice(&flat[..24]);
        queries.extend(q.iter().rev());
        let qv = Vectors::new(24, queries).unwrap();
        let top = index.search_batch(qv.view(), k).unwrap();
        let above = index.search_batch_threshold(qv.view(), tau).unwrap();
        prop_assert_eq!(top.len(), 3);
        for (i, row) in qv.view().rows().enumerate() {
            prop_assert_eq!(&top[i], &index.search(row, k).unwrap());
            prop_assert_eq!(&above[i], &index.search_threshold(row, tau).unwrap());
        }
    }
}

#[test]
fn every_path_agrees_on_a_large_synthetic_gallery() {
    // Big enough for the parallel and compact paths of ScanMode::Auto and several batch blocks.
    let spec = embed_store::synth::SynthSpec {
        identities: 20,
        images_per_identity: 4,
        distractors: 30_000,
        dim: 128,
        seed: 5,
    };
    let data = embed_store::synth::generate(&spec, &());
    let gallery = data.gallery.vectors();
    let auto = LinearIndex::build(gallery.view(), &Default::default(), &()).unwrap();
    let plain = with_mode(gallery.as_slice(), 128, ScanMode::F32);
    let queries = data.queries.vectors();
    let batch = auto.search_batch(queries.view(), 10).unwrap();
    let batch_tau = auto.search_batch_threshold(queries.view(), 0.3).unwrap();
    let mut rechecked = 0;
    for (i, q) in queries.view().rows().enumerate() {
        let want = plain.search(q, 10).unwrap();
        let (got, stats) = auto.search_with_stats(q, 10).unwrap();
        assert_eq!(got, want, "query {i}");
        assert_eq!(batch[i], want, "batch query {i}");
        assert_eq!(stats.rows_compact, gallery.len(), "auto mode scanned codes");
        rechecked += stats.rows_f32;
        let want_tau = plain.search_threshold(q, 0.3).unwrap();
        assert_eq!(auto.search_threshold(q, 0.3).unwrap(), want_tau);
        assert_eq!(batch_tau[i], want_tau);
        // The person's gallery images are found.
        assert!(
            want_tau.len() >= 3,
            "query {i} found {} same-person images",
            want_tau.len()
        );
    }
    // The bound is tight enough to re-check a small fraction of rows.
    assert!(
        rechecked < queries.len() * gallery.len() / 20,
        "{rechecked} rows re-checked"
    );
}

#[test]
fn version_1_files_still_open_and_cut_files_are_errors() {
    let data: Vec<f32> = (0..32 * 50)
        .map(|i| ((i * 7919 % 101) as f32) - 50.0)
        .collect();
    let index = LinearIndex::build(
        Vectors::new(32, data.clone()).unwrap().view(),
        &Default::default(),
        &(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A version-1 file as the first release wrote it: meta [dim, len] + vectors.
    let v1 = dir.path().join("v1.idx");
    let meta = [32u64, 50];
    search_core::container::write_container(
        &v1,
        b"linear\0\0",
        1,
        &[
            ("meta", bytemuck::cast_slice(&meta)),
            ("vectors", bytemuck::cast_slice(index.vectors())),
        ],
    )
    .unwrap();
    let old = LinearIndex::load(&v1).unwrap();
    assert!(!old.has_codes());
    let q: Vec<f32> = (0..32).map(|i| (i % 3) as f32 - 1.0).collect();
    assert_eq!(old.search(&q, 5).unwrap(), index.search(&q, 5).unwrap());

    let path = dir.path().join("v2.idx");
    index.save(&path).unwrap();
    let full = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.idx");
    // Every section must be whole; only the final alignment padding may go.
    let data_end = find_code_meta(&full, &index) + 2 * 50 * 4;
    for len in (0..data_end).step_by(61).chain([data_end - 1]) {
        std::fs::write(&cut, &full[..len]).unwrap();
        assert!(
            LinearIndex::load(&cut).is_err(),
            "a file cut to {len} bytes opened"
        );
    }
    // Corrupt code constants are caught on load.
    let mut bad = full.clone();
    let scales: Vec<u8> = bytemuck::cast_slice::<f32, u8>(&[f32::NAN]).to_vec();
    let meta_pos = find_code_meta(&full, &index);
    bad[meta_pos..meta_pos + 4].copy_from_slice(&scales);
    std::fs::write(&cut, &bad).unwrap();
    let err = LinearIndex::load(&cut).unwrap_err().to_string();
    assert!(err.contains("code constants of row 0"), "{err}");
}

fn find_code_meta(file: &[u8], index: &LinearIndex) -> usize {
    // The table entry of "code_meta" gives its offset: 24-byte header, 32-byte entries.
    let count = u32::from_le_bytes(file[20..24].try_into().unwrap()) as usize;
    (0..count)
        .map(|i| &file[24 + 32 * i..56 + 32 * i])
        .find(|e| e.starts_with(b"code_meta\0"))
        .map(|e| u64::from_le_bytes(e[16..24].try_into().unwrap()) as usize)
        .filter(|_| index.has_codes())
        .expect("a code_meta section")
}

#[test]
fn the_notebooks_npy_opens_through_a_cache_made_once() {
    let spec = embed_store::synth::SynthSpec {
        identities: 5,
        images_per_identity: 3,
        distractors: 300,
        dim: 64,
        seed: 9,
    };
    let data = embed_store::synth::generate(&spec, &());
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("search_data.npy");
    embed_store::npy::write_gallery(&npy, &data.gallery).unwrap(); // float64, as the notebook
    let cache = dir.path().join("search_data.linear");
    let first = LinearIndex::open_cached(&npy, &cache, embed_store::npy::read_vectors).unwrap();
    let made = std::fs::metadata(&cache).unwrap().modified().unwrap();
    let second = LinearIndex::open_cached(&npy, &cache, embed_store::npy::read_vectors).unwrap();
    assert_eq!(
        std::fs::metadata(&cache).unwrap().modified().unwrap(),
        made,
        "cache rewritten"
    );
    let built =
        LinearIndex::build(data.gallery.vectors().view(), &Default::default(), &()).unwrap();
    let q = &data.headline.vector;
    assert_eq!(first.search(q, 4).unwrap(), built.search(q, 4).unwrap());
    assert_eq!(second.search(q, 4).unwrap(), built.search(q, 4).unwrap());
    let labels: Vec<&str> = second
        .search(q, 2)
        .unwrap()
        .iter()
        .map(|h| data.gallery.label(h.id as usize))
        .collect();
    assert!(
        labels
            .iter()
            .all(|l| data.headline.truth.iter().any(|t| t == l)),
        "{labels:?}"
    );
    // A changed source is converted again.
    std::thread::sleep(std::time::Duration::from_millis(20));
    embed_store::npy::write_gallery(&npy, &data.queries).unwrap();
    let third = LinearIndex::open_cached(&npy, &cache, embed_store::npy::read_vectors).unwrap();
    assert_eq!(third.len(), data.queries.len());
}

#[test]
fn batch_inputs_are_checked() {
    let index = LinearIndex::build(
        Vectors::new(2, vec![1.0, 0.0, 0.0, 1.0]).unwrap().view(),
        &Default::default(),
        &(),
    )
    .unwrap();
    let good = Vectors::new(2, vec![1.0, 1.0]).unwrap();
    assert!(index.search_batch(good.view(), 0).is_err());
    assert!(index.search_batch_threshold(good.view(), -1.5).is_err());
    assert!(
        index
            .search_batch(Vectors::new(3, vec![1.0, 1.0, 1.0]).unwrap().view(), 1)
            .is_err()
    );
    let zero = Vectors::new(2, vec![1.0, 1.0, 0.0, 0.0]).unwrap();
    let err = index.search_batch(zero.view(), 1).unwrap_err().to_string();
    assert!(err.contains("query 1"), "{err}");
    assert_eq!(
        index
            .search_batch(Vectors::with_dim(2).view(), 3)
            .unwrap()
            .len(),
        0
    );
    let mut plain = LinearIndex::build(
        Vectors::new(2, vec![1.0, 0.0]).unwrap().view(),
        &search_linear::LinearParams {
            compact_codes: false,
        },
        &(),
    )
    .unwrap();
    assert!(plain.set_scan_mode(ScanMode::Compact).is_err());
}

#[test]
fn a_low_threshold_falls_back_to_f32_and_stays_exact() {
    let data: Vec<f32> = (0..64 * 5000u64)
        .map(|i| ((i * 7919 % 211) as f32) - 105.0)
        .collect();
    let auto = with_mode(&data, 64, ScanMode::Compact);
    let plain = with_mode(&data, 64, ScanMode::F32);
    let q: Vec<f32> = (0..64).map(|i| (i % 7) as f32 - 3.0).collect();
    for tau in [-1.0, -0.5, 0.0, 0.2, 0.9] {
        let (got, stats) = auto.search_threshold_with_stats(&q, tau).unwrap();
        assert_eq!(got, plain.search_threshold(&q, tau).unwrap(), "tau {tau}");
        if tau == -1.0 {
            assert!(
                stats.rows_compact < 5000,
                "{stats:?}: codes were read to the end"
            );
        }
    }
    for k in [1, 10, 4999, 5000, 6000] {
        assert_eq!(
            auto.search(&q, k).unwrap(),
            plain.search(&q, k).unwrap(),
            "k {k}"
        );
    }
}

#[test]
fn empty_and_very_wide_galleries_work() {
    // An empty gallery is refused (embed-store's rule), not a panic.
    assert!(LinearIndex::build(Vectors::with_dim(3).view(), &Default::default(), &()).is_err());
    // Too wide for exact i32 accumulation of the compact codes: no codes, f32 answers.
    let dim = 20_000;
    let rows: Vec<f32> = (0..3 * dim).map(|i| ((i % 17) as f32) - 8.0).collect();
    let wide = LinearIndex::build(
        Vectors::new(dim, rows.clone()).unwrap().view(),
        &Default::default(),
        &(),
    )
    .unwrap();
    assert!(!wide.has_codes());
    let hits = wide.search(&rows[dim..2 * dim], 1).unwrap();
    assert_eq!(hits[0].id, 1);
    assert!((hits[0].score - 1.0).abs() < 1e-5);
}
