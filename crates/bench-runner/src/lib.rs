//! Runs search engines over a gallery and measures them, the way the notebook compares them.
//!
//! A [`Workload`] holds the gallery, the held-out queries, the headline query and the exact
//! answers (computed once with the linear engine). [`run_engine`] takes any engine of the
//! registry (an [`EngineKind`](search_core::EngineKind), through the object-safe
//! [`Engine`](search_core::Engine)): build (or reuse a build cached on disk), save, open it
//! cold and warm (timed), query (timed), and score its answers against the exact ones. The
//! result is an [`EngineReport`]; a [`Report`] gathers them and prints the notebook's table or
//! JSON. Progress goes to whatever [`RunOptions::progress`] makes: this crate draws nothing.
//!
//! # Example
//! ```
//! use bench_runner::{run_engine, EngineRun, HeadlineSearch, RunExtras, RunOptions, Workload};
//! use embed_store::synth::{generate, SynthSpec};
//!
//! let spec = SynthSpec { identities: 5, images_per_identity: 3, distractors: 200, dim: 256, seed: 1 };
//! let workload = Workload::from_dataset(generate(&spec, &()), "doc-example", 4, 0.35)?;
//! let dir = tempfile::tempdir()?;
//! let options = RunOptions { results_dir: dir.path().into(), ..Default::default() };
//! let run = EngineRun {
//!     kind: search_engines::kind("linear")?,
//!     params: Default::default(),
//!     headline: HeadlineSearch::Threshold,
//!     knob: None,
//! };
//! let report = run_engine(&workload, &run, &options, &RunExtras::default())?;
//! assert_eq!(report.recall_at_k, 1.0);
//! assert_eq!(report.labels, workload.headline.truth);
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod cache;
mod distributed;
mod identification;
mod report;
pub mod rss;
mod run;
mod score;
mod sweep;
mod workload;

pub use distributed::{DistributedPoint, distributed_table};
pub use identification::{
    IdentificationPoint, IdentificationReport, IdentificationSpec, OperatingPoint, identification,
};
pub use report::{BenchFile, ColdStart, EngineReport, Report};
pub use run::{
    EngineRun, ExistingIndex, HeadlineSearch, ProgressFactory, RunExtras, RunOptions, run_engine,
};
pub use sweep::{SweepPoint, SweepSpec, sweep};
pub use workload::Workload;
