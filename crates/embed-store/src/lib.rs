//! The gallery of face embeddings and the vocabulary every search engine shares.
//!
//! - [`Gallery`]: vectors ([`Vectors`], row-major `f32`) with one label per row.
//! - [`npy`]: the notebook's `.npy` file (float64 vectors then unicode labels, back to back).
//! - [`synth`]: a seeded synthetic face dataset: identities with several images each, random
//!   distractors, and held-out queries.
//! - [`SearchIndex`]: the one trait that the linear, HNSW and forest engines implement, with
//!   [`Hit`] results, [`Error`] and the input checks ([`check_vector`], [`check_k`], [`check_tau`]).
//! - [`container`], [`write_atomically`], [`kernels`]: the on-disk layout, atomic writes and
//!   SIMD dot products the engines build on.
//!
//! # Example
//! ```
//! use embed_store::synth::{generate, SynthSpec};
//! let spec = SynthSpec { identities: 3, images_per_identity: 4, distractors: 50, dim: 16, seed: 7 };
//! let data = generate(&spec, &());
//! assert_eq!(data.gallery.len(), 3 * 4 - 1 + 50); // the headline query left the gallery
//! assert_eq!(data.headline.truth.len(), 3);        // its person's other images
//! assert_eq!(data.queries.len(), 3);               // one held-out image per person
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod container;
mod engine;
mod error;
mod fileio;
mod gallery;
pub mod kernels;
pub mod npy;
mod progress;
pub mod synth;
mod vectors;
mod warm;

pub use engine::{Hit, Knob, SearchIndex, check_gallery_len, check_k, check_tau};
pub use error::{Error, Result};
pub use fileio::{map_file, write_atomically};
pub use gallery::Gallery;
pub use progress::Progress;
pub use vectors::{VectorView, Vectors, check_vector, normalized, normalized_rows};
pub use warm::{Access, Warmup, read_ahead, warm};
