//! Scoring answers against the exact ones.

use search_core::Hit;

/// Mean fraction of each query's exact top-k found in its hits.
pub(crate) fn recall(hits: &[Vec<Hit>], exact: &[Vec<u32>]) -> f64 {
    let found: usize = hits.iter().zip(exact).map(|(h, e)| overlap(h, e)).sum();
    let expected: usize = exact.iter().map(Vec::len).sum();
    ratio(found, expected)
}

/// How many of `hits` are among `exact`.
pub(crate) fn overlap(hits: &[Hit], exact: &[u32]) -> usize {
    hits.iter().filter(|h| exact.contains(&h.id)).count()
}

/// `found / expected`, 1 when nothing was expected.
pub(crate) fn ratio(found: usize, expected: usize) -> f64 {
    if expected == 0 {
        1.0
    } else {
        found as f64 / expected as f64
    }
}
