//! The forest against the exact linear engine: with `search_k >= n * n_trees` every item is a
//! candidate, so the answers must be exact.

use proptest::prelude::*;
use search_core::{Hit, SearchIndex, Vectors};
use search_forest::{ForestIndex, ForestParams, Metric, Split};
use search_linear::LinearIndex;

fn gallery_and_queries(dim: usize) -> impl Strategy<Value = (Vec<Vec<f32>>, Vec<Vec<f32>>)> {
    let row = proptest::collection::vec(-1f32..1.0, dim)
        .prop_filter("non-zero", |v| v.iter().any(|&x| x.abs() > 1e-3));
    // Rows drawn from a pool, so that some galleries hold duplicates (which no plane splits).
    (
        proptest::collection::vec(row.clone(), 1..40),
        proptest::collection::vec(0usize..1000, 1..400),
        proptest::collection::vec(row, 1..4),
    )
        .prop_map(|(pool, picks, queries)| {
            let rows = picks
                .iter()
                .map(|&p| pool[p % pool.len()].clone())
                .collect();
            (rows, queries)
        })
}

fn same_answers(got: &[Hit], want: &[Hit]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (rank, (g, w)) in got.iter().zip(want).enumerate() {
        // Scores agree at every rank; ids may differ only between (near-)tied scores.
        prop_assert!(
            (g.score - w.score).abs() < 1e-5,
            "rank {}: {:?} vs {:?}",
            rank,
            g,
            w
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn exhaustive_search_k_is_exact(
        (rows, queries) in gallery_and_queries(12),
        n_trees in 1usize..6,
        seed in any::<u64>(),
        k in 1usize..12,
        euclidean in any::<bool>(),
        best_of in 0u8..3,
        tau in -0.2f32..0.9,
        leaf_size in proptest::option::of(1usize..16),
    ) {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let gallery = Vectors::new(12, flat).unwrap();
        let params = ForestParams {
            n_trees,
            seed,
            metric: if euclidean { Metric::Euclidean } else { Metric::Angular },
            split: if best_of == 0 { Split::TwoMeans } else { Split::BestOf(best_of + 1) },
            leaf_size,
            ..Default::default()
        };
        let mut forest = ForestIndex::build(gallery.view(), &params, &()).unwrap();
        let linear = LinearIndex::build(gallery.view(), &Default::default(), &()).unwrap();
        prop_assert_eq!(forest.len(), rows.len());
        if rows.len() > 12 + 2 {
            // (When every root is a bucket, Annoy's root scan also counts the original roots,
            // which precede the copies and look the same: we count roots as Annoy does.)
            prop_assert_eq!(forest.n_trees(), n_trees);
        }
        forest.set_knob(rows.len() * n_trees).unwrap();
        for q in &queries {
            same_answers(&forest.search(q, k).unwrap(), &linear.search(q, k).unwrap())?;
            let got = forest.search_threshold(q, tau).unwrap();
            let want = linear.search_threshold(q, tau).unwrap();
            // Rows within rounding of tau may go either way.
            let clear = |hits: &[Hit]| hits.iter().filter(|h| (h.score - tau).abs() > 1e-5).map(|h| h.id).collect::<std::collections::BTreeSet<_>>();
            prop_assert_eq!(clear(&got), clear(&want));
        }
    }
}

#[test]
fn default_search_k_finds_exact_duplicates_of_the_query() {
    let gallery = crate::common::gallery(3000, 32, 5);
    let forest = ForestIndex::build(gallery.view(), &ForestParams::default(), &()).unwrap();
    assert_eq!(forest.n_trees(), 20);
    assert_eq!(forest.knob().unwrap().name, "search_k");
    // Annoy's k * n_trees, but at least n / 20.
    assert_eq!(forest.default_search_k(4), 150);
    assert_eq!(forest.default_search_k(10), 200);
    for i in (0..3000).step_by(97) {
        let hits = forest.search(gallery.row(i), 4).unwrap();
        assert_eq!(hits[0].id as usize, i, "query {i}");
        assert!((hits[0].score - 1.0).abs() < 1e-5);
        assert!(hits.windows(2).all(|w| Hit::ranking(&w[0], &w[1]).is_le()));
    }
}

#[test]
fn many_copies_of_one_row_build_and_are_all_found() {
    // 800 copies of one row among 1200 others, 512-d: two-means' code sums of the copies
    // outgrow their bound and are halved; no plane separates the copies, which are split at
    // random, as Annoy does.
    let dim = 512;
    let others = crate::common::gallery(1200, dim, 7);
    let copy: Vec<f32> = (0..dim)
        .map(|i| ((i * 7919 % 211) as f32 - 105.0) / 50.0)
        .collect();
    let mut rows = others.as_slice().to_vec();
    for _ in 0..800 {
        rows.extend_from_slice(&copy);
    }
    let gallery = Vectors::new(dim, rows).unwrap();
    let mut forest = ForestIndex::build(gallery.view(), &ForestParams::default(), &()).unwrap();
    forest.verify().unwrap();
    forest.set_knob(gallery.len() * 20).unwrap();
    let hits = forest.search(&copy, 800).unwrap();
    let mut ids: Vec<u32> = hits.iter().map(|h| h.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1200..2000).collect::<Vec<u32>>());
    assert!(hits.iter().all(|h| (h.score - 1.0).abs() < 1e-5));
}

#[test]
fn more_candidates_never_lower_recall_much() {
    // On clustered data, a larger search_k finds at least as many true neighbours on average.
    let n = 4000;
    let gallery = crate::common::gallery(n, 48, 11);
    let linear = LinearIndex::build(gallery.view(), &Default::default(), &()).unwrap();
    let mut forest = ForestIndex::build(
        gallery.view(),
        &ForestParams {
            n_trees: 10,
            ..Default::default()
        },
        &(),
    )
    .unwrap();
    let queries = crate::common::gallery(50, 48, 99);
    let recall = |forest: &ForestIndex| {
        let mut found = 0;
        for q in queries.as_slice().chunks_exact(48) {
            let truth: Vec<u32> = linear.search(q, 10).unwrap().iter().map(|h| h.id).collect();
            found += forest
                .search(q, 10)
                .unwrap()
                .iter()
                .filter(|h| truth.contains(&h.id))
                .count();
        }
        found as f64 / (10.0 * 50.0)
    };
    forest.set_knob(100).unwrap();
    let low = recall(&forest);
    forest.set_knob(4000).unwrap();
    let high = recall(&forest);
    forest.set_knob(n * 10).unwrap();
    let all = recall(&forest);
    assert!(high >= low, "{high} < {low}");
    assert_eq!(all, 1.0);
}

#[test]
fn bad_inputs_are_errors() {
    let gallery = crate::common::gallery(100, 8, 1);
    let forest = ForestIndex::build(gallery.view(), &ForestParams::default(), &()).unwrap();
    assert!(forest.search(&[0.0; 8], 3).is_err());
    assert!(forest.search(&[1.0; 7], 3).is_err());
    assert!(forest.search(&[f32::NAN; 8], 3).is_err());
    assert!(forest.search(&[1.0; 8], 0).is_err());
    assert!(forest.search_threshold(&[1.0; 8], 1.5).is_err());
    assert!(forest.search_threshold(&[1.0; 8], f32::NAN).is_err());
    assert!(forest.nns_by_vector(&[1.0; 8], 0, None).is_err());
    let empty = Vectors::with_dim(8);
    assert!(ForestIndex::build(empty.view(), &ForestParams::default(), &()).is_err());
    let zero_trees = ForestParams {
        n_trees: 0,
        ..Default::default()
    };
    assert!(ForestIndex::build(gallery.view(), &zero_trees, &()).is_err());
    // A bad row is refused by name, wherever it is: NaN, infinite, zero.
    for (row, damage) in [(2, f32::NAN), (57, f32::INFINITY), (99, 0.0)] {
        let mut bad = gallery.as_slice().to_vec();
        if damage == 0.0 {
            bad[row * 8..(row + 1) * 8].fill(0.0);
        } else {
            bad[row * 8 + 3] = damage;
        }
        let bad = Vectors::new(8, bad).unwrap();
        match ForestIndex::build(bad.view(), &ForestParams::default(), &()) {
            Err(search_core::Error::BadVector { what, .. }) => {
                assert_eq!(what, format!("gallery row {row}"))
            }
            other => panic!("row {row} = {damage}: {other:?}"),
        }
    }
}

#[test]
fn dimensions_up_to_the_limit_build_and_wider_ones_are_refused() {
    // 66,304 dimensions: a row's products with 8-bit plane codes still sum exactly in i32.
    for (dim, ok) in [(66_304, true), (66_336, false)] {
        let rows = crate::common::gallery(3, dim, 9);
        match ForestIndex::build(rows.view(), &ForestParams::default(), &()) {
            Ok(forest) => {
                assert!(ok, "{dim} dims built");
                assert_eq!(forest.search(&rows.as_slice()[..dim], 1).unwrap()[0].id, 0);
            }
            Err(search_core::Error::InvalidArgument(message)) => {
                assert!(!ok, "{dim} dims refused: {message}");
                assert!(message.contains("66304"), "{message}");
            }
            Err(other) => panic!("{dim} dims: {other:?}"),
        }
    }
}
