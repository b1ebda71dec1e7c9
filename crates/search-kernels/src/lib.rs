//! The SIMD kernels of every engine, in one place. Each kernel family has a portable variant
//! and variants compiled with `#[target_feature]` for x86-64 (AVX2, AVX-512, VNNI, VPOPCNTDQ)
//! and aarch64 (NEON); [`cpu`] detects the CPU's features once and picks each family's best
//! variant, so that a plain `cargo build --release` is fast on any machine without
//! `-C target-cpu=native`. Every family lists the variants this CPU runs
//! ([`Family::available`]), and its tests check each against the portable one.
//!
//! The families:
//! - [`f32`](mod@f32): dot products and squared distances (AVX-512, AVX2+FMA, NEON).
//! - [`int8`]: exact integer dot products of int8 codes, `i8 · i16` rows against a query
//!   ([`int8::BLOCK_DOT`]: AVX-512 VNNI, AVX-512BW, AVX2, NEON) and `i8 · i8` pairs
//!   ([`int8::DOT_I8`]: AVX-512 VNNI, AVX2, NEON).
//! - [`planes`]: the forest's split-plane kernels over `i8` rows, `u8` planes and `i16` sums
//!   (AVX-512 VNNI, AVX-512BW, AVX2).
//! - [`bits`]: popcount sums of one-bit codes against four query planes (AVX-512 VPOPCNTDQ,
//!   POPCNT).
//! - [`rows`]: the one row quantizer (`max|x|/127` → `i8`, rounded half away from zero) and
//!   the one normalisation (norm in f64), compiled for AVX-512 and AVX2.
//!
//! Besides: [`Aligned`], the cache-line-aligned buffer the engines keep rows and codes in (on
//! 2 MB pages where the kernel allows, [`advise_huge_pages`]), and [`prefetch`].
//!
//! ```
//! use search_kernels::{int8, rows};
//! // Code two rows, and score them with the integer kernel this CPU runs best.
//! let (a, b) = ([0.6f32, -0.8, 0.0], [0.8f32, -0.6, 0.0]);
//! let (mut ca, mut cb) = ([0i8; 3], [0i8; 3]);
//! let (sa, sb) = (rows::quantize(&a, &mut ca), rows::quantize(&b, &mut cb));
//! let approx = sa * sb * (int8::DOT_I8.best().kernels)(&ca, &cb) as f32;
//! assert!((approx - search_kernels::dot(&a, &b)).abs() < 1e-2);
//! // Every variant this CPU runs gives the portable variant's integers.
//! for v in int8::DOT_I8.available() {
//!     assert_eq!((v.kernels)(&ca, &cb), (int8::DOT_I8.portable().kernels)(&ca, &cb));
//! }
//! println!("kernels for {}", search_kernels::describe());
//! ```
#![deny(missing_docs)]

mod aligned;
pub mod bits;
pub mod cpu;
pub mod f32;
pub mod int8;
#[cfg(all(test, not(target_arch = "aarch64")))]
mod neon_emul;
mod pages;
pub mod planes;
pub mod rows;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use aligned::Aligned;
pub use cpu::{Family, Isa, Variant, describe};
pub use f32::{DotFn, dot, dot_kernel};
pub use pages::{advise_huge_pages, resize_on_large_pages};
pub use rows::{normalise, normalise_into, quantize};

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
