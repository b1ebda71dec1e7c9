//! Adding and deleting items after the build, and keeping them through save/load.

use search_core::{Error, SearchIndex, Vectors};
use search_hnsw::{HnswIndex, HnswParams};
use search_linear::LinearIndex;

use crate::common::random_vectors;

/// Recall@k of `index` against exact search over `all`, ignoring `deleted` rows.
fn recall_without(index: &HnswIndex, all: &Vectors, deleted: &[u32], k: usize) -> f64 {
    let exact = LinearIndex::build(all.view(), &Default::default(), &()).unwrap();
    let (mut found, mut total) = (0, 0);
    for q in random_vectors(40, all.dim(), 77).view().rows() {
        let truth: Vec<u32> = exact
            .search(q, k + deleted.len())
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .filter(|id| !deleted.contains(id))
            .take(k)
            .collect();
        let got: Vec<u32> = index.search(q, k).unwrap().iter().map(|h| h.id).collect();
        assert!(
            got.iter().all(|id| !deleted.contains(id)),
            "a deleted item came back"
        );
        total += truth.len();
        found += truth.iter().filter(|t| got.contains(t)).count();
    }
    found as f64 / total as f64
}

#[test]
fn add_delete_save_load() {
    let dim = 20;
    let first = random_vectors(1500, dim, 1);
    let more = random_vectors(700, dim, 2);
    for quantize in [true, false] {
        let p = HnswParams {
            m: 12,
            ef_construction: 100,
            ef: 60,
            quantize,
            ..Default::default()
        };
        let mut index = HnswIndex::build(first.view(), &p, &()).unwrap();
        assert_eq!(index.add(more.view(), &()).unwrap(), 1500..2200);
        assert_eq!(index.len(), 2200);
        index.verify().unwrap();
        let mut all = first.clone();
        for r in more.view().rows() {
            all.push(r).unwrap();
        }
        // An added row is found as its own nearest neighbour.
        assert_eq!(index.search(more.row(3), 1).unwrap()[0].id, 1503);
        let r = recall_without(&index, &all, &[], 10);
        assert!(r >= 0.95, "recall after add {r}");

        let deleted: Vec<u32> = (0..2200).step_by(23).collect();
        for &id in &deleted {
            index.delete(id).unwrap();
        }
        assert_eq!(index.len(), 2200 - deleted.len());
        assert!(!index.contains(23) && index.contains(24));
        let r = recall_without(&index, &all, &deleted, 10);
        assert!(r >= 0.95, "recall after delete {r}");
        let above = index.search_threshold(all.row(46), 0.0).unwrap();
        assert!(above.iter().all(|h| !deleted.contains(&h.id)));

        // Saved with the index, and still changeable after a (mapped) load.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.hnsw");
        index.save(&path).unwrap();
        let mut back = HnswIndex::load(&path).unwrap();
        assert!(back.is_mapped());
        assert_eq!(
            (back.len(), back.deleted_count()),
            (index.len(), deleted.len())
        );
        let q = all.row(100);
        assert_eq!(back.search(q, 8).unwrap(), index.search(q, 8).unwrap());
        back.delete(24).unwrap();
        assert!(!back.is_mapped());
        let extra = random_vectors(50, dim, 3);
        assert_eq!(back.add(extra.view(), &()).unwrap(), 2200..2250);
        assert_eq!(back.search(extra.row(7), 1).unwrap()[0].id, 2207);
        back.save(&path).unwrap();
        let again = HnswIndex::load(&path).unwrap();
        again.verify().unwrap();
        assert_eq!(again.len(), 2250 - deleted.len() - 1);
        assert!(!again.contains(24) && again.contains(2249));
    }
}

#[test]
fn bad_changes_are_errors() {
    let g = random_vectors(100, 8, 1);
    let p = HnswParams {
        m: 8,
        ef_construction: 40,
        ..Default::default()
    };
    let mut index = HnswIndex::build(g.view(), &p, &()).unwrap();
    index.delete(3).unwrap();
    assert!(matches!(index.delete(3), Err(Error::InvalidArgument(_))));
    assert!(matches!(index.delete(100), Err(Error::InvalidArgument(_))));
    let wrong = random_vectors(5, 9, 2);
    assert!(matches!(
        index.add(wrong.view(), &()),
        Err(Error::Dimension { .. })
    ));
    let nan = Vectors::new(8, vec![f32::NAN; 8]).unwrap();
    assert!(matches!(
        index.add(nan.view(), &()),
        Err(Error::BadVector { .. })
    ));
    assert_eq!(index.len(), 99);
    index.verify().unwrap();
    // Everything deleted: searches answer nothing rather than failing.
    for id in (0..100).filter(|&i| i != 3) {
        index.delete(id).unwrap();
    }
    assert!(index.search(g.row(0), 3).unwrap().is_empty());
    assert!(index.search_threshold(g.row(0), -1.0).unwrap().is_empty());
}
