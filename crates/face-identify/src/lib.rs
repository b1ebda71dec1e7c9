//! Who is this face? A search engine answers with gallery rows; a face-recognition engineer
//! asks for people. This crate turns any engine's hits into identities and measures how often
//! that answer is wrong.
//!
//! - [`Identities`]: each gallery row's person (given by the user, or by the notebook's label
//!   convention, [`embed_store::person_of`]).
//! - [`identify`], [`identify_top`]: the best-matching person above a threshold, or the `n` best
//!   people, one entry each; [`Watchlist`] and [`search_within`]: search restricted to some
//!   people or rows. All through [`search_core::Engine`], so every engine answers the same way.
//! - [`metrics`]: rank-n identification rates, FNIR at a fixed FPIR (NIST FRVT 1:N, IJB-C) and
//!   the DET curve, from the candidate lists of mated and non-mated probes.
//!
//! # Example
//! ```
//! use face_identify::{identify, identify_top, Aggregation, Identities};
//! use search_core::{Params, VectorView};
//!
//! // Two people, two images each, in 3-d.
//! let rows = [1.0, 0.1, 0.0, 0.9, 0.2, 0.0, 0.0, 1.0, 0.1, 0.1, 0.9, 0.0f32];
//! let labels = ["Ada_Lovelace1", "Ada_Lovelace2", "Alan_Turing1", "Alan_Turing2"];
//! let ids = Identities::from_labels(&labels);
//! let index = search_engines::build("linear", VectorView::new(3, &rows)?, &Params::new(), &())?;
//!
//! let who = identify(&*index, &ids, &[1.0, 0.0, 0.0], 0.35)?.expect("enrolled");
//! assert_eq!(ids.name(who.person), "Ada_Lovelace");
//! assert!(identify(&*index, &ids, &[0.0, 0.0, 1.0], 0.35)?.is_none()); // not enrolled
//!
//! let top = identify_top(&*index, &ids, &[1.0, 0.5, 0.0], 2, Aggregation::Max)?;
//! assert_eq!(top.len(), 2); // one entry per person
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod identify;
mod identities;
pub mod metrics;

pub use identify::{Aggregation, Candidate, identify, identify_top, search_within};
pub use identities::{Identities, Watchlist};
