//! Shared helpers: small seeded galleries.

use search_core::Vectors;

/// A deterministic pseudo-random gallery of `n` rows in `dim` dimensions (uniform in [-1, 1]).
pub fn gallery(n: usize, dim: usize, seed: u64) -> Vectors {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data = (0..n * dim)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Vectors::new(dim, data).unwrap()
}
