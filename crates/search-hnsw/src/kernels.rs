//! Distance kernels of the graph, chosen once at run time for the CPU.
//!
//! Distances are "smaller is closer": `-dot` for cosine and inner product (hnswlib uses
//! `1 - dot`, which orders the same), squared Euclidean for l2. Rows are padded with zeros to a
//! multiple of 16 floats, so the vector loops have no tails in practice (they still handle one).

use std::sync::OnceLock;

/// A distance between two rows of equal length.
pub(crate) type DistFn = fn(&[f32], &[f32]) -> f32;

/// The kernels for this CPU.
pub(crate) struct Kernels {
    pub neg_dot: DistFn,
    pub l2: DistFn,
    pub name: &'static str,
}

pub(crate) fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                return Kernels {
                    // SAFETY: AVX-512F was detected on this CPU.
                    neg_dot: |a, b| -unsafe { x86::dot512(a, b) },
                    l2: |a, b| unsafe { x86::l2_512(a, b) },
                    name: "avx512",
                };
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Kernels {
                    // SAFETY: AVX2 and FMA were detected on this CPU.
                    neg_dot: |a, b| -unsafe { x86::dot256(a, b) },
                    l2: |a, b| unsafe { x86::l2_256(a, b) },
                    name: "avx2+fma",
                };
            }
        }
        Kernels {
            neg_dot: |a, b| -embed_store::kernels::dot_scalar(a, b),
            l2: l2_scalar,
            name: "scalar",
        }
    })
}

/// Squared Euclidean distance, portable.
pub(crate) fn l2_scalar(a: &[f32], b: &[f32]) -> f32 {
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

/// Asks the CPU to start loading `bytes` bytes at `p` into cache (a hint; never faults).
#[inline(always)]
pub(crate) fn prefetch(p: *const u8, bytes: usize) {
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY: every load reads 16 floats below n; the tail is masked.
        unsafe {
            while i + 64 <= n {
                for (j, acc) in acc.iter_mut().enumerate() {
                    let x = _mm512_loadu_ps(pa.add(i + 16 * j));
                    let y = _mm512_loadu_ps(pb.add(i + 16 * j));
                    *acc = _mm512_fmadd_ps(x, y, *acc);
                }
                i += 64;
            }
            while i < n {
                let left = (n - i).min(16);
                let mask: __mmask16 = if left == 16 { !0 } else { (1u16 << left) - 1 };
                let x = _mm512_maskz_loadu_ps(mask, pa.add(i));
                let y = _mm512_maskz_loadu_ps(mask, pb.add(i));
                acc[0] = _mm512_fmadd_ps(x, y, acc[0]);
                i += left;
            }
        }
        let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        _mm512_reduce_add_ps(s)
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn l2_512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 2];
        let mut i = 0;
        // SAFETY: every load reads 16 floats below n; the tail is masked.
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
            while i < n {
                let left = (n - i).min(16);
                let mask: __mmask16 = if left == 16 { !0 } else { (1u16 << left) - 1 };
                let t = _mm512_sub_ps(
                    _mm512_maskz_loadu_ps(mask, pa.add(i)),
                    _mm512_maskz_loadu_ps(mask, pb.add(i)),
                );
                acc[0] = _mm512_fmadd_ps(t, t, acc[0]);
                i += left;
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]))
    }

    #[target_feature(enable = "avx2,fma")]
    fn hsum256(s: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot256(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY: every load reads 8 floats below n; the tail is scalar.
        let mut total = unsafe {
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
            hsum256(_mm256_add_ps(
                _mm256_add_ps(acc[0], acc[1]),
                _mm256_add_ps(acc[2], acc[3]),
            ))
        };
        for k in i..n {
            total += a[k] * b[k];
        }
        total
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn l2_256(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 2];
        let mut i = 0;
        // SAFETY: every load reads 8 floats below n; the tail is scalar.
        let mut total = unsafe {
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
            hsum256(_mm256_add_ps(acc[0], acc[1]))
        };
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

    #[test]
    fn kernels_agree_with_f64() {
        let k = kernels();
        for n in [0usize, 1, 7, 16, 33, 100, 512] {
            let a: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 30.0)
                .collect();
            let b: Vec<f32> = (0..n)
                .map(|i| ((i * 53 % 89) as f32 - 44.0) / 20.0)
                .collect();
            let dot: f64 = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| f64::from(x) * f64::from(y))
                .sum();
            let l2: f64 = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
                .sum();
            let tol = 1e-4 * (1.0 + n as f64);
            assert!(
                (f64::from((k.neg_dot)(&a, &b)) + dot).abs() < tol,
                "{} dot n={n}",
                k.name
            );
            assert!(
                (f64::from((k.l2)(&a, &b)) - l2).abs() < tol,
                "{} l2 n={n}",
                k.name
            );
            assert!((f64::from(l2_scalar(&a, &b)) - l2).abs() < tol);
        }
    }
}
