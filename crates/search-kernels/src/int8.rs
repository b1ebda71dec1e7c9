//! Exact integer dot products of int8 codes: `i8 · i16` rows against a query
//! ([`BLOCK_DOT`]: AVX-512 VNNI `vpdpwssd`, AVX-512BW and AVX2 `vpmaddwd`, NEON `smlal`) and
//! `i8 · i8` pairs ([`DOT_I8`]: AVX-512 VNNI `vpdpbusd`, AVX2, NEON `smull`). Every variant
//! computes the sums modulo 2³² (wrapping), which do not depend on the order of the additions:
//! the same integers as the portable variant always, and the exact sums whenever they fit `i32`.

use crate::cpu::{Family, Isa, Variant};

/// Writes `Σᵢ rowᵢ · qᵢ` of every row of `codes` (rows of `dim` codes) into `out` (as many
/// rows as both hold). `q` holds at least `dim` rounded up to 32 values (zeros past `dim`).
pub type BlockDotFn = fn(codes: &[i8], dim: usize, q: &[i16], out: &mut [i32]);

/// `Σᵢ aᵢ · bᵢ` over the shorter slice's length.
pub type DotI8Fn = fn(&[i8], &[i8]) -> i32;

/// The `i8 · i16` block kernels (the exact engine's compact scan).
pub static BLOCK_DOT: Family<BlockDotFn> = Family::new("i8·i16 block dot", || {
    #[allow(unused_mut)]
    let mut all: Vec<Variant<BlockDotFn>> = vec![Variant {
        isa: Isa::Portable,
        kernels: block_dot_portable,
    }];
    #[cfg(target_arch = "x86_64")]
    all.extend::<[Variant<BlockDotFn>; 3]>([
        Variant {
            isa: Isa::Avx2,
            // SAFETY: run only where AVX2 was detected.
            kernels: |c, d, q, o| unsafe { x86::block_dot_avx2(c, d, q, o) },
        },
        Variant {
            isa: Isa::Avx512,
            // SAFETY: run only where AVX-512 F and BW were detected.
            kernels: |c, d, q, o| unsafe { x86::block_dot_avx512(c, d, q, o) },
        },
        Variant {
            isa: Isa::Avx512Vnni,
            // SAFETY: run only where AVX-512 F, BW and VNNI were detected.
            kernels: |c, d, q, o| unsafe { x86::block_dot_avx512vnni(c, d, q, o) },
        },
    ]);
    #[cfg(target_arch = "aarch64")]
    all.push(Variant {
        isa: Isa::Neon,
        // SAFETY: run only where NEON was detected.
        kernels: |c, d, q, o| unsafe { neon::block_dot(c, d, q, o) },
    });
    all
});

/// The `i8 · i8` kernels (the graph's int8 walk).
pub static DOT_I8: Family<DotI8Fn> = Family::new("i8·i8 dot", || {
    #[allow(unused_mut)]
    let mut all: Vec<Variant<DotI8Fn>> = vec![Variant {
        isa: Isa::Portable,
        kernels: dot_i8_portable,
    }];
    #[cfg(target_arch = "x86_64")]
    all.extend::<[Variant<DotI8Fn>; 2]>([
        Variant {
            isa: Isa::Avx2,
            // SAFETY: run only where AVX2 was detected.
            kernels: |a, b| unsafe { x86::dot_i8_avx2(a, b) },
        },
        Variant {
            isa: Isa::Avx512Vnni,
            // SAFETY: run only where AVX-512 F, BW and VNNI were detected.
            kernels: |a, b| unsafe { x86::dot_i8_avx512vnni(a, b) },
        },
    ]);
    #[cfg(target_arch = "aarch64")]
    all.push(Variant {
        isa: Isa::Neon,
        // SAFETY: run only where NEON was detected.
        kernels: |a, b| unsafe { neon::dot_i8(a, b) },
    });
    all
});

/// Checks the arguments of a block kernel; returns the number of rows.
fn block_rows(codes: &[i8], dim: usize, q: &[i16], out: &[i32]) -> usize {
    assert!(dim > 0, "block dot product of rows of no codes");
    assert!(
        q.len() >= dim.div_ceil(32) * 32,
        "the query must be padded to a multiple of 32 codes"
    );
    (codes.len() / dim).min(out.len())
}

fn block_dot_portable(codes: &[i8], dim: usize, q: &[i16], out: &mut [i32]) {
    let rows = block_rows(codes, dim, q, out);
    for (row, o) in codes.chunks_exact(dim).zip(out.iter_mut()).take(rows) {
        *o = row.iter().zip(q).fold(0i32, |s, (&a, &b)| {
            s.wrapping_add(i32::from(a) * i32::from(b))
        });
    }
}

fn dot_i8_portable(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .fold(0i32, |s, (&x, &y)| {
            s.wrapping_add(i32::from(x) * i32::from(y))
        });
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] = acc[i].wrapping_add(i32::from(x[i]) * i32::from(y[i]));
        }
    }
    acc.iter().fold(tail, |s, &x| s.wrapping_add(x))
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use crate::x86::hsum256_epi32;
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX-512BW; `q.len() >= dim` rounded up to 32.
    #[target_feature(enable = "avx512bw,avx512f")]
    pub unsafe fn block_dot_avx512(codes: &[i8], dim: usize, q: &[i16], out: &mut [i32]) {
        let full = dim / 32;
        let rows = super::block_rows(codes, dim, q, out);
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
                    total = total.wrapping_add(i32::from(*p.add(i)) * i32::from(*qp.add(i)));
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
        let rows = super::block_rows(codes, dim, q, out);
        let qp = q.as_ptr();
        let tail = |p: *const i8| -> i32 {
            let mut t = 0i32;
            for i in 32 * full..dim {
                // SAFETY: i < dim, inside the row and inside q.
                t = t.wrapping_add(unsafe { i32::from(*p.add(i)) * i32::from(*qp.add(i)) });
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
                out[r] = _mm512_reduce_add_epi32(_mm512_add_epi32(a00, a01)).wrapping_add(tail(p0));
                out[r + 1] =
                    _mm512_reduce_add_epi32(_mm512_add_epi32(a10, a11)).wrapping_add(tail(p1));
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
        let rows = super::block_rows(codes, dim, q, out);
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
                let mut total = hsum256_epi32(_mm256_add_epi32(acc0, acc1));
                for i in 16 * full..dim {
                    total = total.wrapping_add(i32::from(*p.add(i)) * i32::from(*qp.add(i)));
                }
                *o = total;
            }
        }
    }

    /// `vpdpbusd` multiplies unsigned by signed bytes, so `a` is shifted to unsigned with
    /// `a ^ 0x80 = a + 128` and `128 · Σ b` (accumulated alongside) is taken back off.
    ///
    /// # Safety
    /// The CPU must support AVX-512BW and AVX-512 VNNI.
    #[target_feature(enable = "avx512bw,avx512vnni")]
    pub unsafe fn dot_i8_avx512vnni(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let flip = _mm512_set1_epi8(-128);
        let ones = _mm512_set1_epi8(1);
        let (mut acc, mut sum_b) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        let mut i = 0;
        // SAFETY: every load reads 64 bytes below n.
        unsafe {
            while i + 64 <= n {
                let x = _mm512_xor_si512(_mm512_loadu_si512(pa.add(i).cast()), flip);
                let y = _mm512_loadu_si512(pb.add(i).cast());
                acc = _mm512_dpbusd_epi32(acc, x, y);
                sum_b = _mm512_dpbusd_epi32(sum_b, ones, y);
                i += 64;
            }
        }
        let mut total =
            _mm512_reduce_add_epi32(_mm512_sub_epi32(acc, _mm512_slli_epi32::<7>(sum_b)));
        for k in i..n {
            total = total.wrapping_add(i32::from(a[k]) * i32::from(b[k]));
        }
        total
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_si256(); 2];
        let mut i = 0;
        // SAFETY: every load reads 16 bytes below n.
        unsafe {
            while i + 32 <= n {
                for (j, acc) in acc.iter_mut().enumerate() {
                    let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i + 16 * j).cast()));
                    let y = _mm256_cvtepi8_epi16(_mm_loadu_si128(pb.add(i + 16 * j).cast()));
                    *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(x, y));
                }
                i += 32;
            }
        }
        let mut total = hsum256_epi32(_mm256_add_epi32(acc[0], acc[1]));
        for k in i..n {
            total = total.wrapping_add(i32::from(a[k]) * i32::from(b[k]));
        }
        total
    }
}

/// The NEON variants (on other targets, built for the tests against [`crate::neon_emul`]).
#[cfg(any(target_arch = "aarch64", test))]
pub(crate) mod neon {
    #[cfg(not(target_arch = "aarch64"))]
    use crate::neon_emul::*;
    #[cfg(target_arch = "aarch64")]
    use std::arch::aarch64::*;

    /// Sixteen codes a step: widened to i16, multiplied by the query's i16 and accumulated
    /// in i32 (`smlal`, `smlal2`).
    ///
    /// # Safety
    /// The CPU must support NEON.
    #[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
    pub unsafe fn block_dot(codes: &[i8], dim: usize, q: &[i16], out: &mut [i32]) {
        let full = dim / 16;
        let rows = super::block_rows(codes, dim, q, out);
        let qp = q.as_ptr();
        for (r, o) in out.iter_mut().enumerate().take(rows) {
            let row = &codes[r * dim..(r + 1) * dim];
            let p = row.as_ptr();
            let mut acc = [vdupq_n_s32(0); 2];
            // SAFETY: chunk j reads codes 16j..16j+16 <= dim of the row and i16s
            // 16j..16j+16 of q.
            unsafe {
                for j in 0..full {
                    let x = vld1q_s8(p.add(16 * j));
                    let (lo, hi) = (vmovl_s8(vget_low_s8(x)), vmovl_high_s8(x));
                    let q0 = vld1q_s16(qp.add(16 * j));
                    let q1 = vld1q_s16(qp.add(16 * j + 8));
                    acc[0] = vmlal_s16(acc[0], vget_low_s16(lo), vget_low_s16(q0));
                    acc[1] = vmlal_high_s16(acc[1], lo, q0);
                    acc[0] = vmlal_s16(acc[0], vget_low_s16(hi), vget_low_s16(q1));
                    acc[1] = vmlal_high_s16(acc[1], hi, q1);
                }
            }
            let mut total = vaddvq_s32(vaddq_s32(acc[0], acc[1]));
            for i in 16 * full..dim {
                total = total.wrapping_add(i32::from(row[i]) * i32::from(q[i]));
            }
            *o = total;
        }
    }

    /// Sixteen pairs a step: i16 products (`smull`, `smull2`) added pairwise into i32
    /// (`sadalp`).
    ///
    /// # Safety
    /// The CPU must support NEON.
    #[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
    pub unsafe fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [vdupq_n_s32(0); 2];
        let mut i = 0;
        // SAFETY: every load reads 16 codes below n.
        unsafe {
            while i + 16 <= n {
                let x = vld1q_s8(pa.add(i));
                let y = vld1q_s8(pb.add(i));
                acc[0] = vpadalq_s16(acc[0], vmull_s8(vget_low_s8(x), vget_low_s8(y)));
                acc[1] = vpadalq_s16(acc[1], vmull_high_s8(x, y));
                i += 16;
            }
        }
        let mut total = vaddvq_s32(vaddq_s32(acc[0], acc[1]));
        for k in i..n {
            total = total.wrapping_add(i32::from(a[k]) * i32::from(b[k]));
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Codes with the extremes (−128, 127, 0) over-represented.
    fn code() -> impl Strategy<Value = i8> {
        prop_oneof![4 => any::<i8>(), 1 => Just(-128i8), 1 => Just(127i8), 1 => Just(0i8)]
    }

    fn query() -> impl Strategy<Value = i16> {
        prop_oneof![4 => any::<i16>(), 1 => Just(i16::MIN), 1 => Just(i16::MAX), 1 => Just(0i16)]
    }

    /// The exact sum, reduced modulo 2³² as the kernels promise.
    fn exact(a: impl Iterator<Item = (i64, i64)>) -> i32 {
        a.map(|(x, y)| x * y).sum::<i64>() as i32
    }

    /// Rows, their dimension and a padded query: lengths with every tail.
    fn blocks() -> impl Strategy<Value = (Vec<i8>, usize, Vec<i16>)> {
        (1usize..300, 0usize..6).prop_flat_map(|(dim, rows)| {
            (
                proptest::collection::vec(code(), dim * rows),
                Just(dim),
                proptest::collection::vec(query(), dim.div_ceil(32) * 32),
            )
        })
    }

    fn check_block(
        name: &str,
        kernel: BlockDotFn,
        (codes, dim, q): &(Vec<i8>, usize, Vec<i16>),
    ) -> Result<(), TestCaseError> {
        let mut q = q.clone();
        q[*dim..].fill(0);
        let rows = codes.len() / dim;
        let want: Vec<i32> = codes
            .chunks_exact(*dim)
            .map(|r| exact(r.iter().zip(&q).map(|(&a, &b)| (a.into(), b.into()))))
            .collect();
        // One more output slot than rows: it is left alone.
        let mut got = vec![7; rows + 1];
        kernel(codes, *dim, &q, &mut got);
        prop_assert_eq!(&got[..rows], &want[..], "{}", name);
        prop_assert_eq!(got[rows], 7, "{}", name);
        Ok(())
    }

    fn check_dot(name: &str, kernel: DotI8Fn, a: &[i8], b: &[i8]) -> Result<(), TestCaseError> {
        let want = exact(a.iter().zip(b).map(|(&x, &y)| (x.into(), y.into())));
        prop_assert_eq!(kernel(a, b), want, "{}", name);
        Ok(())
    }

    fn pairs() -> impl Strategy<Value = (Vec<i8>, Vec<i8>)> {
        (0usize..600).prop_flat_map(|n| {
            (
                proptest::collection::vec(code(), n),
                proptest::collection::vec(code(), n),
            )
        })
    }

    proptest! {
        #[test]
        fn every_block_variant_agrees_with_the_portable_one(case in blocks()) {
            for v in BLOCK_DOT.available() {
                check_block(v.name(), v.kernels, &case)?;
            }
        }

        #[test]
        fn every_i8_variant_agrees_with_the_portable_one((a, b) in pairs()) {
            for v in DOT_I8.available() {
                check_dot(v.name(), v.kernels, &a, &b)?;
            }
        }

        #[cfg(not(target_arch = "aarch64"))]
        #[test]
        fn the_neon_variants_agree_with_the_portable_ones(case in blocks(), (a, b) in pairs()) {
            // SAFETY (both): the model of the intrinsics runs on any CPU.
            check_block("neon", |c, d, q, o| unsafe { neon::block_dot(c, d, q, o) }, &case)?;
            check_dot("neon", |a, b| unsafe { neon::dot_i8(a, b) }, &a, &b)?;
        }
    }

    #[test]
    fn the_sums_are_exact_at_the_extremes() {
        // Every product at its largest.
        for n in [1usize, 31, 64, 65, 1024] {
            let a = vec![-128i8; n];
            let q = vec![i16::MIN; n.div_ceil(32) * 32];
            // Modulo 2³² past i32 (n = 1024 wraps to 0).
            let want = (128 * 32768 * n as i64) as i32;
            for v in BLOCK_DOT.available() {
                let mut out = [0];
                (v.kernels)(&a, n, &q, &mut out);
                assert_eq!(out[0], want, "{} n={n}", v.name());
            }
            for v in DOT_I8.available() {
                assert_eq!((v.kernels)(&a, &a), 16384 * n as i32, "{} n={n}", v.name());
            }
        }
    }
}
