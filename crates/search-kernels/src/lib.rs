//! The SIMD kernels of every engine, in one place, each chosen once at run time for the CPU
//! it runs on (`is_x86_feature_detected!`), so that a plain `cargo build --release` is fast on
//! any x86-64 without `-C target-cpu=native`. Every kernel family lists the variants this CPU
//! can run (`available()`), and the tests check each against the portable one.
//!
//! - [`f32`]: dot products and squared distances (AVX-512F, AVX2+FMA, portable), normalising,
//!   prefetching.
#![deny(missing_docs)]

pub mod f32;

pub use f32::{DotFn, KernelSet, dot, dot_kernel, dot_kernel_name, kernel_set, prefetch};
