//! Build-side kernels for two-means, vectorised for the CPU found at run time (AVX-512F, else
//! AVX2+FMA, else portable code): both centroids' dot products with a row in one pass over the
//! row, and the running-mean update `m = a·m + b·x`.

use std::sync::OnceLock;

/// `(p · x, q · x)` for slices of equal length.
pub(crate) type Dot2Fn = fn(&[f32], &[f32], &[f32]) -> (f32, f32);
/// `m = a·m + b·x` for slices of equal length.
pub(crate) type AxpbyFn = fn(&mut [f32], &[f32], f32, f32);

/// `[x · y0, x · y1, x · y2, x · y3]` for slices of equal length (one plane against four rows,
/// or one row against four planes: `x` is read once, four independent sums).
pub(crate) type Dot4Fn = fn(&[f32], [&[f32]; 4]) -> [f32; 4];

/// The build kernels for this CPU.
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    pub dot2: Dot2Fn,
    pub axpby: AxpbyFn,
    pub dot4: Dot4Fn,
}

pub(crate) fn kernels() -> Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    *K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                return Kernels {
                    // SAFETY: AVX-512F was detected on this CPU.
                    dot2: |p, q, x| unsafe { x86::dot2_avx512(p, q, x) },
                    axpby: |m, x, a, b| unsafe { x86::axpby_avx512(m, x, a, b) },
                    dot4: |x, ys| unsafe { x86::dot4_avx512(x, ys) },
                };
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Kernels {
                    // SAFETY: AVX2 and FMA were detected on this CPU.
                    dot2: |p, q, x| unsafe { x86::dot2_avx2(p, q, x) },
                    axpby: |m, x, a, b| unsafe { x86::axpby_avx2(m, x, a, b) },
                    dot4: dot4_portable,
                };
            }
        }
        Kernels {
            dot2: dot2_portable,
            axpby: axpby_portable,
            dot4: dot4_portable,
        }
    })
}

fn dot2_portable(p: &[f32], q: &[f32], x: &[f32]) -> (f32, f32) {
    assert!(p.len() == x.len() && q.len() == x.len());
    let (mut a, mut b) = (0f32, 0f32);
    for ((&p, &q), &x) in p.iter().zip(q).zip(x) {
        a += p * x;
        b += q * x;
    }
    (a, b)
}

fn dot4_portable(x: &[f32], ys: [&[f32]; 4]) -> [f32; 4] {
    let dot = embed_store::kernels::dot_kernel();
    ys.map(|y| dot(x, y))
}

fn axpby_portable(m: &mut [f32], x: &[f32], a: f32, b: f32) {
    assert_eq!(m.len(), x.len());
    for (m, &x) in m.iter_mut().zip(x) {
        *m = *m * a + x * b;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot2_avx512(p: &[f32], q: &[f32], x: &[f32]) -> (f32, f32) {
        assert!(p.len() == x.len() && q.len() == x.len());
        let n = x.len();
        let (pp, pq, px) = (p.as_ptr(), q.as_ptr(), x.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY: every load reads 16 floats at i + 16j <= n - 16.
        unsafe {
            while i + 32 <= n {
                for j in 0..2 {
                    let v = _mm512_loadu_ps(px.add(i + 16 * j));
                    acc[j] = _mm512_fmadd_ps(_mm512_loadu_ps(pp.add(i + 16 * j)), v, acc[j]);
                    acc[2 + j] =
                        _mm512_fmadd_ps(_mm512_loadu_ps(pq.add(i + 16 * j)), v, acc[2 + j]);
                }
                i += 32;
            }
            while i + 16 <= n {
                let v = _mm512_loadu_ps(px.add(i));
                acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(pp.add(i)), v, acc[0]);
                acc[2] = _mm512_fmadd_ps(_mm512_loadu_ps(pq.add(i)), v, acc[2]);
                i += 16;
            }
        }
        let mut a = _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
        let mut b = _mm512_reduce_add_ps(_mm512_add_ps(acc[2], acc[3]));
        for k in i..n {
            a += p[k] * x[k];
            b += q[k] * x[k];
        }
        (a, b)
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot4_avx512(x: &[f32], ys: [&[f32]; 4]) -> [f32; 4] {
        let n = x.len();
        assert!(ys.iter().all(|y| y.len() == n));
        let px = x.as_ptr();
        let py = ys.map(|y| y.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY: every load reads 16 floats at i <= n - 16 of slices of length n.
        unsafe {
            while i + 16 <= n {
                let v = _mm512_loadu_ps(px.add(i));
                for j in 0..4 {
                    acc[j] = _mm512_fmadd_ps(_mm512_loadu_ps(py[j].add(i)), v, acc[j]);
                }
                i += 16;
            }
        }
        let mut out = acc.map(|a| _mm512_reduce_add_ps(a));
        for k in i..n {
            for j in 0..4 {
                out[j] += x[k] * ys[j][k];
            }
        }
        out
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn axpby_avx512(m: &mut [f32], x: &[f32], a: f32, b: f32) {
        assert_eq!(m.len(), x.len());
        let n = x.len();
        let (pm, px) = (m.as_mut_ptr(), x.as_ptr());
        let (va, vb) = (_mm512_set1_ps(a), _mm512_set1_ps(b));
        let mut i = 0;
        // SAFETY: every load and store touches 16 floats at i <= n - 16.
        unsafe {
            while i + 16 <= n {
                let t = _mm512_mul_ps(_mm512_loadu_ps(px.add(i)), vb);
                _mm512_storeu_ps(
                    pm.add(i),
                    _mm512_fmadd_ps(_mm512_loadu_ps(pm.add(i)), va, t),
                );
                i += 16;
            }
        }
        for k in i..n {
            m[k] = m[k] * a + x[k] * b;
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn hsum256(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot2_avx2(p: &[f32], q: &[f32], x: &[f32]) -> (f32, f32) {
        assert!(p.len() == x.len() && q.len() == x.len());
        let n = x.len();
        let (pp, pq, px) = (p.as_ptr(), q.as_ptr(), x.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY: every load reads 8 floats at i + 8j <= n - 8.
        unsafe {
            while i + 16 <= n {
                for j in 0..2 {
                    let v = _mm256_loadu_ps(px.add(i + 8 * j));
                    acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(pp.add(i + 8 * j)), v, acc[j]);
                    acc[2 + j] = _mm256_fmadd_ps(_mm256_loadu_ps(pq.add(i + 8 * j)), v, acc[2 + j]);
                }
                i += 16;
            }
        }
        let mut a = hsum256(_mm256_add_ps(acc[0], acc[1]));
        let mut b = hsum256(_mm256_add_ps(acc[2], acc[3]));
        for k in i..n {
            a += p[k] * x[k];
            b += q[k] * x[k];
        }
        (a, b)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn axpby_avx2(m: &mut [f32], x: &[f32], a: f32, b: f32) {
        assert_eq!(m.len(), x.len());
        let n = x.len();
        let (pm, px) = (m.as_mut_ptr(), x.as_ptr());
        let (va, vb) = (_mm256_set1_ps(a), _mm256_set1_ps(b));
        let mut i = 0;
        // SAFETY: every load and store touches 8 floats at i <= n - 8.
        unsafe {
            while i + 8 <= n {
                let t = _mm256_mul_ps(_mm256_loadu_ps(px.add(i)), vb);
                _mm256_storeu_ps(
                    pm.add(i),
                    _mm256_fmadd_ps(_mm256_loadu_ps(pm.add(i)), va, t),
                );
                i += 8;
            }
        }
        for k in i..n {
            m[k] = m[k] * a + x[k] * b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_agree_with_portable_code() {
        let k = kernels();
        for n in [0, 1, 7, 15, 16, 17, 31, 33, 100, 512, 515] {
            let p: Vec<f32> = (0..n).map(|i| (i as f32 * 0.7).sin()).collect();
            let q: Vec<f32> = (0..n).map(|i| (i as f32 * 1.3).cos()).collect();
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).sin() - 0.2).collect();
            let (a, b) = (k.dot2)(&p, &q, &x);
            let (wa, wb) = dot2_portable(&p, &q, &x);
            assert!(
                (a - wa).abs() <= 1e-4 * (1.0 + wa.abs()),
                "n={n}: {a} vs {wa}"
            );
            assert!(
                (b - wb).abs() <= 1e-4 * (1.0 + wb.abs()),
                "n={n}: {b} vs {wb}"
            );
            let got = (k.dot4)(&x, [&p, &q, &x, &p]);
            let want = dot4_portable(&x, [&p, &q, &x, &p]);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "n={n}: {g} vs {w}");
            }
            let (mut m1, mut m2) = (p.clone(), p.clone());
            (k.axpby)(&mut m1, &x, 0.75, 0.25);
            axpby_portable(&mut m2, &x, 0.75, 0.25);
            for (u, v) in m1.iter().zip(&m2) {
                assert!((u - v).abs() <= 1e-6, "n={n}: {u} vs {v}");
            }
        }
    }
}
