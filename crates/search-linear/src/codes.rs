//! Compact int8 codes of the unit rows, and the proven bound that keeps a scan of them exact.
//!
//! # Encoding
//! Row `x` (the stored, normalised f32 row) is kept as `x̂ = s_x · c_x`: `s_x = max|x_i| / 127`
//! (an f32) and `c_x[i] = round(x_i / s_x)`, an `i8` in `[-127, 127]`. At build time we also
//! store `e_x ≥ ‖x − x̂‖₂`, computed in f64 (each `s_x · c_x[i]` is exact in f64) and rounded
//! up to f32. The query `q` (normalised f32) is quantised on the fly the same way, to `i16`:
//! `q̂ = s_q · c_q` with `|c_q[i]| ≤ M_q = min(32767, ⌊(2³¹−1) / (127·d)⌋)`, so that the integer
//! dot product `I = Σ c_x[i]·c_q[i]` cannot overflow `i32` whatever order it is summed in, and
//! is therefore computed exactly by every kernel (scalar, AVX2, AVX-512BW). Its error
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

use std::sync::OnceLock;

/// `u`, the unit roundoff of f32.
const U: f64 = f32::EPSILON as f64 / 2.0;

/// Int8 code of one unit row: `(codes, scale, error bound)`.
pub(crate) fn encode_row(row: &[f32], codes: &mut [i8]) -> (f32, f32) {
    let max = row.iter().fold(0f32, |m, &x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let mut err2 = 0f64;
    for (c, &x) in codes.iter_mut().zip(row) {
        let v = (x / scale).round().clamp(-127.0, 127.0);
        *c = v as i8;
        let d = f64::from(x) - f64::from(scale) * f64::from(v);
        err2 += d * d;
    }
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

/// Writes `I = Σ c_x[i]·c_q[i]` of every row of `codes` (rows of `dim` i8) into `out`.
/// `q` holds the query codes padded with zeros to a multiple of 32.
pub(crate) type BlockDotFn = fn(codes: &[i8], dim: usize, q: &[i16], out: &mut [i32]);

/// The fastest exact integer block kernel for this CPU.
pub(crate) fn block_dot_kernel() -> BlockDotFn {
    static KERNEL: OnceLock<BlockDotFn> = OnceLock::new();
    *KERNEL.get_or_init(|| available_kernels()[0].1)
}

/// Every block kernel this CPU can run, fastest first (the scalar one last).
pub(crate) fn available_kernels() -> Vec<(&'static str, BlockDotFn)> {
    let mut out: Vec<(&'static str, BlockDotFn)> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512bw") {
            if std::is_x86_feature_detected!("avx512vnni") {
                out.push(("avx512vnni", |c, d, q, o| unsafe {
                    x86::block_dot_avx512vnni(c, d, q, o)
                }));
            }
            out.push(("avx512bw", |c, d, q, o| unsafe {
                x86::block_dot_avx512(c, d, q, o)
            }));
        }
        if std::is_x86_feature_detected!("avx2") {
            out.push(("avx2", |c, d, q, o| unsafe {
                x86::block_dot_avx2(c, d, q, o)
            }));
        }
    }
    out.push(("scalar", block_dot_scalar));
    out
}

/// Name of the integer kernel the compact scan uses on this CPU ("avx512vnni", "avx512bw", "avx2" or
/// "scalar"), for reports.
pub fn compact_kernel_name() -> &'static str {
    available_kernels()[0].0
}

/// Portable kernel; every other kernel computes the same integers.
pub(crate) fn block_dot_scalar(codes: &[i8], dim: usize, q: &[i16], out: &mut [i32]) {
    for (row, o) in codes.chunks_exact(dim).zip(out.iter_mut()) {
        *o = row
            .iter()
            .zip(q)
            .map(|(&a, &b)| i32::from(a) * i32::from(b))
            .sum();
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX-512BW; `q.len() >= dim` rounded up to 32.
    #[target_feature(enable = "avx512bw,avx512f")]
    pub unsafe fn block_dot_avx512(codes: &[i8], dim: usize, q: &[i16], out: &mut [i32]) {
        let full = dim / 32;
        assert!(q.len() >= dim.div_ceil(32) * 32);
        let rows = (codes.len() / dim).min(out.len());
        let qp = q.as_ptr();
        for (r, o) in out.iter_mut().enumerate().take(rows) {
            let row = &codes[r * dim..(r + 1) * dim];
            let p = row.as_ptr();
            // SAFETY: chunk j reads bytes 32j..32j+32 < dim of the row and i16s 32j..32j+32 of q.
            unsafe {
                let mut acc0 = _mm512_setzero_si512();
                let mut acc1 = _mm512_setzero_si512();
                let mut j = 0;
                while j + 2 <= full {
                    let a0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(p.add(32 * j).cast()));
                    let b0 = _mm512_loadu_si512(qp.add(32 * j).cast());
                    let a1 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(p.add(32 * j + 32).cast()));
                    let b1 = _mm512_loadu_si512(qp.add(32 * j + 32).cast());
                    acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(a0, b0));
                    acc1 = _mm512_add_epi32(acc1, _mm512_madd_epi16(a1, b1));
                    j += 2;
                }
                if j < full {
                    let a0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(p.add(32 * j).cast()));
                    let b0 = _mm512_loadu_si512(qp.add(32 * j).cast());
                    acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(a0, b0));
                }
                let mut total = _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
                for i in 32 * full..dim {
                    total += i32::from(*p.add(i)) * i32::from(*qp.add(i));
                }
                *o = total;
            }
        }
    }

    /// Two rows at a time, each with two accumulators, so that four independent `vpdpwssd`
    /// chains hide its latency; the query chunk is loaded once for both rows.
    ///
    /// # Safety
    /// The CPU must support AVX-512BW and AVX-512 VNNI; `q.len() >= dim` rounded up to 32.
    #[target_feature(enable = "avx512bw,avx512f,avx512vnni")]
    pub unsafe fn block_dot_avx512vnni(codes: &[i8], dim: usize, q: &[i16], out: &mut [i32]) {
        let full = dim / 32;
        assert!(q.len() >= dim.div_ceil(32) * 32);
        let rows = (codes.len() / dim).min(out.len());
        let qp = q.as_ptr();
        let tail = |p: *const i8| -> i32 {
            let mut t = 0;
            for i in 32 * full..dim {
                // SAFETY: i < dim, inside the row and inside q.
                t += unsafe { i32::from(*p.add(i)) * i32::from(*qp.add(i)) };
            }
            t
        };
        let mut r = 0;
        while r + 2 <= rows {
            let p0 = codes[r * dim..(r + 1) * dim].as_ptr();
            let p1 = codes[(r + 1) * dim..(r + 2) * dim].as_ptr();
            // SAFETY: chunk j reads bytes 32j..32j+32 <= dim of each row and i16s
            // 32j..32j+32 of q.
            unsafe {
                let (mut a00, mut a01) = (_mm512_setzero_si512(), _mm512_setzero_si512());
                let (mut a10, mut a11) = (_mm512_setzero_si512(), _mm512_setzero_si512());
                let mut j = 0;
                while j + 2 <= full {
                    let b0 = _mm512_loadu_si512(qp.add(32 * j).cast());
                    let b1 = _mm512_loadu_si512(qp.add(32 * j + 32).cast());
                    let x00 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(p0.add(32 * j).cast()));
                    let x01 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(p0.add(32 * j + 32).cast()));
                    let x10 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(p1.add(32 * j).cast()));
                    let x11 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(p1.add(32 * j + 32).cast()));
                    a00 = _mm512_dpwssd_epi32(a00, x00, b0);
                    a01 = _mm512_dpwssd_epi32(a01, x01, b1);
                    a10 = _mm512_dpwssd_epi32(a10, x10, b0);
                    a11 = _mm512_dpwssd_epi32(a11, x11, b1);
                    j += 2;
                }
                if j < full {
                    let b0 = _mm512_loadu_si512(qp.add(32 * j).cast());
                    let x00 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(p0.add(32 * j).cast()));
                    let x10 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(p1.add(32 * j).cast()));
                    a00 = _mm512_dpwssd_epi32(a00, x00, b0);
                    a10 = _mm512_dpwssd_epi32(a10, x10, b0);
                }
                out[r] = _mm512_reduce_add_epi32(_mm512_add_epi32(a00, a01)) + tail(p0);
                out[r + 1] = _mm512_reduce_add_epi32(_mm512_add_epi32(a10, a11)) + tail(p1);
            }
            r += 2;
        }
        if r < rows {
            // SAFETY: same contract, one row.
            unsafe { block_dot_avx512(&codes[r * dim..(r + 1) * dim], dim, q, &mut out[r..r + 1]) };
        }
    }

    /// # Safety
    /// The CPU must support AVX2; `q.len() >= dim` rounded up to 32.
    #[target_feature(enable = "avx2")]
    pub unsafe fn block_dot_avx2(codes: &[i8], dim: usize, q: &[i16], out: &mut [i32]) {
        let full = dim / 16;
        assert!(q.len() >= dim.div_ceil(32) * 32);
        let rows = (codes.len() / dim).min(out.len());
        let qp = q.as_ptr();
        for (r, o) in out.iter_mut().enumerate().take(rows) {
            let row = &codes[r * dim..(r + 1) * dim];
            let p = row.as_ptr();
            // SAFETY: chunk j reads bytes 16j..16j+16 < dim of the row and i16s 16j..16j+16 of q.
            unsafe {
                let mut acc0 = _mm256_setzero_si256();
                let mut acc1 = _mm256_setzero_si256();
                let mut j = 0;
                while j + 2 <= full {
                    let a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(16 * j).cast()));
                    let b0 = _mm256_loadu_si256(qp.add(16 * j).cast());
                    let a1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(16 * j + 16).cast()));
                    let b1 = _mm256_loadu_si256(qp.add(16 * j + 16).cast());
                    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(a0, b0));
                    acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(a1, b1));
                    j += 2;
                }
                if j < full {
                    let a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(16 * j).cast()));
                    let b0 = _mm256_loadu_si256(qp.add(16 * j).cast());
                    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(a0, b0));
                }
                let s = _mm256_add_epi32(acc0, acc1);
                let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
                let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
                let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
                let mut total = _mm_cvtsi128_si32(s);
                for i in 16 * full..dim {
                    total += i32::from(*p.add(i)) * i32::from(*qp.add(i));
                }
                *o = total;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn kernels_agree_exactly(dim in 1usize..200, rows in 1usize..9, seed in any::<u64>()) {
            let mut s = seed | 1;
            let mut next = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; s };
            let codes: Vec<i8> = (0..dim * rows).map(|_| (next() % 255) as i8).collect();
            let cmax = query_code_max(dim).unwrap();
            let mut q: Vec<i16> = (0..dim).map(|_| ((next() % (2 * cmax as u64 + 1)) as i64 - i64::from(cmax)) as i16).collect();
            q.resize(dim.div_ceil(32) * 32, 0);
            let mut want = vec![0; rows];
            block_dot_scalar(&codes, dim, &q, &mut want);
            for (name, kernel) in available_kernels() {
                let mut got = vec![0; rows];
                kernel(&codes, dim, &q, &mut got);
                prop_assert_eq!(&got, &want, "kernel {}", name);
            }
            let exact: Vec<i64> = codes.chunks_exact(dim).map(|r| r.iter().zip(&q).map(|(&a, &b)| i64::from(a) * i64::from(b)).sum()).collect();
            prop_assert_eq!(want.iter().map(|&x| i64::from(x)).collect::<Vec<_>>(), exact);
        }

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
            block_dot_scalar(&cx, x.len(), &qc.codes, &mut i);
            let compact = (sx * qc.scale) * i[0] as f32;
            let f = search_kernels::dot(&x, &q);
            let b = ex * qc.bound.a + qc.bound.c;
            prop_assert!((compact - f).abs() <= b, "{compact} vs {f}, bound {b}");
        }
    }
}
