//! HNSW against the exact linear engine on small random galleries.

use proptest::prelude::*;
use search_core::{Error, SearchIndex};
use search_hnsw::{HnswIndex, HnswParams};
use search_linear::LinearIndex;

use crate::common::{random_vectors, recall};

/// Odd seeds walk on f32, even seeds on int8 codes with f32 re-ranking.
fn small_params(seed: u64) -> HnswParams {
    HnswParams {
        m: 12,
        ef_construction: 100,
        ef: 50,
        seed,
        threads: 0,
        quantize: seed.is_multiple_of(2),
        ..HnswParams::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn recall_against_linear(n in 1usize..1500, dim in 2usize..40, k in 1usize..10, seed in 0u64..1000) {
        let gallery = random_vectors(n, dim, seed);
        let queries = random_vectors(30, dim, seed + 1);
        let index = HnswIndex::build(gallery.view(), &small_params(seed), &()).unwrap();
        let exact = LinearIndex::build(gallery.view(), &Default::default(), &()).unwrap();
        prop_assert_eq!(index.len(), n);
        let r = recall(&index, &exact, &queries, k);
        prop_assert!(r >= 0.95, "recall@{} = {} on {} x {}", k, r, n, dim);
        // Scores are cosines, and hits come best first.
        for q in queries.view().rows().take(3) {
            let hits = index.search(q, k).unwrap();
            prop_assert_eq!(hits.len(), k.min(n));
            prop_assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
            for h in &hits {
                let exact_score = exact.search(q, n).unwrap().into_iter().find(|e| e.id == h.id).unwrap().score;
                prop_assert!((h.score - exact_score).abs() < 1e-4);
            }
        }
    }

    /// A search for the `k` best re-ranks only the candidates that can still be among them:
    /// it must answer exactly as re-ranking all `ef` and keeping the first `k`.
    #[test]
    fn partial_rerank_keeps_the_exact_top_k(n in 1usize..1500, dim in 2usize..70, k in 1usize..10, ef in 1usize..80, seed in 0u64..1000) {
        let gallery = random_vectors(n, dim, seed);
        let queries = random_vectors(20, dim, seed + 3);
        let index = HnswIndex::build(gallery.view(), &small_params(seed), &()).unwrap();
        for q in queries.view().rows() {
            let mut all = index.search_ef(q, ef.max(k), ef).unwrap();
            all.truncate(k);
            prop_assert_eq!(index.search_ef(q, k, ef).unwrap(), all);
        }
    }

    #[test]
    fn threshold_search_against_linear(n in 1usize..800, dim in 2usize..12, tau in -0.2f32..0.9, seed in 0u64..1000) {
        let gallery = random_vectors(n, dim, seed);
        let queries = random_vectors(10, dim, seed + 7);
        let index = HnswIndex::build(gallery.view(), &small_params(seed), &()).unwrap();
        let exact = LinearIndex::build(gallery.view(), &Default::default(), &()).unwrap();
        let (mut found, mut total) = (0usize, 0usize);
        for q in queries.view().rows() {
            let truth: Vec<u32> = exact.search_threshold(q, tau).unwrap().iter().map(|h| h.id).collect();
            let got = index.search_threshold(q, tau).unwrap();
            prop_assert!(got.iter().all(|h| h.score > tau));
            prop_assert!(got.windows(2).all(|w| w[0].score >= w[1].score));
            total += truth.len();
            found += truth.iter().filter(|t| got.iter().any(|h| h.id == **t)).count();
        }
        prop_assert!(found as f64 >= 0.95 * total as f64, "threshold recall {}/{}", found, total);
    }
}

#[test]
fn one_thread_builds_are_reproducible() {
    let gallery = random_vectors(600, 16, 3);
    let p = HnswParams {
        threads: 1,
        ..small_params(9)
    };
    let a = HnswIndex::build(gallery.view(), &p, &()).unwrap();
    let b = HnswIndex::build(gallery.view(), &p, &()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    a.save(&dir.path().join("a")).unwrap();
    b.save(&dir.path().join("b")).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("a")).unwrap(),
        std::fs::read(dir.path().join("b")).unwrap()
    );
    a.verify().unwrap();
}

#[test]
fn bad_input_is_an_error() {
    let gallery = random_vectors(50, 8, 1);
    let mut index = HnswIndex::build(gallery.view(), &small_params(1), &()).unwrap();
    assert!(matches!(
        index.search(&[0.0; 8], 3),
        Err(Error::BadVector { .. })
    ));
    assert!(matches!(
        index.search(&[1.0; 7], 3),
        Err(Error::Dimension { .. })
    ));
    assert!(matches!(
        index.search(&[f32::NAN; 8], 3),
        Err(Error::BadVector { .. })
    ));
    assert!(matches!(
        index.search(&[1.0; 8], 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        index.search_threshold(&[1.0; 8], 1.5),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        index.search_threshold(&[1.0; 8], f32::NAN),
        Err(Error::InvalidArgument(_))
    ));
    assert!(index.set_knob(0).is_err());
    index.set_knob(7).unwrap();
    assert_eq!(index.knob().unwrap().value, 7);
    let mut rows = gallery.as_slice().to_vec();
    rows[8 * 3 + 2] = f32::INFINITY;
    let bad = search_core::Vectors::new(8, rows).unwrap();
    let err = HnswIndex::build(bad.view(), &small_params(1), &()).unwrap_err();
    assert!(err.to_string().contains("row 3"), "{err}");
    let p = HnswParams {
        m: 1,
        ..small_params(1)
    };
    assert!(HnswIndex::build(gallery.view(), &p, &()).is_err());
}

#[test]
fn empty_gallery_is_refused() {
    let v = search_core::Vectors::with_dim(4);
    let err = HnswIndex::build(v.view(), &small_params(1), &()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

/// The notebook's gallery lists each person's images one after the other. Inserted in id
/// order on several threads, two images of a person went into the graph at the same moment
/// and neither linked the other: a query that found the person then missed some of their
/// images (recall@4 0.949 while 0.991 of queries found the person, on 100k rows). The build
/// inserts in a random order instead, so every image of a person found is found with the rest.
#[test]
fn a_persons_images_given_together_are_found_together() {
    use embed_store::synth::{SynthSpec, generate};
    let data = generate(
        &SynthSpec {
            identities: 400,
            images_per_identity: 5,
            distractors: 20_000,
            dim: 128,
            seed: 5,
        },
        &(),
    );
    let gallery = data.gallery.vectors();
    let index = HnswIndex::build(
        gallery.view(),
        &HnswParams {
            m: 16,
            ef_construction: 100,
            threads: 2,
            ..HnswParams::default()
        },
        &(),
    )
    .unwrap();
    let exact = LinearIndex::build(gallery.view(), &Default::default(), &()).unwrap();
    let (mut partial, mut found) = (0, 0);
    for q in data.queries.vectors().view().rows() {
        let mates: Vec<u32> = exact.search(q, 4).unwrap().iter().map(|h| h.id).collect();
        let got = index.search_ef(q, 4, 40).unwrap();
        let hits = got.iter().filter(|h| mates.contains(&h.id)).count();
        found += usize::from(hits > 0);
        partial += usize::from(hits > 0 && hits < mates.len());
    }
    assert!(
        found >= 390,
        "the person was found for {found} of 400 queries"
    );
    assert!(
        partial <= 2,
        "{partial} of {found} queries found only some of the person's images"
    );
}

/// Every row of a small gallery built on several threads can be found: search with k ≥ n
/// returns all n rows. (Running the neighbour heuristic on back-links into lists that still
/// had room left some rows without any in-link: 204 of 300 two-thread builds of 5 rows.)
#[test]
fn small_parallel_builds_reach_every_row() {
    for n in [2usize, 3, 5, 8, 17] {
        let gallery = random_vectors(n, 16, 19_481 + n as u64);
        let queries = random_vectors(4, 16, 7);
        for seed in 0..60u64 {
            let params = HnswParams {
                m: 12,
                ef_construction: 80,
                ef: 5,
                seed,
                threads: 2,
                ..HnswParams::default()
            };
            let index = HnswIndex::build(gallery.view(), &params, &()).unwrap();
            for q in queries.view().rows() {
                let hits = index.search(q, n + 2).unwrap();
                assert_eq!(hits.len(), n, "{n} rows, seed {seed}: found {hits:?}");
            }
        }
    }
}
