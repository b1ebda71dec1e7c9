//! Runs search engines over a gallery and measures them, the way the notebook compares them.
//!
//! A [`Workload`] holds the gallery, the held-out queries, the headline query and the exact
//! answers (computed once with the linear engine). [`run_engine`] takes any engine through the
//! shared [`SearchIndex`] trait: build (or reuse a build cached on disk), save, load back
//! (timed), query (timed), and score its answers against the exact ones. The result is an
//! [`EngineReport`]; a [`Report`] gathers them and prints the notebook's table or JSON.
//!
//! # Example
//! ```
//! use bench_runner::{run_engine, EngineRun, HeadlineSearch, RunOptions, Workload};
//! use embed_store::synth::{generate, SynthSpec};
//! use search_linear::LinearIndex;
//!
//! let spec = SynthSpec { identities: 5, images_per_identity: 3, distractors: 200, dim: 256, seed: 1 };
//! let workload = Workload::from_dataset(generate(&spec, &()), "doc-example", 4, 0.35)?;
//! let dir = tempfile::tempdir()?;
//! let options = RunOptions { results_dir: dir.path().into(), rebuild: false, progress: false, ..Default::default() };
//! let run = EngineRun { params: Default::default(), headline: HeadlineSearch::Threshold, knob: None };
//! let report = run_engine::<LinearIndex>(&workload, &run, &options)?;
//! assert_eq!(report.recall_at_k, 1.0);
//! assert_eq!(report.labels, workload.headline.truth);
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod cache;
mod report;
pub mod rss;
mod run;
mod sweep;
mod workload;

pub use report::{ColdStart, EngineReport, Report};
pub use run::{
    EngineRun, ExistingIndex, HeadlineSearch, RunExtras, RunOptions, run_engine, run_engine_with,
};
pub use sweep::{SweepPoint, SweepSpec, sweep};
pub use workload::Workload;

pub use embed_store::SearchIndex;
