//! Compact int8 codes of the unit rows, and the proven bound that keeps a scan of them exact.
//!
//! # Encoding
//! Row `x` (the stored, normalised f32 row) is kept as `x̂ = s_x · c_x`: `s_x = max|x_i| / 127`
//! (an f32) and `c_x[i] ≈ x_i / s_x`, an `i8` in `[-127, 127]` ([`search_kernels::quantize`],
//! the quantizer every engine shares; the bound below holds for any codes). At build time we also
//! store `e_x ≥ ‖x − x̂‖₂`, computed in f64 (each `s_x · c_x[i]` is exact in f64) and rounded
//! up to f32. The query `q` (normalised f32) is quantised on the fly the same way, to `i16`:
//! `q̂ = s_q · c_q` with `|c_q[i]| ≤ M_q = min(32767, ⌊(2³¹−1) / (127·d)⌋)`, so that the integer
//! dot product `I = Σ c_x[i]·c_q[i]` cannot overflow `i32` whatever order it is summed in, and
//! is therefore computed exactly by every kernel ([`search_kernels::int8::BLOCK_DOT`]). Its error
//! `e_q ≥ ‖q − q̂‖₂` is computed in f64.
//!
//! # The bound
//! Let `f(x)` be the score the plain f32 scan computes (`search_kernels::dot` of the
//! stored row and the stored query) and `c̃(x) = fl(fl(s_x·s_q) · fl(I))` the compact score,
//! both in f32; `u = 2⁻²⁴` is the unit roundoff of f32 and `γ_d = d·u / (1 − d·u)`.
//!
//! **Claim.** `|c̃(x) − f(x)| ≤ B(x) = e_x·A + C`, with
//! `A = ‖q‖ + e_q + 3.0001·u·(‖q‖ + e_q)` and
//! `C = N·e_q + 3.0001·u·N·(‖q‖ + e_q) + γ_d·N·‖q‖`, where `N ≥ ‖x‖` for every row
//! (stored at build time; 1 up to rounding).
//!
//! **Proof.** Write the real dot products exactly:
//! `x·q − x̂·q̂ = (x − x̂)·q + x̂·(q − q̂)`, so by Cauchy–Schwarz
//! `|x·q − x̂·q̂| ≤ e_x·‖q‖ + ‖x̂‖·e_q ≤ e_x·‖q‖ + (N + e_x)·e_q` (1).
//! `I` is exact, and `s_x·s_q·I = x̂·q̂`; the three roundings (`fl(I)`, the product of the
//! scales, the final product) each add a relative error of at most `u`, so
//! `|c̃ − x̂·q̂| ≤ ((1+u)³ − 1)·|x̂·q̂| ≤ 3.0001·u·(N + e_x)·(‖q‖ + e_q)` (2).
//! Any f32 summation of `d` products, in any order, with or without FMA, satisfies the standard
//! bound `|f − x·q| ≤ γ_d·Σ|x_i·q_i| ≤ γ_d·‖x‖·‖q‖ ≤ γ_d·N·‖q‖` (3) (Higham, *Accuracy and
//! Stability of Numerical Algorithms*, §3.1). Adding (1), (2) and (3) and collecting the terms
//! in `e_x` gives `|c̃ − f| ≤ e_x·A + C`. ∎
//!
//! The filters evaluate `c̃ + e_x·A` and `floor − C` in f32, which adds at most a few units of
//! roundoff on numbers below 4 in magnitude; [`Bound`] adds `1e-6` to `C` to cover that.
//!
//! # Why this keeps answers exact
//! *Top-k*: every row the plain scan returns has `f(x) ≥ f_k`, the plain scan's k-th best
//! score, and the running floor (the k-th best `f` among rows re-scored so far, or −∞) never
//! exceeds `f_k`. Such a row has `c̃(x) + B(x) ≥ f(x) ≥ floor`, so it passes the filter, is
//! re-scored in f32 with the very kernel the plain scan uses, and competes with the identical
//! score under the identical order ([`search_core::Hit::ranking`]): the result is the same list.
//! *Threshold*: a row with `f(x) > τ` has `c̃(x) + B(x) > τ`, passes, and is kept iff `f(x) > τ`.
//!
//! For 512-d unit vectors `e_x ≈ 0.008` (int8 rows) and `e_q ≈ 3·10⁻⁵` (i16 query), so
//! `B ≈ 0.008`: only rows scoring within about 0.008 of the k-th best (or of τ) are read in f32.

use search_kernels::int8::BLOCK_DOT;

/// `u`, the unit roundoff of f32.
const U: f64 = f32::EPSILON as f64 / 2.0;

/// Codes one unit row into `codes`; returns its scale and error bound `e_x`.
pub(crate) fn encode_row(row: &[f32], codes: &mut [i8]) -> (f32, f32) {
    let scale = search_kernels::quantize(row, codes);
    let err2: f64 = row
        .iter()
        .zip(codes.iter())
        .map(|(&x, &c)| {
            let d = f64::from(x) - f64::from(scale) * f64::from(c);
            d * d
        })
        .sum();
    (scale, round_up(err2.sqrt()))
}

/// `v` as an f32 no smaller than `v`.
fn round_up(v: f64) -> f32 {
    let f = v as f32;
    if f64::from(f) >= v { f } else { f.next_up() }
}

/// The largest magnitude of a query code for dimension `dim` (see the module docs), or `None`
/// when `dim` is so large that the codes would be too coarse to help.
pub(crate) fn query_code_max(dim: usize) -> Option<i16> {
    let m = (i32::MAX as usize) / (127 * dim.max(1));
    (m >= 1024).then(|| m.min(i16::MAX as usize) as i16)
}

/// A quantised query and the constants of its error bound.
#[derive(Debug)]
pub(crate) struct QueryCode {
    /// `c_q`, padded with zeros to a multiple of 32 components.
    pub codes: Vec<i16>,
    /// `s_q`.
    pub scale: f32,
    /// The bound of this query against every row: `|c̃(x) − f(x)| ≤ e_x·A + C`.
    pub bound: Bound,
}

/// `B(x) = e_x·a + c`, rounded up and with the filter's own roundoff included.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bound {
    /// `A` of the module docs.
    pub a: f32,
    /// `C` of the module docs, plus slack for the filter's f32 arithmetic.
    pub c: f32,
}

impl QueryCode {
    /// Quantises the unit query `q` for rows whose norms are at most `norm_max`.
    pub(crate) fn new(q: &[f32], code_max: i16, norm_max: f64) -> QueryCode {
        let d = q.len();
        let max = q.iter().fold(0f32, |m, &x| m.max(x.abs()));
        let scale = if max > 0.0 {
            max / f32::from(code_max)
        } else {
            1.0
        };
        let mut codes = vec![0i16; d.div_ceil(32) * 32];
        let (mut err2, mut norm2) = (0f64, 0f64);
        let lim = f32::from(code_max);
        for (c, &x) in codes.iter_mut().zip(q) {
            let v = (x / scale).round().clamp(-lim, lim);
            *c = v as i16;
            let e = f64::from(x) - f64::from(scale) * f64::from(v);
            err2 += e * e;
            norm2 += f64::from(x) * f64::from(x);
        }
        // Square roots in f64 are correctly rounded; a relative 1e-12 covers them and the sums.
        let e_q = err2.sqrt() * (1.0 + 1e-12);
        let qn = norm2.sqrt() * (1.0 + 1e-12);
        let n = norm_max;
        let gamma = (d as f64 * U) / (1.0 - d as f64 * U);
        let rnd = 3.0001 * U;
        let a = qn + e_q + rnd * (qn + e_q);
        let c = n * e_q + rnd * n * (qn + e_q) + gamma * n * qn;
        QueryCode {
            codes,
            scale,
            bound: Bound {
                a: round_up(a * (1.0 + 1e-9)),
                c: round_up(c * (1.0 + 1e-9) + 1e-6),
            },
        }
    }
}

/// Name of the integer kernel the compact scan uses on this CPU ("avx512-vnni", "avx512",
/// "avx2", "neon" or "portable"), for reports.
pub fn compact_kernel_name() -> &'static str {
    BLOCK_DOT.best().name()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn compact_score_is_within_the_bound(v in proptest::collection::vec((-1f32..1.0, -1f32..1.0), 1..300)) {
            let (x, q): (Vec<f32>, Vec<f32>) = v.into_iter().unzip();
            prop_assume!(x.iter().any(|&a| a != 0.0) && q.iter().any(|&a| a != 0.0));
            let unit = |v: &[f32]| search_core::normalized(v, v.len(), String::new).unwrap();
            let (x, q) = (unit(&x), unit(&q));
            let mut cx = vec![0i8; x.len()];
            let (sx, ex) = encode_row(&x, &mut cx);
            let n = x.iter().map(|&a| f64::from(a).powi(2)).sum::<f64>().sqrt();
            let qc = QueryCode::new(&q, query_code_max(x.len()).unwrap(), n);
            let mut i = [0];
            (BLOCK_DOT.portable().kernels)(&cx, x.len(), &qc.codes, &mut i);
            let compact = (sx * qc.scale) * i[0] as f32;
            let f = search_kernels::dot(&x, &q);
            let b = ex * qc.bound.a + qc.bound.c;
            prop_assert!((compact - f).abs() <= b, "{compact} vs {f}, bound {b}");
        }
    }
}
