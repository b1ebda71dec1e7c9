//! An HNSW graph (Malkov & Yashunin 2016) for cosine search over face embeddings, with its own
//! core: hnswlib's algorithm (heuristic neighbour selection, parallel insertion) on a layout
//! built for speed and instant loading.
//!
//! - [`HnswIndex`] implements [`search_core::SearchIndex`]: build on every core (seeded),
//!   save, load by memory-mapping the file (checked header, no copy), k-NN and threshold search,
//!   the knob `"ef"`, and [`HnswIndex::add`] / [`HnswIndex::delete`] after the build.
//! - [`HnswParams`]: M, ef_construction, ef, seed, threads; `Default` is the notebook's
//!   (M = 48, ef_construction = 200, ef = 100).
//! - [`Space`]: cosine for our builds; inner product and l2 for files read from hnswlib.
//!
//! See `README.md` next to this crate for the file layout and the design.
//!
//! # Example
//! ```
//! use search_core::{SearchIndex, Vectors};
//! use search_hnsw::{HnswIndex, HnswParams};
//! let rows: Vec<f32> = (0..200).flat_map(|i| [(i as f32).cos(), (i as f32).sin(), 0.5]).collect();
//! let gallery = Vectors::new(3, rows)?;
//! let params = HnswParams { m: 8, ef_construction: 50, ..Default::default() };
//! let index = HnswIndex::build(gallery.view(), &params, &())?;
//! let hits = index.search(gallery.row(17), 1)?;
//! assert_eq!(hits[0].id, 17);
//! let dir = tempfile::tempdir()?;
//! index.save(&dir.path().join("g.hnsw"))?;
//! let loaded = HnswIndex::load(&dir.path().join("g.hnsw"))?;
//! assert_eq!(loaded.search(gallery.row(17), 3)?, index.search(gallery.row(17), 3)?);
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod build;
mod hnswlib;
mod index;
mod kind;
mod quant;
mod search;
mod signs;

pub use index::{HnswIndex, HnswParams, Space};
pub use kind::KIND;
