//! Popcount sums of one-bit codes against a four-plane query (RaBitQ's estimator): for a code
//! `c` of `w` words and planes `p₀…p₃` of `w` words each, `(Σⱼ 2ʲ popcount(c ∧ pⱼ),
//! popcount(c))`. AVX-512 VPOPCNTDQ (eight words a step, masked tail), POPCNT, portable.

use crate::cpu::{Family, Isa, Variant};

/// The number of query planes the kernels sum.
pub const PLANES: usize = 4;

/// `(Σⱼ 2ʲ popcount(code ∧ planeⱼ), popcount(code))` over a code's words; `planes` holds
/// [`PLANES`] planes of `code.len()` words, one after the other.
pub type SumFn = fn(code: &[u64], planes: &[u64]) -> (u32, u32);

/// The popcount-sum kernels.
pub static SUMS: Family<SumFn> = Family::new("popcount sums", || {
    #[allow(unused_mut)]
    let mut all: Vec<Variant<SumFn>> = vec![Variant {
        isa: Isa::Portable,
        kernels: sum_portable,
    }];
    #[cfg(target_arch = "x86_64")]
    all.extend::<[Variant<SumFn>; 2]>([
        Variant {
            isa: Isa::Popcnt,
            // SAFETY: run only where POPCNT was detected.
            kernels: |c, p| unsafe { x86::sum_popcnt(c, p) },
        },
        Variant {
            isa: Isa::Avx512Popcnt,
            // SAFETY: run only where AVX-512 F and VPOPCNTDQ were detected.
            kernels: |c, p| unsafe { x86::sum_avx512(c, p) },
        },
    ]);
    all
});

/// The popcount-sum kernel chosen for this CPU.
#[inline]
pub fn sum_kernel() -> SumFn {
    SUMS.best().kernels
}

fn check(code: &[u64], planes: &[u64]) {
    assert_eq!(
        planes.len(),
        PLANES * code.len(),
        "a code of {} words needs {PLANES} planes of as many",
        code.len()
    );
}

#[inline(always)]
fn sum_portable(code: &[u64], planes: &[u64]) -> (u32, u32) {
    check(code, planes);
    let w = code.len();
    let mut weighted = 0;
    let mut ones = 0;
    for (k, &c) in code.iter().enumerate() {
        ones += c.count_ones();
        for j in 0..PLANES {
            weighted += (c & planes[j * w + k]).count_ones() << j;
        }
    }
    (weighted, ones)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{PLANES, check};
    use std::arch::x86_64::*;

    // The AVX-512 kernel sums exactly four planes.
    const _: () = assert!(PLANES == 4);

    /// The portable kernel compiled with the POPCNT instruction.
    ///
    /// # Safety
    /// The CPU must support POPCNT.
    #[target_feature(enable = "popcnt")]
    pub unsafe fn sum_popcnt(code: &[u64], planes: &[u64]) -> (u32, u32) {
        super::sum_portable(code, planes)
    }

    /// Eight words at a time: AND with each plane, `vpopcntq`, weighted sum.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F and VPOPCNTDQ.
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    pub unsafe fn sum_avx512(code: &[u64], planes: &[u64]) -> (u32, u32) {
        check(code, planes);
        let w = code.len();
        let mut acc = _mm512_setzero_si512();
        let mut ones = _mm512_setzero_si512();
        let mut k = 0;
        while k < w {
            let mask: __mmask8 = if w - k >= 8 {
                0xff
            } else {
                (1u8 << (w - k)) - 1
            };
            // SAFETY: the masked loads read only words k..min(k + 8, w) of each slice, and
            // `planes` holds PLANES planes of w words (checked above).
            let load = |s: &[u64], at: usize| unsafe {
                _mm512_maskz_loadu_epi64(mask, s.as_ptr().add(at).cast())
            };
            let c = load(code, k);
            let pop = |j: usize| _mm512_popcnt_epi64(_mm512_and_si512(c, load(planes, j * w + k)));
            ones = _mm512_add_epi64(ones, _mm512_popcnt_epi64(c));
            let p01 = _mm512_add_epi64(pop(0), _mm512_slli_epi64::<1>(pop(1)));
            let p23 = _mm512_add_epi64(pop(2), _mm512_slli_epi64::<1>(pop(3)));
            acc = _mm512_add_epi64(acc, _mm512_add_epi64(p01, _mm512_slli_epi64::<2>(p23)));
            k += 8;
        }
        (
            _mm512_reduce_add_epi64(acc) as u32,
            _mm512_reduce_add_epi64(ones) as u32,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn word() -> impl Strategy<Value = u64> {
        prop_oneof![3 => any::<u64>(), 1 => Just(0u64), 1 => Just(u64::MAX)]
    }

    proptest! {
        #[test]
        fn every_variant_agrees_with_the_portable_one(
            (code, planes) in (0usize..40).prop_flat_map(|w| (
                proptest::collection::vec(word(), w),
                proptest::collection::vec(word(), PLANES * w),
            ))
        ) {
            let w = code.len();
            let ones: u32 = code.iter().map(|c| c.count_ones()).sum();
            let weighted: u32 = (0..PLANES)
                .map(|j| {
                    let bits: u32 = (0..w).map(|k| (code[k] & planes[j * w + k]).count_ones()).sum();
                    bits << j
                })
                .sum();
            for v in SUMS.available() {
                prop_assert_eq!((v.kernels)(&code, &planes), (weighted, ones), "{}, {} words", v.name(), w);
            }
        }
    }

    #[test]
    #[should_panic(expected = "planes")]
    fn planes_of_the_wrong_length_panic() {
        let _ = sum_kernel()(&[1, 2], &[0; 7]);
    }
}
