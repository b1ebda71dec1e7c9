//! Damaged files give errors, never panics; whatever opens can be queried without panicking.

use proptest::prelude::*;
use search_core::{Error, SearchIndex};
use search_forest::{ForestIndex, ForestParams, Metric};

fn saved_forest() -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
    let gallery = crate::common::gallery(600, 16, 21);
    let forest = ForestIndex::build(
        gallery.view(),
        &ForestParams {
            n_trees: 4,
            ..Default::default()
        },
        &(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forest.ann");
    forest.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (dir, path, bytes)
}

fn query_everything(index: &ForestIndex) {
    let q: Vec<f32> = (0..index.dim()).map(|i| (i as f32 * 0.37).sin()).collect();
    let _ = index.search(&q, 10);
    let _ = index.search_threshold(&q, 0.1);
    let _ = index.nns_by_vector(&q, 10, Some(index.len() * 8));
}

#[test]
fn truncated_tiny_and_empty_files_are_format_errors() {
    let (dir, path, bytes) = saved_forest();
    let cut = dir.path().join("cut.ann");
    let node = 12 + 4 * 16;
    let half_nodes = bytes.len() / node / 2 * node;
    // Cut to half its nodes, the file ends in item nodes that look like roots of a 1-item index
    // (annoy-rs panics on such a file at 100k x 512): refused on opening.
    let p = cut_to(&dir, &bytes, half_nodes);
    for r in [
        ForestIndex::load(&p),
        ForestIndex::open(&p, 16, Metric::Angular),
    ] {
        assert!(matches!(r, Err(Error::Format { .. })), "{r:?}");
    }
    for len in [
        half_nodes,
        0,
        3,
        100,
        bytes.len() / 2,
        bytes.len() - 4,
        bytes.len() - 76,
    ] {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let loaded = ForestIndex::load(&cut);
        let opened = ForestIndex::open(&cut, 16, Metric::Angular);
        for r in [loaded, opened] {
            match r {
                Err(Error::Format { message, .. }) => assert!(!message.is_empty()),
                Err(e) => panic!("length {len}: unexpected error {e}"),
                Ok(index) => query_everything(&index),
            }
        }
    }
    // The wrong dimension or metric is refused.
    assert!(ForestIndex::open(&path, 15, Metric::Angular).is_err());
    assert!(ForestIndex::open(&path, 0, Metric::Angular).is_err());
    assert!(matches!(
        ForestIndex::load(&dir.path().join("missing.ann")),
        Err(Error::Io { .. })
    ));
}

#[test]
fn a_cycle_or_out_of_range_child_is_refused() {
    let (dir, _path, bytes) = saved_forest();
    let words: Vec<u32> = bytemuck_words(&bytes);
    let node_words = 3 + 16;
    let n_nodes = words.len() / node_words;
    let last = n_nodes - 1; // a copy of a root: a split node
    let bad_path = dir.path().join("bad.ann");
    for (field, value) in [
        (1usize, last as u32),
        (2, u32::MAX),
        (1, n_nodes as u32 + 5),
    ] {
        let mut w = words.clone();
        w[last * node_words + field] = value;
        std::fs::write(&bad_path, to_bytes(&w)).unwrap();
        assert!(matches!(
            ForestIndex::open(&bad_path, 16, Metric::Angular),
            Err(Error::Format { .. })
        ));
    }
}

#[test]
fn a_bad_bucket_id_fails_verify_and_the_queries_that_read_it() {
    let (dir, _path, bytes) = saved_forest();
    let mut words = bytemuck_words(&bytes);
    let node_words = 3 + 16;
    let n_items = 600;
    let n_nodes = words.len() / node_words;
    let buckets: Vec<usize> = (n_items..n_nodes)
        .filter(|&i| words[i * node_words] as usize <= 18)
        .collect();
    assert!(!buckets.is_empty());
    for &b in &buckets {
        words[b * node_words + 1] = 600; // one past the last item
    }
    let p = dir.path().join("bad_bucket.ann");
    std::fs::write(&p, to_bytes(&words)).unwrap();
    let index = ForestIndex::open(&p, 16, Metric::Angular).unwrap();
    assert!(matches!(index.verify(), Err(Error::Format { .. })));
    // Exhaustive search reads every bucket.
    let q = vec![1.0; 16];
    assert!(matches!(
        index.nns_by_vector(&q, 5, Some(600 * 4)),
        Err(Error::Format { .. })
    ));
    let mut index = index;
    index.set_knob(600 * 4).unwrap();
    assert!(matches!(index.search(&q, 5), Err(Error::Format { .. })));
    assert!(matches!(
        index.search_threshold(&q, 0.5),
        Err(Error::Format { .. })
    ));
    // The undamaged file verifies.
    let good = dir.path().join("forest.ann");
    ForestIndex::open(&good, 16, Metric::Angular)
        .unwrap()
        .verify()
        .unwrap();
}

fn cut_to(dir: &tempfile::TempDir, bytes: &[u8], len: usize) -> std::path::PathBuf {
    let p = dir.path().join(format!("cut_{len}.ann"));
    std::fs::write(&p, &bytes[..len]).unwrap();
    p
}

fn bytemuck_words(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
        .collect()
}

fn to_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_ne_bytes()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_damage_never_panics(hits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u32>()), 1..20)) {
        let (dir, _path, bytes) = saved_forest();
        let mut words = bytemuck_words(&bytes);
        let len = words.len();
        for (at, value) in hits {
            // Damage the tree nodes more often than the items: that is where ids live.
            let i = at.index(len);
            let i = if value % 2 == 0 { len - 1 - (i % (len / 4)) } else { i };
            words[i] = value;
        }
        let p = dir.path().join("damaged.ann");
        std::fs::write(&p, to_bytes(&words)).unwrap();
        for index in [ForestIndex::load(&p), ForestIndex::open(&p, 16, Metric::Angular)].into_iter().flatten() {
            query_everything(&index);
            let _ = index.verify();
        }
    }
}
