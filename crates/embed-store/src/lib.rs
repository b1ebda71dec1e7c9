//! The gallery of face embeddings, at the edge of the engines: what a user's files and the
//! benchmark's datasets are, not what a search engine needs to know.
//!
//! - [`Gallery`]: vectors ([`Vectors`], row-major `f32`) with one label per row.
//! - [`npy`]: the notebook's `.npy` file (float64 vectors then unicode labels, back to back).
//! - [`synth`]: a seeded synthetic face dataset: identities with several images each, random
//!   distractors, and held-out queries (the notebook's workload).
//! - [`faces`]: a gallery where every distractor is another person, with ArcFace-like score
//!   statistics and probes of people who are not enrolled (the `faces` workload).
//!
//! The types its API uses ([`Vectors`], [`Error`], [`Progress`], ...) come from `search-core`
//! and are re-exported here, so that a user of galleries needs one import.
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

pub mod faces;
mod gallery;
pub mod npy;
pub mod synth;

pub use gallery::{Gallery, person_of};
pub use search_core::{
    Error, Hit, Progress, Result, SearchIndex, VectorView, Vectors, check_vector, normalized,
    normalized_rows,
};
