//! The split-plane kernels of the forest's build, over int8 row codes: two-means' dot
//! products of both centroids' `i16` code sums with a row's `i8` codes in one pass
//! (`vpdpwssd` with AVX-512 VNNI, else `vpmaddwd`) and the sum update `s += c`; four dot
//! products of biased plane codes (`u8`: the code plus 128) with row codes, and one row against
//! eight planes (`vpdpbusd` with VNNI, 64 codes an instruction; else both widened and
//! `vpmaddwd`; two four-plane calls without a VNNI kernel of its own). All integer arithmetic
//! modulo 2³², so every variant gives the portable one's integers: the exact sums whenever
//! they fit `i32` (the caller bounds its sums and dimensions).
//!
//! Every slice passed to these kernels has the same length, a multiple of [`LANES`] (the codes
//! are padded with zeros), so the vector loops need no tails but a half step of 32 codes where
//! a step takes 64; other lengths panic.

use crate::cpu::{Family, Isa, Variant};

/// Slice lengths are multiples of this.
pub const LANES: usize = 32;

/// `(p · c, q · c)` of two `i16` vectors (the centroids' code sums) with one row's codes.
pub type Dot2Fn = fn(&[i16], &[i16], &[i8]) -> (i32, i32);
/// `s += c` (wrapping) for a centroid's code sum `s` and one row's codes `c`.
pub type AddFn = fn(&mut [i16], &[i8]);
/// `[b0 · r0, b1 · r1, b2 · r2, b3 · r3]` of biased plane codes `b` (`u8`) with row codes `r`
/// (`i8`): one plane against four rows, or one row against four planes.
pub type SideDot4Fn = fn([&[u8]; 4], [&[i8]; 4]) -> [i32; 4];
/// `[b0 · r, …, b7 · r]`: one row against eight planes.
pub type SideRow8Fn = fn(&[i8], [&[u8]; 8]) -> [i32; 8];

/// The plane kernels of one variant.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    /// See [`Dot2Fn`].
    pub dot2: Dot2Fn,
    /// See [`AddFn`].
    pub add: AddFn,
    /// See [`SideDot4Fn`].
    pub side_dot4: SideDot4Fn,
    /// See [`SideRow8Fn`].
    pub side_row8: SideRow8Fn,
}

/// The plane kernels.
pub static KERNELS: Family<Kernels> = Family::new("planes", || {
    #[allow(unused_mut)]
    let mut all = vec![Variant {
        isa: Isa::Portable,
        kernels: Kernels {
            dot2: dot2_portable,
            add: add_portable,
            side_dot4: side_dot4_portable,
            side_row8: |r, p| side_row8_by_4(side_dot4_portable, r, p),
        },
    }];
    #[cfg(target_arch = "x86_64")]
    {
        all.push(Variant {
            isa: Isa::Avx2,
            // SAFETY (all): run only where AVX2 was detected.
            kernels: Kernels {
                dot2: |p, q, c| unsafe { x86::dot2_avx2(p, q, c) },
                add: |s, c| unsafe { x86::add_avx2(s, c) },
                side_dot4: |p, r| unsafe { x86::side_dot4_avx2(p, r) },
                side_row8: |r, p| side_row8_by_4(|p, r| unsafe { x86::side_dot4_avx2(p, r) }, r, p),
            },
        });
        let avx512 = Kernels {
            // SAFETY (all): run only where AVX-512 F and BW were detected.
            dot2: |p, q, c| unsafe { x86::dot2_avx512(p, q, c) },
            add: |s, c| unsafe { x86::add_avx512(s, c) },
            side_dot4: |p, r| unsafe { x86::side_dot4_avx512(p, r) },
            side_row8: |r, p| side_row8_by_4(|p, r| unsafe { x86::side_dot4_avx512(p, r) }, r, p),
        };
        all.push(Variant {
            isa: Isa::Avx512,
            kernels: avx512,
        });
        all.push(Variant {
            isa: Isa::Avx512Vnni,
            // SAFETY (all): run only where AVX-512 F, BW and VNNI were detected.
            kernels: Kernels {
                side_dot4: |p, r| unsafe { x86::side_dot4_avx512vnni(p, r) },
                side_row8: |r, p| unsafe { x86::side_row8_avx512vnni(r, p) },
                dot2: |p, q, c| unsafe { x86::dot2_avx512vnni(p, q, c) },
                ..avx512
            },
        });
    }
    all
});

/// The plane kernels chosen for this CPU.
#[inline]
pub fn kernels() -> Kernels {
    KERNELS.best().kernels
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
        v.iter().zip(c).fold(0i32, |s, (&v, &c)| {
            s.wrapping_add(i32::from(v) * i32::from(c))
        })
    };
    (dot(p), dot(q))
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
        planes[j].iter().zip(rows[j]).fold(0i32, |s, (&p, &r)| {
            s.wrapping_add(i32::from(p) * i32::from(r))
        })
    })
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{LANES, check_lengths, side_args};
    use crate::x86::hsum256_epi32;
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
    pub unsafe fn add_avx2(s: &mut [i16], c: &[i8]) {
        // The portable loop, vectorised by the compiler for these features.
        super::add_portable(s, c)
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
    use proptest::prelude::*;

    /// Slices of one length, a multiple of [`LANES`]: odd multiples leave the VNNI kernels a
    /// half step. Entries over their whole range, extremes over-represented.
    #[derive(Debug, Clone)]
    struct Case {
        sums: [Vec<i16>; 2],
        rows: [Vec<i8>; 4],
        planes: [Vec<u8>; 8],
    }

    fn case() -> impl Strategy<Value = Case> {
        (0usize..24).prop_flat_map(|k| {
            let n = k * LANES;
            let i16s = proptest::collection::vec(
                prop_oneof![3 => any::<i16>(), 1 => Just(i16::MIN), 1 => Just(i16::MAX)],
                n,
            );
            let i8s = proptest::collection::vec(
                prop_oneof![3 => any::<i8>(), 1 => Just(-128i8), 1 => Just(127i8)],
                n,
            );
            let u8s = proptest::collection::vec(
                prop_oneof![3 => any::<u8>(), 1 => Just(0u8), 1 => Just(255u8)],
                n,
            );
            (
                proptest::array::uniform2(i16s),
                proptest::array::uniform4(i8s),
                proptest::array::uniform8(u8s),
            )
                .prop_map(|(sums, rows, planes)| Case { sums, rows, planes })
        })
    }

    /// `Σ aᵢ bᵢ` modulo 2³², as every kernel computes it.
    fn exact<A: Copy + Into<i64>, B: Copy + Into<i64>>(a: &[A], b: &[B]) -> i32 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| x.into() * y.into())
            .sum::<i64>() as i32
    }

    proptest! {
        #[test]
        fn every_variant_agrees_with_the_portable_one(c in case()) {
            let rows = [0, 1, 2, 3].map(|j| c.rows[j].as_slice());
            let planes4 = [0, 1, 2, 3].map(|j| c.planes[j].as_slice());
            let planes8 = [0, 1, 2, 3, 4, 5, 6, 7].map(|j| c.planes[j].as_slice());
            // One row against four planes: the kernels' shared-row path.
            let one_row = [rows[2]; 4];
            let want_dot4 = [0, 1, 2, 3].map(|j| exact(planes4[j], rows[j]));
            let want_one = [0, 1, 2, 3].map(|j| exact(planes4[j], rows[2]));
            let want_row8 = planes8.map(|p| exact(p, rows[3]));
            let want_dot2 = (exact(&c.sums[0], rows[1]), exact(&c.sums[1], rows[1]));
            let want_sum: Vec<i16> =
                c.sums[0].iter().zip(rows[0]).map(|(&s, &r)| s.wrapping_add(r.into())).collect();
            for v in KERNELS.available() {
                let k = v.kernels;
                prop_assert_eq!((k.side_dot4)(planes4, rows), want_dot4, "{}", v.name());
                prop_assert_eq!((k.side_dot4)(planes4, one_row), want_one, "{}", v.name());
                prop_assert_eq!((k.side_row8)(rows[3], planes8), want_row8, "{}", v.name());
                prop_assert_eq!((k.dot2)(&c.sums[0], &c.sums[1], rows[1]), want_dot2, "{}", v.name());
                let mut sum = c.sums[0].clone();
                (k.add)(&mut sum, rows[0]);
                prop_assert_eq!(&sum, &want_sum, "{}", v.name());
            }
        }
    }

    #[test]
    #[should_panic(expected = "a multiple of 32")]
    fn lengths_off_the_lanes_panic() {
        let _ = (kernels().dot2)(&[0; 33], &[0; 33], &[0; 33]);
    }
}
