//! Distance kernels, vectorised for the CPU found at run time, shared by every engine.
//!
//! A plain `cargo build --release` targets baseline x86-64, so the AVX2/FMA and AVX-512 variants
//! are compiled with `#[target_feature]` and chosen once, on first use, with
//! `is_x86_feature_detected!`. Every variant agrees with the portable one up to float rounding.

use std::sync::OnceLock;

/// Signature of a kernel over two slices of equal length.
pub type DotFn = fn(&[f32], &[f32]) -> f32;

/// Inner product of `a` and `b` (equal lengths), with the fastest kernel this CPU supports.
///
/// ```
/// assert_eq!(search_kernels::dot(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]), 32.0);
/// ```
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (kernel_set().dot)(a, b)
}

/// The dot-product kernel chosen for this CPU; hold on to it in hot loops.
pub fn dot_kernel() -> DotFn {
    kernel_set().dot
}

/// Name of the kernels [`kernel_set`] picked ("avx512", "avx2+fma" or "scalar"), for reports.
pub fn dot_kernel_name() -> &'static str {
    kernel_set().name
}

/// The distance kernels chosen for this CPU, as plain function pointers for hot loops.
#[derive(Debug)]
pub struct KernelSet {
    /// `a · b`.
    pub dot: DotFn,
    /// `-(a · b)`: a "smaller is closer" distance for unit vectors and inner products.
    pub neg_dot: DotFn,
    /// `‖a − b‖²`.
    pub l2_squared: DotFn,
    /// "avx512", "avx2+fma" or "scalar".
    pub name: &'static str,
}

/// The kernels for this CPU, chosen once: AVX-512F, else AVX2+FMA, else portable code.
pub fn kernel_set() -> &'static KernelSet {
    static KERNELS: OnceLock<KernelSet> = OnceLock::new();
    KERNELS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                return KernelSet {
                    // SAFETY (all three): AVX-512F was detected on this CPU.
                    dot: |a, b| unsafe { x86::dot_avx512(a, b) },
                    neg_dot: |a, b| -unsafe { x86::dot_avx512(a, b) },
                    l2_squared: |a, b| unsafe { x86::l2_avx512(a, b) },
                    name: "avx512",
                };
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return KernelSet {
                    // SAFETY (all three): AVX2 and FMA were detected on this CPU.
                    dot: |a, b| unsafe { x86::dot_avx2(a, b) },
                    neg_dot: |a, b| -unsafe { x86::dot_avx2(a, b) },
                    l2_squared: |a, b| unsafe { x86::l2_avx2(a, b) },
                    name: "avx2+fma",
                };
            }
        }
        KernelSet {
            dot: dot_scalar,
            neg_dot: |a, b| -dot_scalar(a, b),
            l2_squared: l2_squared_scalar,
            name: "scalar",
        }
    })
}

/// Asks the CPU to start loading the `bytes` bytes at `p` into cache. A hint: it never faults,
/// whatever the address.
#[inline(always)]
pub fn prefetch(p: *const u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let mut off = 0;
        while off < bytes {
            // SAFETY: prefetch is a hint and never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off) as *const i8) };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, bytes);
}

/// Portable dot product: eight independent accumulators, which LLVM vectorises on any target.
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
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
pub fn l2_squared_scalar(a: &[f32], b: &[f32]) -> f32 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_kernel_matches_f64(v in proptest::collection::vec((-10f32..10.0, -10f32..10.0), 0..300)) {
            let (a, b): (Vec<f32>, Vec<f32>) = v.into_iter().unzip();
            let exact: f64 = a.iter().zip(&b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
            let scale: f64 = a.iter().zip(&b).map(|(&x, &y)| (f64::from(x) * f64::from(y)).abs()).sum::<f64>() + 1.0;
            for got in [dot(&a, &b), dot_scalar(&a, &b), -(kernel_set().neg_dot)(&a, &b)] {
                prop_assert!((f64::from(got) - exact).abs() <= 1e-5 * scale, "{got} vs {exact}");
            }
            let l2: f64 = a.iter().zip(&b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum();
            let mut l2s = vec![(kernel_set().l2_squared)(&a, &b), l2_squared_scalar(&a, &b)];
            // Every variant this CPU can run, not only the one kernel_set picked.
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: AVX2 and FMA were detected.
                    let got = unsafe { x86::dot_avx2(&a, &b) };
                    prop_assert!((f64::from(got) - exact).abs() <= 1e-5 * scale, "avx2 {got} vs {exact}");
                    l2s.push(unsafe { x86::l2_avx2(&a, &b) });
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: AVX-512F was detected.
                    let got = unsafe { x86::dot_avx512(&a, &b) };
                    prop_assert!((f64::from(got) - exact).abs() <= 1e-5 * scale, "avx512 {got} vs {exact}");
                    l2s.push(unsafe { x86::l2_avx512(&a, &b) });
                }
            }
            for got in l2s {
                prop_assert!((f64::from(got) - l2).abs() <= 1e-5 * (l2 + 1.0), "{got} vs {l2}");
            }
        }
    }
}
