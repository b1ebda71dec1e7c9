//! Exact cosine search: the oracle every approximate engine is judged by.
//!
//! [`LinearIndex`] keeps the gallery's vectors normalised to unit length, so cosine similarity
//! is one dot product per row, and answers exactly what a plain f32 scan answers, faster:
//!
//! - single queries ([`SearchIndex::search`], [`SearchIndex::search_threshold`]) scan int8
//!   codes of the rows (a quarter of the bytes) with exact integer SIMD dot products, and
//!   re-check in f32 every row whose compact score lies within a proven error bound of the
//!   current k-th best score (or of τ); see [`ScanMode`] and the bound in the `codes` module;
//!   large galleries are split over all cores (rayon);
//! - batches ([`LinearIndex::search_batch`], [`LinearIndex::search_batch_threshold`]) use
//!   faer's matrix product of the queries by cache-sized gallery blocks, a bounded selection
//!   per query, and the same exact re-check;
//! - [`SearchIndex::load`] maps the saved file (no copy), and [`LinearIndex::open_cached`] opens
//!   the notebook's float64 `.npy` through a native file converted once.
//!
//! Hits come in [`Hit::ranking`] order: score descending, then row ascending.
//!
//! # Example
//! ```
//! use search_core::{SearchIndex, Vectors};
//! use search_linear::LinearIndex;
//! let gallery = Vectors::new(2, vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8])?;
//! let index = LinearIndex::build(gallery.view(), &Default::default(), &())?;
//! let hits = index.search(&[0.0, 2.0], 2)?;
//! assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), [1, 2]);
//! let above = index.search_threshold(&[1.0, 0.0], 0.35)?;
//! assert_eq!(above.len(), 2); // rows 0 (cos 1.0) and 2 (cos 0.6)
//! let queries = Vectors::new(2, vec![0.0, 2.0, 1.0, 0.0])?;
//! let batch = index.search_batch(queries.view(), 2)?;
//! assert_eq!(batch[0], hits);
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`SearchIndex::search`]: search_core::SearchIndex::search
//! [`SearchIndex::search_threshold`]: search_core::SearchIndex::search_threshold
//! [`SearchIndex::load`]: search_core::SearchIndex::load
//! [`Hit::ranking`]: search_core::Hit::ranking
#![deny(missing_docs)]

mod codes;
mod index;
mod kind;
mod select;

pub use codes::compact_kernel_name;
pub use index::{BATCH_BLOCK_ROWS, LinearIndex, LinearParams, ScanMode, ScanStats};
pub use kind::KIND;
