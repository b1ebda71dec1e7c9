//! Compact int8 copies of the (unit) vectors, used to walk the graph; exact f32 dot products
//! re-rank the final candidates.
//!
//! Each row is scaled by its own largest magnitude: `code = round(x · 127 / max|x|)`, so
//! `dot(a, b) ≈ scale_a · scale_b · Σ code_a · code_b` with `scale = max|x| / 127`. On unit
//! 512-d vectors the error of that estimate is a few 1e-4 in cosine, far below the gaps the
//! walk decides on. Rows are padded with zero codes to a multiple of 64 bytes.
//!
//! The integer dot product is exact (i32) and chosen at run time: AVX-512 VNNI (`vpdpbusd`,
//! 64 bytes per instruction), AVX2 (`vpmaddwd` on widened codes), or portable Rust.

use std::sync::OnceLock;

/// Bytes of codes per row for `dim` components.
pub(crate) fn code_stride(dim: usize) -> usize {
    dim.div_ceil(64) * 64
}

/// Quantises `row` into `out` (zero-padded) and returns the row's scale.
pub(crate) fn quantize(row: &[f32], out: &mut [i8]) -> f32 {
    let max = row.iter().fold(0f32, |m, &x| m.max(x.abs()));
    out.fill(0);
    if max == 0.0 || !max.is_finite() {
        return 0.0;
    }
    let k = 127.0 / max;
    for (o, &x) in out.iter_mut().zip(row) {
        *o = (x * k).round().clamp(-127.0, 127.0) as i8;
    }
    max / 127.0
}

/// An exact integer dot product of two code rows of equal length (a multiple of 64).
pub(crate) type DotI8 = fn(&[i8], &[i8]) -> i32;

pub(crate) fn dot_i8_kernel() -> (DotI8, &'static str) {
    static K: OnceLock<(DotI8, &'static str)> = OnceLock::new();
    *K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vnni")
            {
                // SAFETY: AVX-512BW and VNNI were detected on this CPU.
                return (|a, b| unsafe { x86::dot_vnni(a, b) }, "avx512vnni");
            }
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 was detected on this CPU.
                return (|a, b| unsafe { x86::dot_avx2(a, b) }, "avx2");
            }
        }
        (dot_i8_scalar, "scalar")
    })
}

/// Portable integer dot product.
pub(crate) fn dot_i8_scalar(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: i32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    acc.iter().sum::<i32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// `vpdpbusd` multiplies unsigned by signed bytes, so `a` is shifted to unsigned with
    /// `a ^ 0x80 = a + 128` and `128 · Σ b` (accumulated alongside) is taken back off.
    ///
    /// # Safety
    /// The CPU must support AVX-512BW and AVX-512 VNNI.
    #[target_feature(enable = "avx512bw,avx512vnni")]
    pub unsafe fn dot_vnni(a: &[i8], b: &[i8]) -> i32 {
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
            total += i32::from(a[k]) * i32::from(b[k]);
        }
        total
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_avx2(a: &[i8], b: &[i8]) -> i32 {
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
        let s = _mm256_add_epi32(acc[0], acc[1]);
        let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        let mut total = _mm_cvtsi128_si32(s);
        for k in i..n {
            total += i32::from(a[k]) * i32::from(b[k]);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_kernels_are_exact() {
        let (k, _) = dot_i8_kernel();
        for n in [0usize, 64, 128, 192, 512, 1024] {
            for pattern in 0..4 {
                let a: Vec<i8> = (0..n)
                    .map(|i| match pattern {
                        0 => 127,
                        1 => -127,
                        _ => ((i * 73 + pattern * 11) % 255) as i32 as u8 as i8,
                    })
                    .map(|x: i8| x.max(-127))
                    .collect();
                let b: Vec<i8> = (0..n)
                    .map(|i| {
                        if pattern == 1 {
                            127
                        } else {
                            ((i * 31 + 7) % 255) as u8 as i8
                        }
                    })
                    .map(|x: i8| x.max(-127))
                    .collect();
                let exact: i64 = a
                    .iter()
                    .zip(&b)
                    .map(|(&x, &y)| i64::from(x) * i64::from(y))
                    .sum();
                assert_eq!(i64::from(k(&a, &b)), exact, "n={n} pattern={pattern}");
                assert_eq!(i64::from(dot_i8_scalar(&a, &b)), exact);
                #[cfg(target_arch = "x86_64")]
                if std::is_x86_feature_detected!("avx2") {
                    assert_eq!(i64::from(unsafe { x86::dot_avx2(&a, &b) }), exact);
                }
            }
        }
    }

    #[test]
    fn quantised_dot_is_close() {
        let a: Vec<f32> = (0..512)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let b: Vec<f32> = (0..512)
            .map(|i| ((i * 53 % 89) as f32 - 44.0) / 44.0)
            .collect();
        let (mut ca, mut cb) = (vec![0i8; 512], vec![0i8; 512]);
        let (sa, sb) = (quantize(&a, &mut ca), quantize(&b, &mut cb));
        let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let approx = sa * sb * dot_i8_kernel().0(&ca, &cb) as f32;
        let scale = a.iter().map(|x| x * x).sum::<f32>().sqrt()
            * b.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((exact - approx).abs() < 0.01 * scale, "{exact} vs {approx}");
    }
}
