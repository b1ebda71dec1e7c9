//! f32 dot products and squared distances: AVX-512, AVX2+FMA, NEON and portable variants.
//! Every variant agrees with the portable one up to float rounding (the order of the sums).

use crate::cpu::{Family, Isa, Variant};

/// Signature of a kernel over two slices of equal length (it panics on unequal ones).
pub type DotFn = fn(&[f32], &[f32]) -> f32;

/// The f32 kernels of one variant, as plain function pointers for hot loops.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    /// `a · b`.
    pub dot: DotFn,
    /// `-(a · b)`: a "smaller is closer" distance for unit vectors and inner products.
    pub neg_dot: DotFn,
    /// `‖a − b‖²`.
    pub l2_squared: DotFn,
}

/// The f32 family.
pub static KERNELS: Family<Kernels> = Family::new("f32", || {
    #[allow(unused_mut)]
    let mut all = vec![Variant {
        isa: Isa::Portable,
        kernels: Kernels {
            dot: dot_portable,
            neg_dot: |a, b| -dot_portable(a, b),
            l2_squared: l2_squared_portable,
        },
    }];
    #[cfg(target_arch = "x86_64")]
    {
        all.push(Variant {
            isa: Isa::Avx2,
            // SAFETY (all three): the family runs this variant only where AVX2 and FMA were
            // detected.
            kernels: Kernels {
                dot: |a, b| unsafe { x86::dot_avx2(a, b) },
                neg_dot: |a, b| -unsafe { x86::dot_avx2(a, b) },
                l2_squared: |a, b| unsafe { x86::l2_avx2(a, b) },
            },
        });
        all.push(Variant {
            isa: Isa::Avx512,
            // SAFETY (all three): run only where AVX-512 F (and BW) was detected.
            kernels: Kernels {
                dot: |a, b| unsafe { x86::dot_avx512(a, b) },
                neg_dot: |a, b| -unsafe { x86::dot_avx512(a, b) },
                l2_squared: |a, b| unsafe { x86::l2_avx512(a, b) },
            },
        });
    }
    #[cfg(target_arch = "aarch64")]
    all.push(Variant {
        isa: Isa::Neon,
        // SAFETY (all three): run only where NEON was detected.
        kernels: Kernels {
            dot: |a, b| unsafe { neon::dot(a, b) },
            neg_dot: |a, b| -unsafe { neon::dot(a, b) },
            l2_squared: |a, b| unsafe { neon::l2_squared(a, b) },
        },
    });
    all
});

/// Inner product of `a` and `b` (equal lengths), with the variant chosen for this CPU.
///
/// ```
/// assert_eq!(search_kernels::dot(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]), 32.0);
/// ```
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (kernels().dot)(a, b)
}

/// The dot-product kernel chosen for this CPU; hold on to it in hot loops.
pub fn dot_kernel() -> DotFn {
    kernels().dot
}

/// The f32 kernels chosen for this CPU.
#[inline]
pub fn kernels() -> Kernels {
    KERNELS.best().kernels
}

/// Portable dot product: eight independent accumulators, which LLVM vectorises on any target.
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(
        a.len(),
        b.len(),
        "dot product of slices of different lengths"
    );
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Portable squared Euclidean distance: eight independent accumulators.
fn l2_squared_portable(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(
        a.len(),
        b.len(),
        "distance between slices of different lengths"
    );
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            let t = x[i] - y[i];
            acc[i] += t * t;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Horizontal sum of the eight lanes.
    #[target_feature(enable = "avx2,fma")]
    fn hsum256(s: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// Mask of the first `left` (< 16) lanes.
    fn tail_mask(left: usize) -> __mmask16 {
        (1u16 << left) - 1
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(
            a.len(),
            b.len(),
            "dot product of slices of different lengths"
        );
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY: every load reads 8 floats at i + 8j < n, checked by the loop conditions.
        unsafe {
            while i + 32 <= n {
                for (j, acc) in acc.iter_mut().enumerate() {
                    let x = _mm256_loadu_ps(pa.add(i + 8 * j));
                    let y = _mm256_loadu_ps(pb.add(i + 8 * j));
                    *acc = _mm256_fmadd_ps(x, y, *acc);
                }
                i += 32;
            }
            while i + 8 <= n {
                acc[0] = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i)),
                    _mm256_loadu_ps(pb.add(i)),
                    acc[0],
                );
                i += 8;
            }
        }
        let mut total = hsum256(_mm256_add_ps(
            _mm256_add_ps(acc[0], acc[1]),
            _mm256_add_ps(acc[2], acc[3]),
        ));
        for k in i..n {
            total += a[k] * b[k];
        }
        total
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn l2_avx2(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(
            a.len(),
            b.len(),
            "distance between slices of different lengths"
        );
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 2];
        let mut i = 0;
        // SAFETY: every load reads 8 floats at i + 8j < n, checked by the loop condition.
        unsafe {
            while i + 16 <= n {
                for (j, acc) in acc.iter_mut().enumerate() {
                    let t = _mm256_sub_ps(
                        _mm256_loadu_ps(pa.add(i + 8 * j)),
                        _mm256_loadu_ps(pb.add(i + 8 * j)),
                    );
                    *acc = _mm256_fmadd_ps(t, t, *acc);
                }
                i += 16;
            }
        }
        let mut total = hsum256(_mm256_add_ps(acc[0], acc[1]));
        for k in i..n {
            let t = a[k] - b[k];
            total += t * t;
        }
        total
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(
            a.len(),
            b.len(),
            "dot product of slices of different lengths"
        );
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY: every full load reads 16 floats at i + 16j < n; the tail uses a masked load.
        unsafe {
            while i + 64 <= n {
                for (j, acc) in acc.iter_mut().enumerate() {
                    let x = _mm512_loadu_ps(pa.add(i + 16 * j));
                    let y = _mm512_loadu_ps(pb.add(i + 16 * j));
                    *acc = _mm512_fmadd_ps(x, y, *acc);
                }
                i += 64;
            }
            while i + 16 <= n {
                acc[0] = _mm512_fmadd_ps(
                    _mm512_loadu_ps(pa.add(i)),
                    _mm512_loadu_ps(pb.add(i)),
                    acc[0],
                );
                i += 16;
            }
            if i < n {
                let mask = tail_mask(n - i);
                let x = _mm512_maskz_loadu_ps(mask, pa.add(i));
                let y = _mm512_maskz_loadu_ps(mask, pb.add(i));
                acc[1] = _mm512_fmadd_ps(x, y, acc[1]);
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(acc[0], acc[1]),
            _mm512_add_ps(acc[2], acc[3]),
        ))
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn l2_avx512(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(
            a.len(),
            b.len(),
            "distance between slices of different lengths"
        );
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 2];
        let mut i = 0;
        // SAFETY: every full load reads 16 floats at i + 16j < n; the tail uses a masked load.
        unsafe {
            while i + 32 <= n {
                for (j, acc) in acc.iter_mut().enumerate() {
                    let t = _mm512_sub_ps(
                        _mm512_loadu_ps(pa.add(i + 16 * j)),
                        _mm512_loadu_ps(pb.add(i + 16 * j)),
                    );
                    *acc = _mm512_fmadd_ps(t, t, *acc);
                }
                i += 32;
            }
            while i + 16 <= n {
                let t = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
                acc[0] = _mm512_fmadd_ps(t, t, acc[0]);
                i += 16;
            }
            if i < n {
                let mask = tail_mask(n - i);
                let t = _mm512_sub_ps(
                    _mm512_maskz_loadu_ps(mask, pa.add(i)),
                    _mm512_maskz_loadu_ps(mask, pb.add(i)),
                );
                acc[1] = _mm512_fmadd_ps(t, t, acc[1]);
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]))
    }
}

/// The NEON variant. On other targets the tests build it against [`crate::neon_emul`], a
/// portable model of the intrinsics it uses, so its logic is tested everywhere.
#[cfg(any(target_arch = "aarch64", test))]
pub(crate) mod neon {
    #[cfg(not(target_arch = "aarch64"))]
    use crate::neon_emul::*;
    #[cfg(target_arch = "aarch64")]
    use std::arch::aarch64::*;

    /// # Safety
    /// The CPU must support NEON.
    #[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(
            a.len(),
            b.len(),
            "dot product of slices of different lengths"
        );
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [vdupq_n_f32(0.0); 4];
        let mut i = 0;
        // SAFETY: every load reads 4 floats at i + 4j + 3 < n, checked by the loop conditions.
        unsafe {
            while i + 16 <= n {
                for (j, acc) in acc.iter_mut().enumerate() {
                    let x = vld1q_f32(pa.add(i + 4 * j));
                    let y = vld1q_f32(pb.add(i + 4 * j));
                    *acc = vfmaq_f32(*acc, x, y);
                }
                i += 16;
            }
            while i + 4 <= n {
                acc[0] = vfmaq_f32(acc[0], vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
                i += 4;
            }
        }
        let s = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
        let mut total = vaddvq_f32(s);
        for k in i..n {
            total += a[k] * b[k];
        }
        total
    }

    /// # Safety
    /// The CPU must support NEON.
    #[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
    pub unsafe fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(
            a.len(),
            b.len(),
            "distance between slices of different lengths"
        );
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [vdupq_n_f32(0.0); 2];
        let mut i = 0;
        // SAFETY: every load reads 4 floats at i + 4j + 3 < n, checked by the loop condition.
        unsafe {
            while i + 8 <= n {
                for (j, acc) in acc.iter_mut().enumerate() {
                    let t = vsubq_f32(vld1q_f32(pa.add(i + 4 * j)), vld1q_f32(pb.add(i + 4 * j)));
                    *acc = vfmaq_f32(*acc, t, t);
                }
                i += 8;
            }
        }
        let mut total = vaddvq_f32(vaddq_f32(acc[0], acc[1]));
        for k in i..n {
            let t = a[k] - b[k];
            total += t * t;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Checks `dot` and `l2` (of some variant) against f64 arithmetic.
    fn check(name: &str, a: &[f32], b: &[f32], dot: f32, l2: f32) -> Result<(), TestCaseError> {
        let exact: f64 = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum();
        let scale: f64 = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| (f64::from(x) * f64::from(y)).abs())
            .sum::<f64>();
        // Any order of summation, with or without FMA, is within γ_n of the exact sum.
        let gamma = 2.0 * (a.len() as f64 + 2.0) * f64::from(f32::EPSILON);
        let tol = gamma * scale + 1e-30;
        prop_assert!(
            (f64::from(dot) - exact).abs() <= tol,
            "{name}: dot {dot} vs {exact}"
        );
        let l2_exact: f64 = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum();
        prop_assert!(
            (f64::from(l2) - l2_exact).abs() <= gamma * l2_exact + 1e-30,
            "{name}: l2 {l2} vs {l2_exact}"
        );
        Ok(())
    }

    /// Pairs of vectors of any length (tails included), with moderate and extreme entries.
    fn pairs() -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
        let entry = prop_oneof![
            4 => -10f32..10.0,
            1 => Just(0.0f32),
            1 => -1e15f32..1e15,
            1 => -1e-18f32..1e-18,
        ];
        proptest::collection::vec((entry.clone(), entry), 0..300)
            .prop_map(|v| v.into_iter().unzip())
    }

    proptest! {
        #[test]
        fn every_variant_agrees_with_f64((a, b) in pairs()) {
            for v in KERNELS.available() {
                let k = v.kernels;
                let dot = (k.dot)(&a, &b);
                check(v.name(), &a, &b, dot, (k.l2_squared)(&a, &b))?;
                prop_assert_eq!((k.neg_dot)(&a, &b), -dot);
            }
        }

        /// The NEON variant, on its model of the intrinsics where the CPU has no NEON.
        #[cfg(not(target_arch = "aarch64"))]
        #[test]
        fn the_neon_variant_agrees_with_f64((a, b) in pairs()) {
            // SAFETY: the model of the intrinsics runs on any CPU.
            let (dot, l2) = unsafe { (neon::dot(&a, &b), neon::l2_squared(&a, &b)) };
            check("neon", &a, &b, dot, l2)?;
        }
    }

    #[test]
    fn the_variants_share_one_table() {
        assert_eq!(KERNELS.portable().isa, Isa::Portable);
        assert!(KERNELS.available().iter().all(|v| v.isa.is_supported()));
        assert_eq!(dot(&[1.0, 2.0], &[3.0, 4.0]), 11.0);
    }

    #[test]
    #[should_panic(expected = "different lengths")]
    fn unequal_lengths_panic() {
        let _ = (KERNELS.best().kernels.dot)(&[1.0], &[1.0, 2.0]);
    }
}
