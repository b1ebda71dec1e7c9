//! An Annoy forest (random-projection trees) for cosine search, built and served in Rust and
//! stored in Annoy's own file format.
//!
//! [`ForestIndex`] implements [`search_core::SearchIndex`]. It builds trees with Annoy's
//! algorithm (two-means split planes on sampled points, buckets of up to `dim + 2` items), in
//! parallel and seeded; writes the file byte for byte as Annoy lays it out, so Python's
//! `AnnoyIndex(dim, "angular").load(path)` opens it; and serves queries itself from a memory
//! map, validated on opening, with the same candidates as Annoy for the same `search_k`.
//! The speed/accuracy knob is `search_k` ([`SearchIndex::knob`]); unset, it is Annoy's
//! default `k × n_trees` but at least 5% of the items ([`ForestIndex::default_search_k`]).
//! [`ForestIndex::nns_by_vector`] is Annoy's `get_nns_by_vector`, defaults included.
//!
//! # Example
//! ```
//! use search_core::{SearchIndex, Vectors};
//! use search_forest::{ForestIndex, ForestParams};
//!
//! let rows: Vec<f32> = (0..200 * 8).map(|i| ((i * 37 % 101) as f32) - 50.0).collect();
//! let gallery = Vectors::new(8, rows)?;
//! let params = ForestParams { n_trees: 4, ..Default::default() };
//! let mut index = ForestIndex::build(gallery.view(), &params, &())?;
//! index.set_knob(200 * 4)?; // search_k >= n * n_trees: the answer is exact
//! let hits = index.search(gallery.row(17), 3)?;
//! assert_eq!(hits[0].id, 17);
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("forest.ann");
//! index.save(&path)?;
//! let loaded = ForestIndex::load(&path)?; // the dimension is read from the file
//! assert_eq!((loaded.dim(), loaded.len(), loaded.n_trees()), (8, 200, 4));
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod build;
mod codes;
mod index;
mod kind;
mod layout;
mod search;

pub use build::Split;
pub use index::{DEFAULT_FRACTION, DEFAULT_LEAF_SIZE, ForestIndex, ForestParams, THRESHOLD_K};
pub use layout::Metric;

pub use kind::KIND;
pub use search_core::SearchIndex;
