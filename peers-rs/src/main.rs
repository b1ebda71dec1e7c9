//! `rust-peers`: Rust crates users asked about, run as peers of `cargo xtask peers` the way
//! `scripts/peers.py` runs the Python ones, but through our own `bench_runner` (so the very
//! same build / cold open / warm open / query / sweep measurements as our engines).
//!
//! ```text
//! rust-peers PEER --results DIR --key KEY [--k 4] [--tau 0.35] [--min-seconds S] [--rounds R] [--refine N] [--rebuild] [--sweep]
//! PEER: hnswlib-rs | annoy-rs
//! ```
//!
//! Reads `DIR/search_data.npy`, `DIR/queries.npy` and `DIR/headline.npy` (written by
//! `cargo xtask bench`, whose dataset key KEY must match `DIR/dataset.key`), builds the peer's
//! index (cached in `DIR/peers/`), measures it with `bench_runner::run_engine` and prints
//! one JSON object (the fields of `bench_runner::EngineReport`, plus `version`, `params` and
//! `threads`) as the last line of stdout. Built with nightly, outside the workspace: see
//! `Cargo.toml`.

mod annoy_peer;
mod hnswlib_peer;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::process::ExitCode;

use bench_runner::{
    EngineReport, EngineRun, HeadlineSearch, RunExtras, RunOptions, SweepSpec, Workload,
    run_engine,
};
use search_core::{EngineKind, Params};
use embed_store::npy;
use embed_store::synth::Headline;
use search_forest::ForestParams;
use serde_json::{Value, json};

use crate::annoy_peer::AnnoyRs;
use crate::hnswlib_peer::{HnswlibRs, HnswlibRsParams};

/// The sweeps of `cargo xtask bench` (its `--sweep-ef` and `--sweep-search-k` defaults).
const EF: [usize; 7] = [10, 20, 40, 80, 100, 200, 400];
const SEARCH_K: [usize; 12] = [
    100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000, 400000,
];
const STOP_RECALL: f64 = 0.995;
const HNSWLIB_RS_VERSION: &str = "0.10.0";
const ANNOY_RS_VERSION: &str = "0.1.0";

struct Args {
    peer: String,
    results: PathBuf,
    key: String,
    k: usize,
    tau: f32,
    min_seconds: f64,
    rounds: usize,
    /// Sweep values added around each crossing of recall 0.90 and 0.99 (as the bench's).
    refine: usize,
    rebuild: bool,
    sweep: bool,
}

const USAGE: &str = "usage: rust-peers hnswlib-rs|annoy-rs --results DIR --key KEY [--k 4] \
                     [--tau 0.35] [--min-seconds 0.5] [--rounds 3] [--refine 3] [--rebuild] [--sweep]";

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut peer = None;
    let mut args = Args {
        peer: String::new(),
        results: PathBuf::from("results"),
        key: String::new(),
        k: 4,
        tau: 0.35,
        min_seconds: 0.5,
        rounds: 3,
        refine: 3,
        rebuild: false,
        sweep: false,
    };
    let mut key = None;
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        let number = |name: &str, v: String| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or(format!("{name}: not a number: {v:?}"))
        };
        match a.as_str() {
            "--results" => args.results = PathBuf::from(value("--results")?),
            "--key" => key = Some(value("--key")?),
            "--k" => {
                let v = value("--k")?;
                args.k = v.parse().ok().filter(|&k| k > 0).ok_or(format!(
                    "--k: expected a whole number of at least 1, got {v:?}"
                ))?;
            }
            "--tau" => args.tau = number("--tau", value("--tau")?)? as f32,
            "--min-seconds" => args.min_seconds = number("--min-seconds", value("--min-seconds")?)?,
            "--rounds" => {
                let v = value("--rounds")?;
                args.rounds = v.parse().ok().filter(|&r| r > 0).ok_or(format!(
                    "--rounds: expected a whole number of at least 1, got {v:?}"
                ))?;
            }
            "--refine" => {
                let v = value("--refine")?;
                args.refine = v.parse().map_err(|_| {
                    format!("--refine: expected a whole number, got {v:?}")
                })?;
            }
            "--rebuild" => args.rebuild = true,
            "--sweep" => args.sweep = true,
            "-h" | "--help" => return Err(USAGE.into()),
            s if s.starts_with('-') => return Err(format!("unknown flag {s}\n{USAGE}")),
            s if peer.is_none() => peer = Some(s.to_owned()),
            s => return Err(format!("unexpected argument {s:?}\n{USAGE}")),
        }
    }
    args.peer = peer.ok_or(format!("which peer?\n{USAGE}"))?;
    args.key = key.ok_or(format!("--key is required\n{USAGE}"))?;
    Ok(args)
}

/// A label's person: everything before the last '_' (`id042` of `id042_3`), or all of it.
fn identity(label: &str) -> &str {
    label.rsplit_once('_').map_or(label, |(person, _)| person)
}

/// The bench's dataset from `dir`, as the bench's `Workload`.
fn workload(args: &Args) -> Result<Workload, Box<dyn std::error::Error>> {
    let dir = &args.results;
    let on_disk = std::fs::read_to_string(dir.join("dataset.key")).unwrap_or_default();
    if on_disk != args.key {
        return Err(format!(
            "{} holds dataset {on_disk:?}, not {:?}: run `cargo xtask bench --results {}` again",
            dir.display(),
            args.key,
            dir.display()
        )
        .into());
    }
    let gallery = npy::read_gallery(&dir.join("search_data.npy"))?;
    let queries = npy::read_gallery(&dir.join("queries.npy"))?;
    let head = npy::read_gallery(&dir.join("headline.npy"))?;
    if head.is_empty() || queries.is_empty() || gallery.is_empty() {
        return Err(format!("{}: empty gallery, queries or headline", dir.display()).into());
    }
    let label = head.label(0).to_owned();
    let truth = gallery
        .labels()
        .iter()
        .filter(|l| identity(l) == identity(&label))
        .cloned()
        .collect();
    let headline = Headline {
        vector: head.vectors().row(0).to_vec(),
        label,
        truth,
    };
    Ok(Workload::new(
        gallery,
        queries,
        headline,
        args.key.clone(),
        args.k,
        args.tau,
    )?)
}

/// The peers as engines of their own (they are not in the registry: peers are compared, not
/// offered), measured by the same `run_engine` as ours.
const HNSWLIB_RS: EngineKind = EngineKind::of::<HnswlibRs>(
    "hnswlib-rs 0.10.0 (crates.io), cosine",
    &[],
    Some("ef"),
    |_| true,
);
const ANNOY_RS: EngineKind = EngineKind::of::<AnnoyRs>(
    "annoy-rs 0.1.0 (crates.io) serving an Annoy file",
    &[],
    Some("search_k"),
    |_| true,
);

fn run_peer(
    kind: &'static EngineKind,
    workload: &Workload,
    args: &Args,
    knob: Option<usize>,
    sweep: SweepSpec,
) -> search_core::Result<EngineReport> {
    let options = RunOptions {
        results_dir: args.results.join("peers"),
        rebuild: args.rebuild,
        cold: true,
        ..RunOptions::default()
    };
    let run = EngineRun {
        kind,
        params: Params::new(),
        headline: HeadlineSearch::TopK,
        knob,
    };
    let extras = RunExtras {
        sweep: args.sweep.then_some(&sweep),
        existing_index: None,
        identification: None,
    };
    run_engine(workload, &run, &options, &extras)
}

fn run(args: &Args) -> Result<Value, Box<dyn std::error::Error>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let base = SweepSpec {
        min_seconds: args.min_seconds,
        rounds: args.rounds,
        refine_points: args.refine,
        ..SweepSpec::default()
    };
    let (report, version, params) = match args.peer.as_str() {
        "hnswlib-rs" => {
            let p = HnswlibRsParams::default();
            let params = format!(
                "Hnsw<u32, Cosine<f32>> + InMemoryVectorStore<f32>, M={} ef_construction={} \
                 seed={}, inserted from {threads} rayon threads",
                p.m, p.ef_construction, p.seed
            );
            let ef = p.ef;
            let sweep = SweepSpec {
                values: EF.to_vec(),
                ..base
            };
            eprintln!("[hnswlib-rs] {params}");
            let w = workload(args)?;
            let r = run_peer(&HNSWLIB_RS, &w, args, Some(ef), sweep)?;
            (r, HNSWLIB_RS_VERSION, params)
        }
        "annoy-rs" => {
            let p = ForestParams::default();
            let params = format!(
                "angular n_trees={}, file built by search-forest (leaf_size={:?}, seed={}) and \
                 served by annoy-rs; search_k=-1 is Annoy's default (k x n_trees)",
                p.n_trees, p.leaf_size, p.seed
            );
            let sweep = SweepSpec {
                values: SEARCH_K.to_vec(),
                stop_at_recall: Some(STOP_RECALL),
                ..base
            };
            eprintln!("[annoy-rs] {params}");
            let w = workload(args)?;
            let mut r = run_peer(&ANNOY_RS, &w, args, None, sweep)?;
            // 0 is "not set" on our side; annoy's own spelling of its default is -1.
            if r.knob.as_deref() == Some("search_k=0") {
                r.knob = Some("search_k=-1".into());
            }
            (r, ANNOY_RS_VERSION, params)
        }
        other => return Err(format!("unknown peer {other:?}; one of hnswlib-rs, annoy-rs").into()),
    };
    for p in &report.sweep {
        eprintln!(
            "[{}] {}={:<7} recall@{}={:.4} qps 1 thread={:9.0} all={:9.0}",
            report.name, p.param, p.value, args.k, p.recall_at_k, p.qps_1t, p.qps_all
        );
    }
    let mut out = serde_json::to_value(&report)?;
    out["version"] = json!(version);
    out["params"] = json!(params);
    out["threads"] = json!(threads);
    // Peers load their own way: no warm-up mode applies.
    out["warmup"] = Value::Null;
    Ok(out)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
