//! Build-side kernels over the int8 codes of the rows (see [`crate::codes`]), vectorised for
//! the CPU found at run time (AVX-512 with or without VNNI, else AVX2, else portable code):
//! two-means' dot products of both centroids' code sums (`i16`) with a row's codes (`i8`) in one
//! pass (`vpdpwssd` or `vpmaddwd`) and the sum update `s += c`; four dot products of biased
//! plane codes (`u8`) with row codes, and one row against eight planes (`vpdpbusd` with VNNI,
//! 64 codes an instruction; else both widened and `vpmaddwd`; two four-plane calls without a
//! VNNI kernel of its own); coding a row. All exact integer arithmetic.
//!
//! Every slice passed to these kernels has the same length, a multiple of [`LANES`] (the codes
//! are padded with zeros), so the vector loops need no tails but a half step of 32 codes where
//! a step takes 64.

use std::sync::OnceLock;

use crate::codes::CodedRow;

/// Slice lengths are multiples of this.
pub(crate) const LANES: usize = 32;

/// `(p · c, q · c)` of two `i16` vectors (the centroids' code sums) with one row's codes, exact
/// in `i32` for sums within [`crate::codes::sum_code_max`].
pub(crate) type Dot2Fn = fn(&[i16], &[i16], &[i8]) -> (i32, i32);
/// `s += c` for a centroid's code sum `s` and one row's codes `c` (the caller keeps `s` from
/// overflowing).
pub(crate) type AddFn = fn(&mut [i16], &[i8]);
/// `[b0 · r0, b1 · r1, b2 · r2, b3 · r3]` of biased plane codes `b` (`u8`: the code plus 128,
/// see [`crate::codes::PlaneCode`]) with row codes `r` (`i8`), exact in `i32` up to
/// [`crate::codes::MAX_DIM`] (one plane against four rows, or one row against four planes).
pub(crate) type SideDot4Fn = fn([&[u8]; 4], [&[i8]; 4]) -> [i32; 4];
/// `[b0 · r, …, b7 · r]`, exact like [`SideDot4Fn`]: one row against eight planes (the level
/// pass, where a row meets one plane per tree).
pub(crate) type SideRow8Fn = fn(&[i8], [&[u8]; 8]) -> [i32; 8];

/// Codes one row (see [`crate::codes::code_row`]).
pub(crate) type CodeRowFn = fn(&[f32], &mut [i8]) -> CodedRow;
/// Writes `row · inv` (in f64, rounded to f32) into `out`: a row scaled to unit length.
pub(crate) type ScaleRowFn = fn(&[f32], f64, &mut [f32]);

/// A set of build kernels.
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    pub dot2: Dot2Fn,
    pub add: AddFn,
    pub side_dot4: SideDot4Fn,
    pub side_row8: SideRow8Fn,
    pub code_row: CodeRowFn,
    pub scale_row: ScaleRowFn,
    /// Which set this is (named in test failures).
    #[cfg_attr(not(test), allow(dead_code))]
    pub name: &'static str,
}

/// The best kernels this CPU runs (the last of [`available`]), chosen once.
pub(crate) fn kernels() -> Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    *K.get_or_init(|| {
        *available()
            .last()
            .expect("the portable set is always there")
    })
}

/// Every kernel set this CPU runs: the portable one first, the fastest last.
fn available() -> Vec<Kernels> {
    let mut all = vec![Kernels {
        dot2: dot2_portable,
        add: add_portable,
        side_dot4: side_dot4_portable,
        side_row8: |r, p| side_row8_by_4(side_dot4_portable, r, p),
        code_row: crate::codes::code_row,
        scale_row,
        name: "portable",
    }];
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            all.push(Kernels {
                // SAFETY: AVX2 was detected on this CPU.
                dot2: |p, q, c| unsafe { x86::dot2_avx2(p, q, c) },
                add: |s, c| unsafe { x86::add_avx2(s, c) },
                side_dot4: |p, r| unsafe { x86::side_dot4_avx2(p, r) },
                side_row8: |r, p| side_row8_by_4(|p, r| unsafe { x86::side_dot4_avx2(p, r) }, r, p),
                code_row: |r, c| unsafe { x86::code_row_avx2(r, c) },
                scale_row: |r, s, o| unsafe { x86::scale_row_avx2(r, s, o) },
                name: "avx2",
            });
        }
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw") {
            let avx512 = Kernels {
                // SAFETY: AVX-512F and AVX-512BW were detected on this CPU.
                dot2: |p, q, c| unsafe { x86::dot2_avx512(p, q, c) },
                add: |s, c| unsafe { x86::add_avx512(s, c) },
                side_dot4: |p, r| unsafe { x86::side_dot4_avx512(p, r) },
                side_row8: |r, p| {
                    side_row8_by_4(|p, r| unsafe { x86::side_dot4_avx512(p, r) }, r, p)
                },
                code_row: |r, c| unsafe { x86::code_row_avx512(r, c) },
                scale_row: |r, s, o| unsafe { x86::scale_row_avx512(r, s, o) },
                name: "avx512",
            };
            all.push(avx512);
            if std::is_x86_feature_detected!("avx512vnni") {
                all.push(Kernels {
                    // SAFETY: AVX-512 VNNI (with F and BW) was detected on this CPU.
                    side_dot4: |p, r| unsafe { x86::side_dot4_avx512vnni(p, r) },
                    side_row8: |r, p| unsafe { x86::side_row8_avx512vnni(r, p) },
                    dot2: |p, q, c| unsafe { x86::dot2_avx512vnni(p, q, c) },
                    name: "avx512vnni",
                    ..avx512
                });
            }
        }
    }
    all
}

fn check_lengths(n: usize, others: &[usize]) {
    assert!(
        n.is_multiple_of(LANES) && others.iter().all(|&m| m == n),
        "kernel slices must share one length, a multiple of {LANES}"
    );
}

fn dot2_portable(p: &[i16], q: &[i16], c: &[i8]) -> (i32, i32) {
    check_lengths(c.len(), &[p.len(), q.len()]);
    let dot = |v: &[i16]| {
        v.iter()
            .zip(c)
            .map(|(&v, &c)| i32::from(v) * i32::from(c))
            .sum()
    };
    (dot(p), dot(q))
}

#[inline(always)]
fn scale_row(row: &[f32], inv: f64, out: &mut [f32]) {
    for (v, &x) in out.iter_mut().zip(row) {
        *v = (f64::from(x) * inv) as f32;
    }
}

fn add_portable(s: &mut [i16], c: &[i8]) {
    check_lengths(c.len(), &[s.len()]);
    for (s, &c) in s.iter_mut().zip(c) {
        *s = s.wrapping_add(i16::from(c));
    }
}

/// Checks the slices of a `side_dot4` call; returns their length and pointers.
fn side_args(planes: [&[u8]; 4], rows: [&[i8]; 4]) -> (usize, [*const u8; 4], [*const i8; 4]) {
    let n = rows[0].len();
    check_lengths(n, &[rows[1].len(), rows[2].len(), rows[3].len()]);
    check_lengths(n, &planes.map(|p| p.len()));
    (n, planes.map(|p| p.as_ptr()), rows.map(|r| r.as_ptr()))
}

/// One row against eight planes as two calls of a four-plane kernel (the kernel sets without
/// a kernel of their own for it).
fn side_row8_by_4(side_dot4: SideDot4Fn, row: &[i8], planes: [&[u8]; 8]) -> [i32; 8] {
    let [a, b] = [0, 4].map(|o| side_dot4([0, 1, 2, 3].map(|j| planes[o + j]), [row; 4]));
    [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]
}

fn side_dot4_portable(planes: [&[u8]; 4], rows: [&[i8]; 4]) -> [i32; 4] {
    side_args(planes, rows);
    [0, 1, 2, 3].map(|j| {
        planes[j]
            .iter()
            .zip(rows[j])
            .map(|(&p, &r)| i32::from(p) * i32::from(r))
            .sum()
    })
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{CodedRow, LANES, check_lengths, side_args};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX-512F and AVX-512BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn dot2_avx512(p: &[i16], q: &[i16], c: &[i8]) -> (i32, i32) {
        let n = c.len();
        check_lengths(n, &[p.len(), q.len()]);
        let (pp, pq, pc) = (p.as_ptr(), q.as_ptr(), c.as_ptr());
        let (mut a, mut b) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        // SAFETY: chunk i reads elements i..i + 32 <= n of each slice.
        unsafe {
            for i in (0..n).step_by(LANES) {
                let r = _mm512_cvtepi8_epi16(_mm256_loadu_si256(pc.add(i).cast()));
                a = _mm512_add_epi32(
                    a,
                    _mm512_madd_epi16(r, _mm512_loadu_si512(pp.add(i).cast())),
                );
                b = _mm512_add_epi32(
                    b,
                    _mm512_madd_epi16(r, _mm512_loadu_si512(pq.add(i).cast())),
                );
            }
        }
        (_mm512_reduce_add_epi32(a), _mm512_reduce_add_epi32(b))
    }

    /// # Safety
    /// The CPU must support AVX-512F, AVX-512BW and AVX-512 VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn dot2_avx512vnni(p: &[i16], q: &[i16], c: &[i8]) -> (i32, i32) {
        let n = c.len();
        check_lengths(n, &[p.len(), q.len()]);
        let (pp, pq, pc) = (p.as_ptr(), q.as_ptr(), c.as_ptr());
        let (mut a0, mut a1, mut b0, mut b1) = (
            _mm512_setzero_si512(),
            _mm512_setzero_si512(),
            _mm512_setzero_si512(),
            _mm512_setzero_si512(),
        );
        // SAFETY: chunk i reads elements i..i + 32 <= n of each slice.
        unsafe {
            let chunk = |i: usize| {
                let r = _mm512_cvtepi8_epi16(_mm256_loadu_si256(pc.add(i).cast()));
                (
                    r,
                    _mm512_loadu_si512(pp.add(i).cast()),
                    _mm512_loadu_si512(pq.add(i).cast()),
                )
            };
            // Two chunks per step into separate sums: shorter dependency chains.
            let mut i = 0;
            while i + 2 * LANES <= n {
                let (r, p, q) = chunk(i);
                a0 = _mm512_dpwssd_epi32(a0, r, p);
                b0 = _mm512_dpwssd_epi32(b0, r, q);
                let (r, p, q) = chunk(i + LANES);
                a1 = _mm512_dpwssd_epi32(a1, r, p);
                b1 = _mm512_dpwssd_epi32(b1, r, q);
                i += 2 * LANES;
            }
            if i < n {
                let (r, p, q) = chunk(i);
                a0 = _mm512_dpwssd_epi32(a0, r, p);
                b0 = _mm512_dpwssd_epi32(b0, r, q);
            }
        }
        (
            _mm512_reduce_add_epi32(_mm512_add_epi32(a0, a1)),
            _mm512_reduce_add_epi32(_mm512_add_epi32(b0, b1)),
        )
    }

    /// # Safety
    /// The CPU must support AVX-512F and AVX-512BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn code_row_avx512(row: &[f32], codes: &mut [i8]) -> CodedRow {
        // The portable code, vectorised by the compiler for these features.
        crate::codes::code_row(row, codes)
    }

    /// # Safety
    /// The CPU must support AVX-512F and AVX-512BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn scale_row_avx512(row: &[f32], inv: f64, out: &mut [f32]) {
        // The portable code, vectorised by the compiler for these features.
        super::scale_row(row, inv, out)
    }

    /// # Safety
    /// The CPU must support AVX-512F and AVX-512BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn add_avx512(s: &mut [i16], c: &[i8]) {
        // The portable loop, vectorised by the compiler for these features.
        super::add_portable(s, c)
    }

    /// # Safety
    /// The CPU must support AVX-512F and AVX-512BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn side_dot4_avx512(planes: [&[u8]; 4], rows: [&[i8]; 4]) -> [i32; 4] {
        let (n, pp, pr) = side_args(planes, rows);
        let mut acc = [_mm512_setzero_si512(); 4];
        // SAFETY: chunk i reads elements i..i + 32 <= n of each slice.
        unsafe {
            let row =
                |r: *const i8, i: usize| _mm512_cvtepi8_epi16(_mm256_loadu_si256(r.add(i).cast()));
            // One row against four planes (the level pass): widen the row once.
            let shared = pr.iter().all(|&r| r == pr[0]);
            for i in (0..n).step_by(LANES) {
                let r0 = row(pr[0], i);
                for j in 0..4 {
                    let r = if shared { r0 } else { row(pr[j], i) };
                    let p = _mm512_cvtepu8_epi16(_mm256_loadu_si256(pp[j].add(i).cast()));
                    acc[j] = _mm512_add_epi32(acc[j], _mm512_madd_epi16(r, p));
                }
            }
        }
        acc.map(|a| _mm512_reduce_add_epi32(a))
    }

    /// `vpdpbusd` of `planes[j]` with `rows[j]`, 64 codes a step (a last half step of 32 in
    /// masked loads, which read nothing beyond the slices).
    ///
    /// # Safety
    /// The CPU must support AVX-512F, AVX-512BW and AVX-512 VNNI; the slices' common length
    /// `n`, a multiple of 32, is what they hold.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn dpbusd_rows<const P: usize>(
        n: usize,
        planes: [*const u8; P],
        rows: [*const i8; P],
    ) -> [i32; P] {
        let mut acc = [_mm512_setzero_si512(); P];
        // SAFETY: full steps read elements i..i + 64 <= n, the half step i..i + 32 = n.
        unsafe {
            let mut i = 0;
            while i + 64 <= n {
                for j in 0..P {
                    let p = _mm512_loadu_si512(planes[j].add(i).cast());
                    let r = _mm512_loadu_si512(rows[j].add(i).cast());
                    acc[j] = _mm512_dpbusd_epi32(acc[j], p, r);
                }
                i += 64;
            }
            if i < n {
                let half = 0xFFFF_FFFF;
                for j in 0..P {
                    let p = _mm512_maskz_loadu_epi8(half, planes[j].add(i).cast());
                    let r = _mm512_maskz_loadu_epi8(half, rows[j].add(i).cast());
                    acc[j] = _mm512_dpbusd_epi32(acc[j], p, r);
                }
            }
        }
        acc.map(|a| _mm512_reduce_add_epi32(a))
    }

    /// # Safety
    /// The CPU must support AVX-512F, AVX-512BW and AVX-512 VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn side_dot4_avx512vnni(planes: [&[u8]; 4], rows: [&[i8]; 4]) -> [i32; 4] {
        let (n, pp, pr) = side_args(planes, rows);
        // SAFETY: the features are the caller's; the slices hold n codes each.
        unsafe { dpbusd_rows(n, pp, pr) }
    }

    /// # Safety
    /// The CPU must support AVX-512F, AVX-512BW and AVX-512 VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn side_row8_avx512vnni(row: &[i8], planes: [&[u8]; 8]) -> [i32; 8] {
        let n = row.len();
        check_lengths(n, &planes.map(|p| p.len()));
        // SAFETY: the features are the caller's; the slices hold n codes each.
        unsafe { dpbusd_rows(n, planes.map(|p| p.as_ptr()), [row.as_ptr(); 8]) }
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot2_avx2(p: &[i16], q: &[i16], c: &[i8]) -> (i32, i32) {
        let n = c.len();
        check_lengths(n, &[p.len(), q.len()]);
        let (pp, pq, pc) = (p.as_ptr(), q.as_ptr(), c.as_ptr());
        let (mut a, mut b) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        // SAFETY: chunk i reads elements i..i + 16 <= n of each slice.
        unsafe {
            for i in (0..n).step_by(16) {
                let r = _mm256_cvtepi8_epi16(_mm_loadu_si128(pc.add(i).cast()));
                a = _mm256_add_epi32(
                    a,
                    _mm256_madd_epi16(r, _mm256_loadu_si256(pp.add(i).cast())),
                );
                b = _mm256_add_epi32(
                    b,
                    _mm256_madd_epi16(r, _mm256_loadu_si256(pq.add(i).cast())),
                );
            }
        }
        (hsum256_epi32(a), hsum256_epi32(b))
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn code_row_avx2(row: &[f32], codes: &mut [i8]) -> CodedRow {
        // The portable code, vectorised by the compiler for these features.
        crate::codes::code_row(row, codes)
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn scale_row_avx2(row: &[f32], inv: f64, out: &mut [f32]) {
        // The portable code, vectorised by the compiler for these features.
        super::scale_row(row, inv, out)
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn add_avx2(s: &mut [i16], c: &[i8]) {
        // The portable loop, vectorised by the compiler for these features.
        super::add_portable(s, c)
    }

    #[target_feature(enable = "avx2")]
    fn hsum256_epi32(a: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256::<1>(a));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        _mm_cvtsi128_si32(s)
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn side_dot4_avx2(planes: [&[u8]; 4], rows: [&[i8]; 4]) -> [i32; 4] {
        let (n, pp, pr) = side_args(planes, rows);
        let mut acc = [_mm256_setzero_si256(); 4];
        // SAFETY: chunk i reads elements i..i + 16 <= n of each slice.
        unsafe {
            let row =
                |r: *const i8, i: usize| _mm256_cvtepi8_epi16(_mm_loadu_si128(r.add(i).cast()));
            // One row against four planes (the level pass): widen the row once.
            let shared = pr.iter().all(|&r| r == pr[0]);
            for i in (0..n).step_by(16) {
                let r0 = row(pr[0], i);
                for j in 0..4 {
                    let r = if shared { r0 } else { row(pr[j], i) };
                    let p = _mm256_cvtepu8_epi16(_mm_loadu_si128(pp[j].add(i).cast()));
                    acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(r, p));
                }
            }
        }
        acc.map(|a| hsum256_epi32(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_agree_with_portable_code() {
        let all = available();
        let portable = all[0];
        for n in [0, 32, 64, 96, 512, 544] {
            // Centroid sums within the bound that keeps the products exact.
            let max = crate::codes::sum_code_max(n) as i32;
            let p: Vec<i16> = (0..n)
                .map(|i| (i as i32 * 7919 % (2 * max) - max) as i16)
                .collect();
            let q: Vec<i16> = (0..n)
                .map(|i| (i as i32 * 104729 % (2 * max) - max) as i16)
                .collect();
            let rows: Vec<Vec<i8>> = (0..4)
                .map(|r| {
                    (0..n)
                        .map(|i| (((i * 37 + r * 101) % 255) as i32 - 127) as i8)
                        .collect()
                })
                .collect();
            // Biased plane codes, large and small.
            let planes: Vec<Vec<u8>> = (0..4)
                .map(|r| {
                    (0..n)
                        .map(|i| if r % 2 == 0 { 255 - (i * 13 + r) % 7 } else { (i * 13 + r) % 7 } as u8)
                        .collect()
                })
                .collect();
            let rows4 = [0, 1, 2, 3].map(|j| rows[j].as_slice());
            let planes4 = [0, 1, 2, 3].map(|j| planes[j].as_slice());
            let want_sides = (portable.side_dot4)(planes4, rows4);
            let want_dot2 = (portable.dot2)(&p, &q, &rows[1]);
            let mut want_sum = p.clone();
            (portable.add)(&mut want_sum, &rows[2]);
            // One row against four planes: the kernels' shared-row path.
            let one_row = [rows4[2]; 4];
            let want_one_row = (portable.side_dot4)(planes4, one_row);
            let planes8 = [0, 1, 2, 3, 3, 2, 1, 0].map(|j| planes[j].as_slice());
            let want_row8 = (portable.side_row8)(&rows[3], planes8);
            for (j, &want) in want_row8.iter().enumerate() {
                let exact: i32 = planes8[j]
                    .iter()
                    .zip(&rows[3])
                    .map(|(&p, &r)| i32::from(p) * i32::from(r))
                    .sum();
                assert_eq!(want, exact);
            }
            for k in &all[1..] {
                assert_eq!(
                    (k.side_dot4)(planes4, one_row),
                    want_one_row,
                    "{} n={n}",
                    k.name
                );
                assert_eq!(
                    (k.side_dot4)(planes4, rows4),
                    want_sides,
                    "{} n={n}",
                    k.name
                );
                assert_eq!((k.dot2)(&p, &q, &rows[1]), want_dot2, "{} n={n}", k.name);
                let got = (k.side_row8)(&rows[3], planes8);
                assert_eq!(got, want_row8, "{} n={n}", k.name);
                let mut sum = p.clone();
                (k.add)(&mut sum, &rows[2]);
                assert_eq!(sum, want_sum, "{} n={n}", k.name);
            }
        }
    }

    #[test]
    fn every_kernel_set_scales_rows_alike() {
        let portable = available()[0];
        let row: Vec<f32> = (0..700)
            .map(|i| ((i * 7919 % 211) as f32 - 105.0) / 13.0)
            .collect();
        let inv = 1.0 / 1234.567f64;
        let mut want = vec![0f32; 700];
        (portable.scale_row)(&row, inv, &mut want);
        for (&w, &x) in want.iter().zip(&row) {
            assert_eq!(w, (f64::from(x) * inv) as f32);
        }
        for k in &available()[1..] {
            let mut got = vec![0f32; 700];
            (k.scale_row)(&row, inv, &mut got);
            assert_eq!(got, want, "{}", k.name);
        }
    }

    #[test]
    fn every_kernel_set_codes_rows_alike() {
        let portable = available()[0];
        for dim in [1usize, 31, 100, 512, 700] {
            let stride = dim.div_ceil(LANES) * LANES;
            let row: Vec<f32> = (0..dim)
                .map(|i| ((i * 7919 % 211) as f32 - 105.0) / 13.0)
                .collect();
            let mut want_codes = vec![0i8; stride];
            let want = (portable.code_row)(&row, &mut want_codes);
            assert_eq!(want_codes.iter().map(|c| c.abs()).max(), Some(127));
            let square: u64 = want_codes
                .iter()
                .map(|&c| (c as i64 * c as i64) as u64)
                .sum();
            assert_eq!(want.square, square);
            for k in &available()[1..] {
                let mut codes = vec![0i8; stride];
                let got = (k.code_row)(&row, &mut codes);
                assert_eq!(codes, want_codes, "{} dim={dim}", k.name);
                assert_eq!(
                    (got.norm, got.scale, got.square),
                    (want.norm, want.scale, want.square),
                    "{} dim={dim}",
                    k.name
                );
            }
        }
    }

    #[test]
    fn kernels_are_exact_at_the_extremes() {
        // Every product at its largest in every lane: the sums stay exact, for the longest
        // rows the build takes (the side kernels) and at 512-d (two-means).
        for n in [512, crate::codes::MAX_DIM] {
            let planes = vec![255u8; n];
            for row in [vec![127i8; n], vec![-127i8; n]] {
                let want = i32::from(row[0]) * 255 * n as i32;
                for k in available() {
                    let got = (k.side_dot4)([planes.as_slice(); 4], [row.as_slice(); 4]);
                    assert_eq!(got, [want; 4], "{} n={n}", k.name);
                    let got = (k.side_row8)(&row, [planes.as_slice(); 8]);
                    assert_eq!(got, [want; 8], "{} n={n}", k.name);
                }
            }
        }
        let n = 512;
        let sums = vec![crate::codes::sum_code_max(n); n];
        for row in [vec![127i8; n], vec![-127i8; n]] {
            let want = i32::from(row[0]) * i32::from(sums[0]) * n as i32;
            for k in available() {
                assert_eq!((k.dot2)(&sums, &sums, &row), (want, want), "{}", k.name);
            }
        }
    }
}
