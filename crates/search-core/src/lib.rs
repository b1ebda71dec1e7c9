//! The vocabulary every search engine of this workspace shares, and nothing else: an engine
//! crate depends on this one (and on `search-kernels`), never on gallery files or datasets.
//!
//! - [`Vectors`] / [`VectorView`]: row-major `f32` matrices, with the checks that make cosine
//!   similarity defined ([`check_vector`]).
//! - [`SearchIndex`]: the trait every engine implements (build, save, load, search, threshold
//!   search), its [`Hit`]s and their [`Hit::ranking`], [`Error`], and the input checks
//!   ([`check_k`], [`check_tau`], [`check_gallery_len`]).
//! - [`Engine`], [`EngineKind`], [`Params`]: the object-safe facade through which the bench,
//!   the command line and the Python bindings see every engine, from one registry (the
//!   `search-engines` crate).
//! - [`container`], [`write_atomically`], [`warm`]: our index file layout (checked, sectioned,
//!   memory-mapped), writes that never destroy the previous file, and how a mapped file's pages
//!   are brought in ([`Warmup`]).
//! - [`Progress`]: how long work reports progress without knowing who shows it.
//!
//! # Example
//! ```
//! use search_core::{Hit, Vectors};
//! let v = Vectors::new(2, vec![1.0, 0.0, 0.0, 1.0])?;
//! assert_eq!(v.row(1), &[0.0, 1.0]);
//! let mut hits = vec![Hit { id: 1, score: 0.2 }, Hit { id: 0, score: 0.9 }];
//! hits.sort_by(Hit::ranking);
//! assert_eq!(hits[0].id, 0);
//! # Ok::<(), search_core::Error>(())
//! ```
#![deny(missing_docs)]

pub mod container;
mod engine;
mod error;
mod fileio;
mod progress;
mod registry;
mod vectors;
mod warm;

pub use engine::{Hit, Knob, SearchIndex, check_gallery_len, check_k, check_tau};
pub use error::{Error, Result};
pub use fileio::{map_file, write_atomically};
pub use progress::Progress;
pub use registry::{Engine, EngineKind, ParamSpec, Params};
pub use vectors::{VectorView, Vectors, check_vector, normalized, normalized_rows};
pub use warm::{Access, Warmup, read_ahead, warm};
