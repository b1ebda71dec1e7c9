//! Save and load: the same bytes, the same answers.

use search_core::SearchIndex;
use search_forest::{ForestIndex, ForestParams, Metric};

#[test]
fn save_load_round_trip_gives_identical_answers() {
    let gallery = crate::common::gallery(2500, 24, 3);
    let forest = ForestIndex::build(
        gallery.view(),
        &ForestParams {
            n_trees: 8,
            ..Default::default()
        },
        &(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forest.ann");
    forest.save(&path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), forest.as_bytes());
    // Annoy's size rule: nodes of 12 + 4 * dim bytes.
    assert_eq!(forest.as_bytes().len(), forest.n_nodes() * (12 + 4 * 24));

    let loaded = ForestIndex::load(&path).unwrap();
    let opened = ForestIndex::open(&path, 24, Metric::Angular).unwrap();
    for other in [&loaded, &opened] {
        assert_eq!(other.dim(), 24);
        assert_eq!(other.len(), 2500);
        assert_eq!(other.n_trees(), 8);
        assert_eq!(other.as_bytes(), forest.as_bytes());
    }
    let queries = crate::common::gallery(20, 24, 77);
    for q in queries.as_slice().chunks_exact(24) {
        assert_eq!(forest.search(q, 5).unwrap(), loaded.search(q, 5).unwrap());
        assert_eq!(
            forest.search_threshold(q, 0.3).unwrap(),
            loaded.search_threshold(q, 0.3).unwrap()
        );
        assert_eq!(
            forest.nns_by_vector(q, 5, Some(300)).unwrap(),
            opened.nns_by_vector(q, 5, Some(300)).unwrap()
        );
    }
    // Saving a loaded (mapped) index over its own file works and keeps it intact.
    loaded.save(&path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), forest.as_bytes());
}

#[test]
fn same_seed_same_file_other_seed_other_file() {
    let gallery = crate::common::gallery(1500, 16, 9);
    let p = ForestParams {
        n_trees: 6,
        seed: 7,
        ..Default::default()
    };
    let a = ForestIndex::build(gallery.view(), &p, &()).unwrap();
    let b = ForestIndex::build(gallery.view(), &p, &()).unwrap();
    let c = ForestIndex::build(gallery.view(), &ForestParams { seed: 8, ..p }, &()).unwrap();
    assert_eq!(a.as_bytes(), b.as_bytes());
    assert_ne!(a.as_bytes(), c.as_bytes());
}

#[test]
fn tiny_galleries_have_bucket_roots() {
    // n <= K: every root is one bucket holding every item, as Annoy makes it.
    for n in [1usize, 2, 5, 10] {
        let gallery = crate::common::gallery(n, 8, n as u64);
        let forest = ForestIndex::build(
            gallery.view(),
            &ForestParams {
                n_trees: 3,
                ..Default::default()
            },
            &(),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.ann");
        forest.save(&path).unwrap();
        let loaded = ForestIndex::open(&path, 8, Metric::Angular).unwrap();
        assert_eq!(loaded.len(), n);
        let hits = loaded.search(gallery.row(n - 1), n).unwrap();
        assert_eq!(hits.len(), n);
        assert_eq!(hits[0].id as usize, n - 1);
    }
}

#[test]
fn large_builds_are_deterministic_and_exact_with_every_candidate() {
    // Above 4096 items the top levels of all trees are split together, level by level.
    let (n, dim, n_trees) = (9000, 16, 3);
    let gallery = crate::common::gallery(n, dim, 17);
    let p = ForestParams {
        n_trees,
        seed: 3,
        ..Default::default()
    };
    let mut a = ForestIndex::build(gallery.view(), &p, &()).unwrap();
    let b = ForestIndex::build(gallery.view(), &p, &()).unwrap();
    assert_eq!(a.as_bytes(), b.as_bytes());
    assert_eq!(a.n_trees(), n_trees);
    a.set_knob(n * n_trees).unwrap();
    let linear =
        search_linear::LinearIndex::build(gallery.view(), &Default::default(), &()).unwrap();
    let queries = crate::common::gallery(10, dim, 71);
    for q in queries.as_slice().chunks_exact(dim) {
        let got = a.search(q, 10).unwrap();
        let want = linear.search(q, 10).unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((g.score - w.score).abs() < 1e-5, "{g:?} vs {w:?}");
        }
    }
}

/// Counts what a build reports.
#[derive(Default)]
struct Counted {
    total: std::sync::atomic::AtomicU64,
    done: std::sync::atomic::AtomicU64,
}

impl search_core::Progress for Counted {
    fn set_total(&self, total: u64) {
        self.total
            .store(total, std::sync::atomic::Ordering::Relaxed);
    }
    fn advance(&self, n: u64) {
        self.done.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn progress_reaches_its_total_exactly() {
    // Large enough for the all-trees level pass above the depth-first subtrees.
    for (n, leaf_size) in [(6000, Some(16)), (6000, None), (3, Some(16))] {
        let gallery = crate::common::gallery(n, 8, 5);
        let counted = Counted::default();
        let params = ForestParams {
            n_trees: 5,
            leaf_size,
            ..Default::default()
        };
        ForestIndex::build(gallery.view(), &params, &counted).unwrap();
        let total = counted.total.into_inner();
        assert_eq!(total, 5 * n as u64);
        assert_eq!(counted.done.into_inner(), total, "n={n} leaf={leaf_size:?}");
    }
}
