//! Shared helpers: seeded random galleries and recall against the exact engine.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use search_core::{SearchIndex, Vectors};
use search_linear::LinearIndex;

/// `n` random rows of `dim` components in [-1, 1), seeded.
pub fn random_vectors(n: usize, dim: usize, seed: u64) -> Vectors {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let data = (0..n * dim)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    Vectors::new(dim, data).unwrap()
}

/// Mean recall@k of `index` over `queries`, with the exact engine as oracle.
pub fn recall<I: SearchIndex>(index: &I, exact: &LinearIndex, queries: &Vectors, k: usize) -> f64 {
    let mut found = 0usize;
    let mut total = 0usize;
    for q in queries.view().rows() {
        let truth: Vec<u32> = exact.search(q, k).unwrap().iter().map(|h| h.id).collect();
        let got: Vec<u32> = index.search(q, k).unwrap().iter().map(|h| h.id).collect();
        total += truth.len();
        found += truth.iter().filter(|t| got.contains(t)).count();
    }
    found as f64 / total.max(1) as f64
}
