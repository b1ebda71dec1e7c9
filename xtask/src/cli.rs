//! Every flag of every task, declared in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Face-embedding search: project tasks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub task: Task,
}

#[derive(Debug, Subcommand)]
pub enum Task {
    /// Run the notebook's comparison: exact linear search, an HNSW graph and an Annoy forest
    /// over a synthetic face gallery with random distractors.
    ///
    /// Generates the dataset (seeded), writes it as the notebook's .npy, builds each engine
    /// and saves it under --results, loads it back (timed), asks the headline query (timed)
    /// and every held-out query, and prints one row per engine. Built indexes are kept, so a
    /// second run with the same data and parameters skips the builds (--rebuild forces them).
    Bench(BenchArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineName {
    Linear,
    Hnsw,
    Forest,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Number of N(0,1) random distractor vectors (the notebook's 100,000).
    #[arg(long, default_value_t = 100_000)]
    pub distractors: usize,
    /// Number of people in the gallery.
    #[arg(long, default_value_t = 200)]
    pub identities: usize,
    /// Images of each person in the gallery (at least 2).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(2..))]
    pub images_per_identity: u64,
    /// Dimension of the embeddings (ArcFace: 512).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    pub dim: u64,
    /// Seed of the dataset and of every randomised build.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Engines to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "linear,hnsw,forest")]
    pub engines: Vec<EngineName>,
    /// Neighbours asked of the approximate engines (the notebook's 4).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    pub k: u64,
    /// Cosine threshold of threshold search (the notebook's 0.35).
    #[arg(long, default_value_t = 0.35, allow_negative_numbers = true)]
    pub tau: f32,

    /// HNSW: links per node (M).
    #[arg(long, default_value_t = 48)]
    pub m: usize,
    /// HNSW: candidate list size while building.
    #[arg(long, default_value_t = 200)]
    pub ef_construction: usize,
    /// HNSW: candidate list size while searching.
    #[arg(long, default_value_t = 100)]
    pub ef: usize,
    /// Forest: number of trees.
    #[arg(long, default_value_t = 20)]
    pub trees: usize,
    /// Forest: nodes inspected per query (default: annoy's, k x trees).
    #[arg(long)]
    pub search_k: Option<usize>,

    /// Folder for the dataset and index files (kept between runs).
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Build every index again even when a cached one matches.
    #[arg(long)]
    pub rebuild: bool,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Do not draw progress bars.
    #[arg(long)]
    pub quiet: bool,
}
