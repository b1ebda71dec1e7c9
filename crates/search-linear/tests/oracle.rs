//! The linear engine against a naive f64 reference, on random galleries.

use embed_store::{Hit, SearchIndex, Vectors};
use proptest::prelude::*;
use search_linear::LinearIndex;

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
        let index = LinearIndex::build(Vectors::new(16, flat).unwrap().view(), &Default::default(), &()).unwrap();
        let cos = naive_cosines(&gallery, &q);
        let mut order: Vec<usize> = (0..gallery.len()).collect();
        order.sort_by(|&a, &b| cos[b].total_cmp(&cos[a]).then(a.cmp(&b)));
        let got = index.search(&q, k).unwrap();
        prop_assert_eq!(got.len(), k.min(gallery.len()));
        for (rank, h) in got.iter().enumerate() {
            // The score at each rank equals the reference's score at that rank (ties may swap ids).
            prop_assert!((f64::from(h.score) - cos[order[rank]]).abs() < 1e-5, "rank {rank}: {} vs {}", h.score, cos[order[rank]]);
            prop_assert!((f64::from(h.score) - cos[h.id as usize]).abs() < 1e-5);
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
