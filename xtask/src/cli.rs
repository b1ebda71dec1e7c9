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

/// Which synthetic data `cargo xtask bench` generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// The notebook's: 200 people × 5 images among 100,000 N(0,1) random vectors.
    Notebook,
    /// Faces: every distractor another person, with probes of people not enrolled.
    Faces,
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
    Bench(Box<BenchArgs>),
    /// Run the Python peers (hnswlib, annoy, faiss, usearch, SymphonyQG, VSAG, NGT) and the
    /// Rust crates hnswlib-rs and annoy-rs on the gallery and queries the bench wrote, each
    /// with its knob swept, and merge them into the bench's JSON.
    ///
    /// Reads <results>/search_data.npy and <results>/queries.npy (written by `cargo xtask
    /// bench`) and the bench's JSON (--json), makes a Python virtualenv with
    /// `scripts/pyenv.sh --peers` (target/pyenv), runs each peer in its own Python process
    /// (scripts/peers.py: build or reuse a cached index file, load it back, sweep its knob on
    /// one thread and on all threads, peak memory), writes the results under "peers" in the
    /// same JSON, and prints the ratios ours/theirs. The Rust peers run in their own process
    /// too (`cargo +nightly run` of peers-rs/, outside the workspace: hnswlib-rs needs nightly),
    /// measured by bench-runner like our engines. Stops with a clear message when python3, pip
    /// or the nightly toolchain is missing. Never needed by the crates or by `cargo test`.
    Peers(PeersArgs),
    /// Measure our engines against peers several times in one command, alternating which goes
    /// first, and print each ratio ours/theirs per run with its median and range.
    ///
    /// Takes every flag of `bench` (the data, the engines, the sweep) and runs `bench --sweep`
    /// and `peers` in turn: odd runs ours first, even runs the peers first, each run into its
    /// own JSON (`<json>.run1.json`, ...), the indexes built once (the first run) and reused.
    /// On a machine whose speed drifts, one run says little; the median and range over
    /// alternating runs say whether a lead holds. Engines without one of the peers to face are
    /// left out.
    Verdict(Box<VerdictArgs>),
    /// Time one of our engines' build against a peer's, alternating rounds on the bench's
    /// gallery (written by `cargo xtask bench` to --results), and print the medians and their
    /// ratio. For annoy, its build() call alone is timed (its add_item calls are not).
    BuildTime(BuildTimeArgs),
    /// List the engines of the registry: name, what it is, its build parameters with their
    /// defaults, and its knob (what `--param ENGINE.NAME=VALUE` and `--knob ENGINE=VALUE` take).
    Engines,
    /// Serve the bench's gallery sharded over a two-node Ray cluster started on this machine
    /// (1, 2, 4 shards x 1, 2 replicas) and measure it beside the same engine unsharded: q/s
    /// one query at a time and in batches, p50/p99 latency, recall@k. Runs
    /// scripts/distributed_bench.py with the face_search Python package (built and installed
    /// into target/pyenv first) and merges the figures into the bench's JSON.
    Distributed(DistributedArgs),
    /// Write report.html again from a bench JSON (with its peers), without measuring anything.
    Report(ReportArgs),
    /// Render a report.html (written by --report) in headless Chromium to a PNG, to check it.
    Screenshot(ScreenshotArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PeerName {
    Hnswlib,
    Annoy,
    FaissFlat,
    FaissHnsw,
    FaissHnswSq8,
    Usearch,
    UsearchF16,
    Symqg,
    Vsag,
    NgtOnng,
    /// The Rust crate hnswlib-rs 0.10.0 (peers-rs/, nightly).
    HnswlibRs,
    /// The Rust crate annoy-rs 0.1.0, serving our forest's Annoy file (peers-rs/, nightly).
    AnnoyRs,
}

impl PeerName {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerName::Hnswlib => "hnswlib",
            PeerName::Annoy => "annoy",
            PeerName::FaissFlat => "faiss-flat",
            PeerName::FaissHnsw => "faiss-hnsw",
            PeerName::FaissHnswSq8 => "faiss-hnsw-sq8",
            PeerName::Usearch => "usearch",
            PeerName::UsearchF16 => "usearch-f16",
            PeerName::Symqg => "symqg",
            PeerName::Vsag => "vsag",
            PeerName::NgtOnng => "ngt-onng",
            PeerName::HnswlibRs => "hnswlib-rs",
            PeerName::AnnoyRs => "annoy-rs",
        }
    }

    /// True for the Rust peers, run from peers-rs/ with nightly cargo rather than Python.
    pub fn is_rust(self) -> bool {
        matches!(self, PeerName::HnswlibRs | PeerName::AnnoyRs)
    }
}

#[derive(Debug, Args)]
pub struct PeersArgs {
    /// Folder the bench wrote its dataset to (search_data.npy, queries.npy); peer index files
    /// are cached there too.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// The bench's JSON (from `cargo xtask bench --json`); the peers are merged into it.
    #[arg(long, default_value = "results/bench.json")]
    pub json: PathBuf,
    /// Peers to run, in order. `ngt-onng` (NGT's ONNG graph) is not in the default list: its
    /// build took 268 s for 5,050 vectors on 2 cores; NGT's quantised graph (QG) cannot be
    /// built from PyPI (it needs NGT's `qbg` command-line tool); glassppy has no release that
    /// installs from PyPI.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "faiss-flat,hnswlib,faiss-hnsw,faiss-hnsw-sq8,usearch,usearch-f16,symqg,vsag,annoy,hnswlib-rs,annoy-rs"
    )]
    pub peers: Vec<PeerName>,
    /// Build every peer index again even when a cached one matches.
    #[arg(long)]
    pub rebuild: bool,
    /// Seconds each sweep point is timed for, at least (as the bench's --sweep-min-seconds).
    #[arg(long, default_value_t = 0.5)]
    pub sweep_min_seconds: f64,
    /// Visits of the whole knob list (as the bench's --sweep-rounds).
    #[arg(long, default_value_t = 3)]
    pub sweep_rounds: usize,
    /// Knob values added around each crossing of recall 0.90 and 0.99 (as the bench's
    /// --sweep-refine).
    #[arg(long, default_value_t = 3)]
    pub sweep_refine: usize,
    /// Also write report.html (with the peers) to this folder.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DistributedArgs {
    /// Folder the bench wrote its dataset to (search_data.npy, queries.npy); shard files are
    /// cached under its distributed/ folder.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// The bench's JSON (from `cargo xtask bench --json`); the figures are merged into it.
    #[arg(long, default_value = "results/bench.json")]
    pub json: PathBuf,
    /// Engines to shard.
    #[arg(long, value_delimiter = ',', default_value = "hnsw,linear")]
    pub engines: Vec<String>,
    /// Shard counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub shards: Vec<usize>,
    /// Replica counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub replicas: Vec<usize>,
    /// Also write report.html (with the sharded figures) to this folder.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The bench's JSON (from `cargo xtask bench --json`, maybe with peers).
    #[arg(long, default_value = "results/bench.json")]
    pub json: PathBuf,
    /// Folder to write report.html to.
    #[arg(long, default_value = "results/report")]
    pub report: PathBuf,
}

#[derive(Debug, Args)]
pub struct ScreenshotArgs {
    /// The page to render.
    #[arg(long, default_value = "results/report/report.html")]
    pub html: PathBuf,
    /// Where to write the PNG (default: next to the page, report.png).
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Browser window size, WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x4000")]
    pub window: String,
}

#[derive(Debug, Args)]
pub struct VerdictArgs {
    #[command(flatten)]
    pub bench: BenchArgs,
    /// Peers to face, in order (names as in `peers --peers`).
    #[arg(
        long = "peers",
        value_delimiter = ',',
        default_value = "faiss-hnsw,symqg"
    )]
    pub peers: Vec<PeerName>,
    /// Runs: odd ones measure ours first, even ones the peers first.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub runs: u64,
}

#[derive(Debug, Args)]
pub struct BuildTimeArgs {
    /// Our engine (a registry name).
    #[arg(long, default_value = "forest")]
    pub engine: String,
    /// The peer (a name `cargo xtask peers` knows, run through scripts/peers.py).
    #[arg(long, default_value = "annoy")]
    pub peer: String,
    /// Build parameters of our engine, NAME=VALUE (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Rounds (each builds ours, then the peer's).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub rounds: u64,
    /// Folder the bench wrote its dataset to.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
}

#[derive(Clone, Debug, Args)]
pub struct BenchArgs {
    /// The synthetic data: `notebook` (a few people among N(0,1) random distractors, as the
    /// notebook) or `faces` (every distractor another person, ArcFace-like scores, probes of
    /// people not enrolled; adds identification error rates: see --people).
    #[arg(long, value_enum, default_value_t = Workload::Notebook)]
    pub workload: Workload,
    /// faces: enrolled people (20,000 × 5 images = 100k faces; 200,000 for a 1M gallery).
    #[arg(long, default_value_t = 20_000)]
    pub people: usize,
    /// faces: gallery images per person.
    #[arg(long, default_value_t = 5)]
    pub images_per_person: usize,
    /// faces: probes of enrolled people (mated).
    #[arg(long, default_value_t = 1_000)]
    pub mated: usize,
    /// faces: probes of people who are not enrolled (non-mated).
    #[arg(long, default_value_t = 1_000)]
    pub non_mated: usize,
    /// faces: weight of the direction all faces share (α², the cone).
    #[arg(long, default_value_t = 0.1)]
    pub cone: f32,
    /// faces: fraction of people who look like someone else.
    #[arg(long, default_value_t = 0.05)]
    pub lookalikes: f32,
    /// faces: fraction of probes that are poor photos (lower genuine similarity).
    #[arg(long, default_value_t = 0.1)]
    pub hard_probes: f32,
    /// Measure identification error rates (rank-1/5, FNIR at FPIR, DET) on the queries: on by
    /// default with --workload faces; with your own data, the queries' labels (or
    /// --query-labels) say who each is, and a query whose person is not in the gallery is a
    /// non-mated probe.
    #[arg(long)]
    pub identify: bool,
    /// Who each gallery row is, a .npy of n strings (one identity per row), instead of the
    /// person in each label; implies --identify.
    #[arg(long, requires = "gallery")]
    pub gallery_identities: Option<PathBuf>,
    /// Who each query is, a .npy of q strings; a query whose identity is not in the gallery
    /// is a non-mated probe. Needed with --gallery-identities.
    #[arg(long, requires = "gallery_identities")]
    pub query_identities: Option<PathBuf>,

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
    /// Seed of the randomised builds (HNSW levels and insertion order, forest splits) when it
    /// should differ from --seed: the same data, another build, to see the spread of recall.
    #[arg(long)]
    pub build_seed: Option<u64>,

    /// Engines to run, in order: names from the engine registry (`search-engines`).
    #[arg(long, value_delimiter = ',', default_value = "linear,hnsw,forest")]
    pub engines: Vec<String>,
    /// Neighbours asked of the approximate engines (the notebook's 4).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    pub k: u64,
    /// Cosine threshold of threshold search (the notebook's 0.35).
    #[arg(long, default_value_t = 0.35, allow_negative_numbers = true)]
    pub tau: f32,

    /// A build parameter of one engine, `ENGINE.NAME=VALUE` (repeatable), e.g.
    /// `--param hnsw.m=16 --param forest.n_trees=50`. Each engine's parameters and defaults:
    /// `cargo xtask engines`.
    #[arg(long = "param", value_name = "ENGINE.NAME=VALUE")]
    pub params: Vec<String>,
    /// The speed/accuracy knob of one engine after loading, `ENGINE=VALUE` (repeatable), e.g.
    /// `--knob forest=5000` (forest search_k). Default: the engine's own.
    #[arg(long = "knob", value_name = "ENGINE=VALUE")]
    pub knobs: Vec<String>,
    /// Use this index file for an engine instead of building one, `ENGINE=PATH` (repeatable):
    /// a file of ours, or one written by the library the engine mirrors (Python hnswlib's
    /// save_index with space='cosine' and labels = row numbers; an angular Annoy file). It must
    /// be built over the same gallery.
    #[arg(long = "index", value_name = "ENGINE=PATH")]
    pub indexes: Vec<String>,
    /// HNSW's M, ef_construction and ef, forest's trees, leaf size and search_k: shortcuts
    /// for the notebook's parameters (`--m 48` is `--param hnsw.m=48`).
    #[arg(long)]
    pub m: Option<usize>,
    /// HNSW: candidate list size while building (shortcut for --param hnsw.ef_construction).
    #[arg(long)]
    pub ef_construction: Option<usize>,
    /// HNSW: candidate list size while searching (shortcut for --knob hnsw=EF).
    #[arg(long)]
    pub ef: Option<usize>,
    /// Forest: number of trees (shortcut for --param forest.n_trees).
    #[arg(long)]
    pub trees: Option<usize>,
    /// Forest: candidates gathered per query (shortcut for --knob forest=N; default: the
    /// larger of annoy's k x trees and n/20, see search-forest's README).
    #[arg(long)]
    pub search_k: Option<usize>,
    /// Forest: most items per leaf, or `annoy` for Annoy's own leaves (dim + 2); shortcut for
    /// --param forest.leaf_size. Larger leaves build faster and give less recall per
    /// millisecond (see search-forest's README).
    #[arg(long)]
    pub leaf: Option<String>,

    /// Sweep each approximate engine's knob (HNSW ef, forest search_k): recall@k and queries/s
    /// at each value, on one thread and on all threads, over all held-out queries.
    #[arg(long)]
    pub sweep: bool,
    /// The knob values of the sweep of knobs called `ef` (HNSW's).
    #[arg(long, value_delimiter = ',', default_value = "10,20,40,80,100,200,400")]
    pub sweep_ef: Vec<usize>,
    /// The knob values of the sweep of knobs called `search_k` (the forest's); the sweep stops
    /// after the first value whose recall@k reaches --sweep-stop-recall.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,200,500,1000,2000,5000,10000,20000,50000,100000,200000,400000"
    )]
    pub sweep_search_k: Vec<usize>,
    /// The knob values of the sweep of any engine, `ENGINE=V1,V2,...` (repeatable; overrides
    /// the two above for that engine).
    #[arg(long = "sweep-values", value_name = "ENGINE=V1,V2")]
    pub sweep_values: Vec<String>,
    /// Recall@k at which a `search_k` sweep stops.
    #[arg(long, default_value_t = 0.995)]
    pub sweep_stop_recall: f64,
    /// Seconds each sweep point is timed for, at least (repeated passes over all queries; the
    /// fastest pass counts, the one least disturbed on a shared machine).
    #[arg(long, default_value_t = 0.5)]
    pub sweep_min_seconds: f64,
    /// Visits of the whole knob list: each point keeps its fastest pass over all of them, so
    /// that a slow stretch of a shared machine does not land on one knob value alone.
    #[arg(long, default_value_t = 3)]
    pub sweep_rounds: usize,
    /// Knob values added between the two measured values around each crossing of recall@k
    /// 0.90 and 0.99 (the ratio table's columns), so that an engine's best q/s at that recall
    /// comes from near its crossing, not from where the grid put a point; when the first value
    /// already reaches one, halves of it (down to k) first (0: none of this).
    #[arg(long, default_value_t = 3)]
    pub sweep_refine: usize,
    /// Threads of the "all threads" measurements (0: every core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,

    /// Your own gallery instead of the synthetic one: a .npy of (n, d) float32/float64 vectors,
    /// followed in the same file by n labels (the notebook's layout) unless --labels is given.
    #[arg(long, requires = "queries")]
    pub gallery: Option<PathBuf>,
    /// Labels of --gallery, a .npy of n strings (when the gallery file holds only vectors).
    #[arg(long, requires = "gallery")]
    pub labels: Option<PathBuf>,
    /// Your own queries (with --gallery): a .npy of (q, d) vectors, optionally followed by q
    /// labels. The first query is the headline query; recall is against exact search.
    #[arg(long, requires = "gallery")]
    pub queries: Option<PathBuf>,
    /// Labels of --queries, a .npy of q strings. A query's truth is the gallery rows of the
    /// same person: labels equal up to the last '_' (id042_q and id042_3).
    #[arg(long, requires = "queries")]
    pub query_labels: Option<PathBuf>,
    /// Write report.html (plots and tables, self-contained) to this folder. With the peers'
    /// results when the --json file already holds them for the same data.
    #[arg(long)]
    pub report: Option<PathBuf>,

    /// Folder for the dataset and index files (kept between runs).
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Build every index again even when a cached one matches.
    #[arg(long)]
    pub rebuild: bool,
    /// How our engines open their index files: auto (eager for a cold file, background for a
    /// warm one), lazy (read pages as queries touch them), background (the kernel reads the
    /// parts every query reads ahead, while the first queries run) or eager (read those parts
    /// before the first query).
    #[arg(long, default_value_t = search_core::Warmup::default())]
    pub warmup: search_core::Warmup,
    /// Skip the cold-file measurements (each index file evicted from the page cache, then
    /// loaded and asked the headline query; and read whole from cold, for scale).
    #[arg(long)]
    pub no_cold: bool,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Do not draw progress bars.
    #[arg(long)]
    pub quiet: bool,
}
