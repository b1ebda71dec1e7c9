//! Helpers shared by the x86-64 variants.

use std::arch::x86_64::*;

/// The wrapping sum of the eight `i32` lanes of `a`.
#[target_feature(enable = "avx2")]
pub(crate) fn hsum256_epi32(a: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256::<1>(a));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}
