//! Exact cosine search: the oracle every approximate engine is judged by.
//!
//! [`LinearIndex`] keeps the gallery's vectors normalised to unit length, so cosine similarity
//! is one dot product per row. A query scans every row (in parallel blocks on large galleries)
//! and keeps the best `k` with a bounded selection, or every row above a threshold.
//!
//! # Example
//! ```
//! use embed_store::{SearchIndex, Vectors};
//! use search_linear::LinearIndex;
//! let gallery = Vectors::new(2, vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8])?;
//! let index = LinearIndex::build(gallery.view(), &Default::default(), &())?;
//! let hits = index.search(&[0.0, 2.0], 2)?;
//! assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), [1, 2]);
//! let above = index.search_threshold(&[1.0, 0.0], 0.35)?;
//! assert_eq!(above.len(), 2); // rows 0 (cos 1.0) and 2 (cos 0.6)
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod index;

pub use index::{LinearIndex, LinearParams};
