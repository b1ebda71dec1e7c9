//! identify, identify_top and search_within against exact search, on random galleries.

use face_identify::{Aggregation, Identities, Watchlist, identify, identify_top, search_within};
use proptest::prelude::*;
use search_core::{Engine, Params, SearchIndex, VectorView};
use search_linear::LinearIndex;

/// `people` people with `images` images each around a random centre, in `dim` dimensions.
fn gallery(people: usize, images: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<String>) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
    };
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for p in 0..people {
        let centre: Vec<f32> = (0..dim).map(|_| next()).collect();
        for i in 0..images {
            rows.extend(centre.iter().map(|c| c + 0.3 * next()));
            labels.push(format!("person{p:03}_{i}"));
        }
    }
    (rows, labels)
}

fn exact(rows: &[f32], dim: usize) -> Box<dyn Engine> {
    search_engines::build(
        "linear",
        VectorView::new(dim, rows).unwrap(),
        &Params::new(),
        &(),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// An enrolled image asked with a threshold below its own score comes back as its person;
    /// identify_top names each person once, best first, and its first entry is identify's.
    #[test]
    fn enrolled_images_are_identified(people in 2usize..12, images in 1usize..5, seed in 0u64..1000, n in 1usize..6) {
        let dim = 16;
        let (rows, labels) = gallery(people, images, dim, seed);
        let ids = Identities::from_labels(&labels);
        prop_assert_eq!(ids.persons(), people);
        let index = exact(&rows, dim);
        for row in (0..labels.len()).step_by(3) {
            let q = &rows[row * dim..(row + 1) * dim];
            let who = identify(&*index, &ids, q, 0.5).unwrap().expect("its own image scores 1");
            prop_assert_eq!(who.person, ids.person(row as u32));
            prop_assert!(who.score > 0.999);
            for aggregation in [Aggregation::Max, Aggregation::MeanTop2] {
                let top = identify_top(&*index, &ids, q, n, aggregation).unwrap();
                prop_assert_eq!(top.len(), n.min(people));
                let mut persons: Vec<u32> = top.iter().map(|c| c.person).collect();
                persons.sort_unstable();
                persons.dedup();
                prop_assert_eq!(persons.len(), top.len(), "one entry per person");
                prop_assert!(top.windows(2).all(|w| w[0].score >= w[1].score));
                if aggregation == Aggregation::Max {
                    prop_assert_eq!(top[0].person, who.person);
                }
                // Each person's score is their best image's (max) or the mean of the two best.
                for c in &top {
                    let mut scores: Vec<f32> = (0..labels.len())
                        .filter(|&r| ids.person(r as u32) == c.person)
                        .map(|r| cos(q, &rows[r * dim..(r + 1) * dim]))
                        .collect();
                    scores.sort_by(|a, b| b.total_cmp(a));
                    let want = match (aggregation, scores.len()) {
                        (Aggregation::MeanTop2, 2..) => (scores[0] + scores[1]) / 2.0,
                        _ => scores[0],
                    };
                    prop_assert!((c.score - want).abs() < 1e-3, "{} vs {}", c.score, want);
                }
            }
        }
    }

    /// A watchlist search is exact search over the listed rows only.
    #[test]
    fn watchlist_search_is_exact_over_the_list(people in 3usize..10, seed in 0u64..1000, k in 1usize..8, pick in 1usize..3) {
        let dim = 12;
        let (rows, labels) = gallery(people, 3, dim, seed);
        let ids = Identities::from_labels(&labels);
        let names: Vec<String> = (0..people).step_by(pick + 1).map(|p| format!("person{p:03}")).collect();
        let list = ids.watchlist(&names).unwrap();
        let index = exact(&rows, dim);
        let q: Vec<f32> = rows[dim..2 * dim].iter().map(|x| x * 0.5 + 0.1).collect();
        let got = search_within(&*index, &list, &q, k).unwrap();
        let listed: Vec<usize> = (0..labels.len()).filter(|&r| list.contains(r as u32)).collect();
        let mut want: Vec<(f32, usize)> = listed.iter().map(|&r| (cos(&q, &rows[r * dim..(r + 1) * dim]), r)).collect();
        want.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        want.truncate(k);
        prop_assert_eq!(got.len(), want.len());
        for (h, (s, r)) in got.iter().zip(&want) {
            prop_assert!(list.contains(h.id));
            prop_assert!((h.score - s).abs() < 1e-4 || h.id as usize == *r, "{:?} vs {:?}", h, (s, r));
        }
    }
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    let d: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    d / (na * nb)
}

/// A probe far from everyone is "not enrolled"; wrong-sized identities and watchlists are
/// errors, not wrong answers.
#[test]
fn strangers_and_mismatches() {
    let dim = 8;
    let (rows, labels) = gallery(4, 2, dim, 5);
    let ids = Identities::from_labels(&labels);
    let index = LinearIndex::build(
        VectorView::new(dim, &rows).unwrap(),
        &Default::default(),
        &(),
    )
    .unwrap();
    // The negative of person 0's first image: similarity about -1 with it, low with all.
    let stranger: Vec<f32> = rows[..dim].iter().map(|x| -x).collect();
    assert!(identify(&index, &ids, &stranger, 0.9).unwrap().is_none());
    let short = Identities::from_labels(&labels[..3]);
    assert!(identify(&index, &short, &rows[..dim], 0.3).is_err());
    assert!(identify(&index, &ids, &rows[..dim], 1.5).is_err());
    assert!(identify_top(&index, &ids, &rows[..dim], 0, Aggregation::Max).is_err());
    assert!(ids.watchlist(&["nobody"]).is_err());
    let list = Watchlist::of_rows(3, [0]).unwrap();
    assert!(search_within(&index, &list, &rows[..dim], 2).is_err());
    assert!(Watchlist::of_rows(3, [5]).is_err());
}

/// The HNSW engine answers identify_top through the same code path, agreeing with exact
/// search on a well-separated gallery.
#[test]
fn hnsw_through_the_same_path() {
    let dim = 32;
    let (rows, labels) = gallery(30, 4, dim, 11);
    let ids = Identities::from_labels(&labels);
    let hnsw = search_engines::build(
        "hnsw",
        VectorView::new(dim, &rows).unwrap(),
        &Params::new(),
        &(),
    )
    .unwrap();
    let linear = exact(&rows, dim);
    for row in (0..labels.len()).step_by(7) {
        let q = &rows[row * dim..(row + 1) * dim];
        let a = identify_top(&*hnsw, &ids, q, 3, Aggregation::Max).unwrap();
        let b = identify_top(&*linear, &ids, q, 3, Aggregation::Max).unwrap();
        assert_eq!(a[0].person, b[0].person);
        assert_eq!(a[0].person, ids.person(row as u32));
    }
}
