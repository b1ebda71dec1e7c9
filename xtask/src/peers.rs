//! `cargo xtask peers`: Python hnswlib, annoy, faiss and usearch, and the Rust crates
//! hnswlib-rs and annoy-rs (peers-rs/, built with nightly), on the bench's data, merged into the
//! bench's JSON, with the ratios ours/theirs.

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bench_runner::{BenchFile, EngineReport, SweepPoint};
use serde_json::json;

use crate::cli::PeersArgs;

pub fn run(args: &PeersArgs) -> Result<(), Box<dyn Error>> {
    for file in ["search_data.npy", "queries.npy", "headline.npy"] {
        let path = args.results.join(file);
        if !path.exists() {
            return Err(format!(
                "{} is missing: run `cargo xtask bench --results {} --json {}` first",
                path.display(),
                args.results.display(),
                args.json.display()
            )
            .into());
        }
    }
    let mut doc = bench_file_for(&args.results, &args.json)?;
    let key = doc.dataset_key.clone();
    let k = doc.report.k;

    let root = workspace_root();
    // Check for what the chosen peers need before running any of them.
    let python = if args.peers.iter().any(|p| !p.is_rust()) {
        Some(python(&root)?)
    } else {
        None
    };
    if args.peers.iter().any(|p| p.is_rust()) {
        check_nightly()?;
    }
    let script = root.join("scripts/peers.py");
    for peer in &args.peers {
        let name = peer.as_str();
        eprintln!("running peer {name}...");
        let (mut cmd, program) = match &python {
            Some(python) if !peer.is_rust() => {
                let mut cmd = Command::new(python);
                cmd.arg(&script);
                (cmd, python.display().to_string())
            }
            _ => {
                let manifest = root.join("peers-rs/Cargo.toml");
                eprintln!(
                    "(cargo +nightly run --release --manifest-path {}: the first build takes \
                     minutes)",
                    manifest.display()
                );
                let mut cmd = Command::new("cargo");
                cmd.args(["+nightly", "run", "--release", "--manifest-path"])
                    .arg(&manifest)
                    .arg("--")
                    // A toolchain chosen for this xtask process must not override +nightly.
                    .env_remove("RUSTUP_TOOLCHAIN")
                    .env_remove("RUSTC")
                    .env_remove("RUSTDOC");
                (cmd, "cargo +nightly".to_owned())
            }
        };
        cmd.arg(name)
            .arg("--results")
            .arg(&args.results)
            .args(["--key", &key, "--k", &k.to_string()])
            .args(["--min-seconds", &args.sweep_min_seconds.to_string()])
            .args(["--rounds", &args.sweep_rounds.to_string()])
            .args(["--refine", &args.sweep_refine.to_string()])
            .stderr(Stdio::inherit());
        if args.rebuild {
            cmd.arg("--rebuild");
        }
        if peer.is_rust() {
            // peers.py always sweeps; the Rust peers sweep when asked. Same threshold as the bench.
            cmd.arg("--sweep");
            cmd.args(["--tau", &doc.report.tau.to_string()]);
        }
        let out = cmd.output().map_err(|e| format!("{program}: {e}"))?;
        if !out.status.success() {
            return Err(format!("peer {name} failed ({})", out.status).into());
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().unwrap_or("");
        let result: EngineReport = serde_json::from_str(last)
            .map_err(|e| format!("peer {name} printed no result ({e}): {stdout}"))?;
        doc.peers.retain(|p| p.name != result.name);
        doc.peers.push(result);
        // Save after each peer, so a long run keeps what it measured.
        doc.write(&args.json)?;
    }
    let earlier_python = doc
        .peers_params
        .as_ref()
        .and_then(|p| p.get("python").cloned())
        .unwrap_or_default();
    doc.peers_params = Some(json!({
        "note": "each peer runs in its own process; Python peers ask all queries in one batch \
                 call (annoy: one call per query, a thread pool for all threads); ours and the \
                 Rust peers (hnswlib-rs, annoy-rs) call search() per query through the \
                 SearchIndex trait, measured by bench-runner",
        // A run of Rust peers alone keeps the Python of the peers merged earlier.
        "python": python.map_or(earlier_python, |p| json!(p.display().to_string())),
        "rust_peers": "peers-rs/ built by `cargo +nightly run --release` (target-cpu=native)",
    }));
    doc.write(&args.json)?;
    eprintln!("wrote {}", args.json.display());
    println!("{}", ratio_table(&doc));
    if let Some(dir) = &args.report {
        let page = crate::report_html::write(dir, &doc)?;
        eprintln!("wrote {}", page.display());
    }
    Ok(())
}

/// The Rust peers are built with nightly cargo (hnswlib-rs 0.10.0 does not build on stable).
fn check_nightly() -> Result<(), Box<dyn Error>> {
    let ok = Command::new("cargo")
        .args(["+nightly", "--version"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Err(
            "the Rust peers (hnswlib-rs, annoy-rs) need the nightly toolchain, which \
             `cargo +nightly` could not find: hnswlib-rs 0.10.0 does not build on stable Rust. \
             Install it with `rustup toolchain install nightly`, or leave them out, e.g. \
             --peers faiss-flat,hnswlib,annoy."
                .into(),
        );
    }
    Ok(())
}

/// The bench's JSON `json`, checked to be about the dataset the bench wrote to `results` (its
/// dataset.key): what `peers` and `distributed` merge their figures into.
pub(crate) fn bench_file_for(results: &Path, json: &Path) -> Result<BenchFile, Box<dyn Error>> {
    if !json.exists() {
        return Err(format!(
            "{} is missing: run `cargo xtask bench --json {}` first",
            json.display(),
            json.display()
        )
        .into());
    }
    let doc = BenchFile::read(json)?;
    let on_disk = std::fs::read_to_string(results.join("dataset.key")).unwrap_or_default();
    if on_disk != doc.dataset_key {
        return Err(format!(
            "{} is about dataset {}, but {} holds {on_disk:?}: run the bench again with the \
             same --results and --json",
            json.display(),
            doc.dataset_key,
            results.display()
        )
        .into());
    }
    Ok(doc)
}

pub(crate) fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The peers' Python, from `scripts/pyenv.sh --peers`; a clear error when python3, venv or pip
/// is missing.
pub(crate) fn python(root: &Path) -> Result<PathBuf, Box<dyn Error>> {
    let venv = std::env::var_os("FACE_SEARCH_PYENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/pyenv"));
    let ready = std::fs::read_dir(&venv).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".ready-peers"))
    });
    if !ready {
        let ok = |args: &[&str]| {
            Command::new("python3")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ok(&["--version"]) {
            return Err(
                "python3 is not installed: `cargo xtask peers` runs the Python peers \
                        (hnswlib, annoy, faiss, usearch) in a virtualenv it makes with python3; \
                        install python3 (with venv and pip, e.g. Debian's python3-venv) and run \
                        it again. Nothing else needs Python."
                    .into(),
            );
        }
        if !ok(&["-c", "import venv, ensurepip"]) && !ok(&["-m", "pip", "--version"]) {
            return Err(
                "python3 has neither pip nor ensurepip: `cargo xtask peers` installs \
                        its peers with pip into a virtualenv; install pip (e.g. Debian's \
                        python3-venv / python3-pip) and run it again."
                    .into(),
            );
        }
        eprintln!(
            "making the peers' Python environment (numpy, hnswlib, annoy, faiss-cpu, usearch, \
             rabitqlib, pyvsag, ngt)..."
        );
    }
    let out = Command::new("bash")
        .arg(root.join("scripts/pyenv.sh"))
        .arg("--peers")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("bash scripts/pyenv.sh: {e}"))?;
    if !out.status.success() {
        return Err(
            "scripts/pyenv.sh --peers failed (see above): could not make the peers' \
                    virtualenv (is pip able to reach its package index?)"
                .into(),
        );
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// Which peers each of our engines is compared with.
pub(crate) const PAIRS: [(&str, &[&str]); 3] = [
    ("linear", &["faiss-flat"]),
    (
        "hnsw",
        &[
            "hnswlib",
            "faiss-hnsw",
            "faiss-hnsw-sq8",
            "usearch",
            "usearch-f16",
            "symqg",
            "vsag",
            "ngt-onng",
            "hnswlib-rs",
        ],
    ),
    ("forest", &["annoy", "annoy-rs"]),
];

/// Best queries/s (one thread or all) among the sweep points with recall ≥ `target`.
fn qps_at(e: &EngineReport, field: fn(&SweepPoint) -> f64, target: f64) -> Option<f64> {
    e.sweep
        .iter()
        .filter(|p| p.recall_at_k >= target)
        .map(field)
        .reduce(f64::max)
}

/// A column of the ratio table: its name, and the figure it divides, read from a report.
pub(crate) type Figure = (&'static str, fn(&EngineReport) -> Option<f64>);

/// The columns of the ratio table.
pub(crate) const FIGURES: [Figure; 11] = [
    ("build", |e| Some(e.build_s)),
    ("load", |e| Some(e.load_s)),
    ("cold 1st", |e| e.cold.map(|c| c.total_s)),
    ("size", |e| Some(e.index_bytes as f64)),
    ("peakRSS", |e| e.peak_rss_bytes.map(|b| b as f64)),
    ("RSSgrowth", |e| {
        Some(e.peak_rss_bytes? as f64 - e.rss_before_bytes? as f64)
    }),
    ("median q", |e| Some(e.query_median_s)),
    ("qps1@.90", |e| qps_at(e, |p| p.qps_1t, 0.90)),
    ("qps1@.99", |e| qps_at(e, |p| p.qps_1t, 0.99)),
    ("qpsN@.90", |e| qps_at(e, |p| p.qps_all, 0.90)),
    ("qpsN@.99", |e| qps_at(e, |p| p.qps_all, 0.99)),
];

/// `figure` of ours divided by the peer's, when both were measured.
pub(crate) fn ratio(figure: &Figure, ours: &EngineReport, peer: &EngineReport) -> Option<f64> {
    match ((figure.1)(ours), (figure.1)(peer)) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() => Some(a / b),
        _ => None,
    }
}

/// The (ours, peer) pairs of [`PAIRS`] that `doc` holds both of, in that order.
pub(crate) fn pairs(doc: &BenchFile) -> Vec<(&EngineReport, &EngineReport)> {
    let mut out = Vec::new();
    for (ours, peers) in PAIRS {
        let Some(e) = doc.report.engines.iter().find(|e| e.name == ours) else {
            continue;
        };
        for peer in peers {
            if let Some(p) = doc.peers.iter().find(|p| p.name == *peer) {
                out.push((e, p));
            }
        }
    }
    out
}

/// The ratios ours/theirs, one row per (engine, peer) pair.
pub fn ratio_table(doc: &BenchFile) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ratios ours/theirs (times, size, memory: < 1 means ours is smaller; qps: > 1 means ours \
         is faster; qpsX@.90 = best queries/s on 1 / all threads among sweep points with \
         recall@k >= 0.90; RSSgrowth = peak RSS minus what the process held before (its data); cold \
         1st = load + first query with the index file evicted from the page cache; '-' = not \
         reached or not measured)"
    );
    let _ = write!(out, "{:<22}", "ours / peer");
    for (name, _) in &FIGURES {
        let _ = write!(out, " {name:>9}");
    }
    out.push('\n');
    for (e, p) in pairs(doc) {
        let _ = write!(out, "{:<22}", format!("{} / {}", e.name, p.name));
        for f in &FIGURES {
            let cell = ratio(f, e, p).map_or("-".into(), |r| format!("{r:.2}"));
            let _ = write!(out, " {cell:>9}");
        }
        out.push('\n');
    }
    out
}
