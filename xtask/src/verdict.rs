//! `cargo xtask verdict`: `bench --sweep` and `peers` run several times in one command,
//! alternating which goes first, with each ratio ours/theirs per run and its median and range.
//!
//! On a machine whose speed drifts by a fifth over minutes, one run of each can put either
//! side ahead. Runs that alternate the order, each measuring both sides within minutes of each
//! other, give ratios whose median and range say whether a lead holds.

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bench_runner::{BenchFile, EngineReport};
use serde_json::{Value, json};

use crate::cli::{PeersArgs, VerdictArgs};
use crate::peers::{FIGURES, Figure, PAIRS, pairs, ratio};

/// The figures measured afresh in every run (builds happen once and are reused, so their time,
/// size and memory would only repeat the first run's). Not "median q": each engine answers it
/// at its own default knob, so its ratio says nothing about who is ahead at a given recall.
const PER_RUN: [&str; 5] = ["cold 1st", "qps1@.90", "qps1@.99", "qpsN@.90", "qpsN@.99"];

pub fn run(args: &VerdictArgs) -> Result<(), Box<dyn Error>> {
    let mut bench = args.bench.clone();
    bench.sweep = true;
    // Written once, at the end, from the last run with its peers (a run that measures ours
    // first would write it before its peers are in).
    let report = bench.report.take();
    let json = bench
        .json
        .clone()
        .unwrap_or_else(|| bench.results.join("verdict.json"));
    let peers: Vec<&str> = args.peers.iter().map(|p| p.as_str()).collect();
    bench.engines.retain(|e| faces_a_peer(e, &peers));
    if bench.engines.is_empty() {
        let who_faces_whom: Vec<String> = PAIRS
            .iter()
            .map(|(ours, theirs)| format!("{ours} faces {}", theirs.join(", ")))
            .collect();
        return Err(format!(
            "none of the engines {} faces one of the peers {}: {}",
            args.bench.engines.join(","),
            peers.join(","),
            who_faces_whom.join("; ")
        )
        .into());
    }
    let rebuild = bench.rebuild;
    let mut files: Vec<PathBuf> = Vec::new();
    for run in 1..=args.runs {
        let path = run_path(&json, run);
        eprintln!(
            "verdict: run {run} of {}, {} first",
            args.runs,
            if ours_first(run) { "ours" } else { "the peers" }
        );
        // Build (when asked) in the first run only; the others reuse what it built.
        bench.rebuild = rebuild && run == 1;
        bench.json = Some(path.clone());
        let peers_args = PeersArgs {
            results: bench.results.clone(),
            json: path.clone(),
            peers: args.peers.clone(),
            rebuild: bench.rebuild,
            sweep_min_seconds: bench.sweep_min_seconds,
            sweep_rounds: bench.sweep_rounds,
            sweep_refine: bench.sweep_refine,
            report: None,
        };
        match files.last() {
            Some(previous) if !ours_first(run) => {
                // The peers merge into a bench file: start from the previous run's, whose
                // peers they replace; the bench then replaces ours and keeps this run's peers.
                std::fs::copy(previous, &path).map_err(|e| {
                    format!("copying {} to {}: {e}", previous.display(), path.display())
                })?;
                crate::peers::run(&peers_args)?;
                crate::bench::run(&bench)?;
            }
            _ => {
                // A file left by an earlier verdict must not lend this run its peers.
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(format!("{}: {e}", path.display()).into());
                    }
                    _ => {}
                }
                crate::bench::run(&bench)?;
                crate::peers::run(&peers_args)?;
            }
        }
        files.push(path);
    }
    let runs = files
        .iter()
        .map(|f| BenchFile::read(f))
        .collect::<Result<Vec<_>, _>>()?;
    let summary = Summary::of(&runs);
    println!("{}", summary.table());
    let mut doc = runs.last().cloned().ok_or("no runs")?;
    doc.verdict = Some(summary.to_json(&files));
    doc.write(&json)?;
    eprintln!(
        "wrote {} (the last run, with every run's ratios)",
        json.display()
    );
    if let Some(dir) = &report {
        let page = crate::report_html::write(dir, &doc)?;
        eprintln!("wrote {} (the last run)", page.display());
    }
    Ok(())
}

/// Whether run `run` (from 1) measures ours before the peers.
fn ours_first(run: u64) -> bool {
    run % 2 == 1
}

/// Whether our engine `engine` has one of `peers` to face.
fn faces_a_peer(engine: &str, peers: &[&str]) -> bool {
    PAIRS
        .iter()
        .any(|(ours, theirs)| *ours == engine && theirs.iter().any(|t| peers.contains(t)))
}

/// Run `run`'s file beside `json`: results/verdict.json -> results/verdict.run2.json.
fn run_path(json: &Path, run: u64) -> PathBuf {
    let stem = json.file_stem().unwrap_or_default().to_string_lossy();
    json.with_file_name(format!("{stem}.run{run}.json"))
}

/// One figure over the runs: for a pair, the ratio ours/theirs; for an engine, its value.
#[derive(Debug, PartialEq)]
struct Line {
    /// `"hnsw / symqg"` or `"hnsw"`.
    who: String,
    figure: &'static str,
    /// One per run; `None` where a run did not measure it (or did not reach the recall).
    per_run: Vec<Option<f64>>,
}

impl Line {
    fn measured(&self) -> Vec<f64> {
        self.per_run.iter().flatten().copied().collect()
    }

    /// Median and range over the runs that measured it.
    fn median_range(&self) -> Option<(f64, f64, f64)> {
        let mut v = self.measured();
        let median = crate::stats::median(&mut v)?;
        Some((median, v[0], v[v.len() - 1]))
    }
}

/// Every run's ratios and our engines' and the peers' own best q/s.
struct Summary {
    runs: usize,
    ratios: Vec<Line>,
    values: Vec<Line>,
}

impl Summary {
    fn of(runs: &[BenchFile]) -> Summary {
        let figure = |name: &str| -> &'static Figure {
            FIGURES
                .iter()
                .find(|f| f.0 == name)
                .expect("PER_RUN names columns of FIGURES")
        };
        let mut ratios: Vec<Line> = Vec::new();
        let mut values: Vec<Line> = Vec::new();
        let record = |lines: &mut Vec<Line>, who: String, f: &'static Figure, run, v| {
            let at = match lines.iter().position(|l| l.who == who && l.figure == f.0) {
                Some(at) => at,
                None => {
                    lines.push(Line {
                        who,
                        figure: f.0,
                        per_run: vec![None; runs.len()],
                    });
                    lines.len() - 1
                }
            };
            lines[at].per_run[run] = v;
        };
        for (run, doc) in runs.iter().enumerate() {
            let mut seen: Vec<&EngineReport> = Vec::new();
            for (ours, peer) in pairs(doc) {
                for name in PER_RUN {
                    let f = figure(name);
                    let who = format!("{} / {}", ours.name, peer.name);
                    record(&mut ratios, who, f, run, ratio(f, ours, peer));
                }
                for e in [ours, peer] {
                    if !seen.iter().any(|s| s.name == e.name) {
                        seen.push(e);
                        for name in ["qps1@.99", "qpsN@.99"] {
                            let f = figure(name);
                            record(&mut values, e.name.clone(), f, run, (f.1)(e));
                        }
                    }
                }
            }
        }
        Summary {
            runs: runs.len(),
            ratios,
            values,
        }
    }

    fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "verdict over {} runs (odd runs ours first, even runs the peers first; q/s warm, \
             cold 1st with each index file evicted; ratios ours/theirs: qps > 1 and times < 1 \
             mean ours is ahead; '-' = not measured or recall not reached)",
            self.runs
        );
        for (title, lines, digits) in [
            ("ours / peer", &self.ratios, 2),
            ("best q/s", &self.values, 0),
        ] {
            let _ = write!(out, "{title:<22} {:<9}", "figure");
            for run in 1..=self.runs {
                let _ = write!(out, " {:>8}", format!("run {run}"));
            }
            let _ = writeln!(out, " {:>8} {:>15}", "median", "range");
            for line in lines {
                let _ = write!(out, "{:<22} {:<9}", line.who, line.figure);
                for v in &line.per_run {
                    let cell = v.map_or("-".into(), |v| format!("{v:.digits$}"));
                    let _ = write!(out, " {cell:>8}");
                }
                let (median, range) = match line.median_range() {
                    Some((m, lo, hi)) => (
                        format!("{m:.digits$}"),
                        format!("{lo:.digits$}–{hi:.digits$}"),
                    ),
                    None => ("-".into(), "-".into()),
                };
                let _ = writeln!(out, " {median:>8} {range:>15}");
            }
        }
        out
    }

    fn to_json(&self, files: &[PathBuf]) -> Value {
        let lines = |lines: &[Line]| -> Vec<Value> {
            lines
                .iter()
                .map(|l| {
                    let mr = l.median_range();
                    json!({
                        "who": l.who,
                        "figure": l.figure,
                        "per_run": l.per_run,
                        "median": mr.map(|m| m.0),
                        "min": mr.map(|m| m.1),
                        "max": mr.map(|m| m.2),
                    })
                })
                .collect()
        };
        json!({
            "runs": self.runs,
            "order": "odd runs ours first, even runs the peers first",
            "files": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            "ratios": lines(&self.ratios),
            "best_qps": lines(&self.values),
        })
    }
}

/// The summary table of the verdict a bench file records ([`BenchFile::verdict`]), as the
/// terminal showed it; `None` when the value is not a verdict's.
pub fn table_of(verdict: &Value) -> Option<String> {
    let lines = |key: &str| -> Option<Vec<Line>> {
        verdict[key]
            .as_array()?
            .iter()
            .map(|l| {
                Some(Line {
                    who: l["who"].as_str()?.to_string(),
                    figure: FIGURES.iter().find(|f| l["figure"] == f.0)?.0,
                    per_run: l["per_run"].as_array()?.iter().map(Value::as_f64).collect(),
                })
            })
            .collect()
    };
    let summary = Summary {
        runs: usize::try_from(verdict["runs"].as_u64()?).ok()?,
        ratios: lines("ratios")?,
        values: lines("best_qps")?,
    };
    Some(summary.table())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{bench_file, engine};

    /// A run where ours answers `ours` q/s on one thread and twice that on all, the peer
    /// `theirs`, both at recall 0.995; hnswlib reaches only 0.95.
    fn run(ours: f64, theirs: f64) -> BenchFile {
        bench_file(
            vec![engine("hnsw", &[], &[(20, 0.995, ours, 2.0 * ours)])],
            vec![
                engine("symqg", &[], &[(100, 0.995, theirs, 2.0 * theirs)]),
                engine("hnswlib", &[], &[(100, 0.95, 100.0, 200.0)]),
            ],
        )
    }

    fn line<'a>(lines: &'a [Line], who: &str, figure: &str) -> &'a Line {
        lines
            .iter()
            .find(|l| l.who == who && l.figure == figure)
            .unwrap_or_else(|| panic!("no line {who} {figure}"))
    }

    #[test]
    fn each_run_gives_its_own_ratio_and_the_median_and_range_come_from_all() {
        let runs = [run(1100.0, 1000.0), run(800.0, 1000.0), run(990.0, 1000.0)];
        let s = Summary::of(&runs);
        let q = line(&s.ratios, "hnsw / symqg", "qps1@.99");
        assert_eq!(q.per_run, vec![Some(1.1), Some(0.8), Some(0.99)]);
        assert_eq!(q.median_range(), Some((0.99, 0.8, 1.1)));
        let ours = line(&s.values, "hnsw", "qpsN@.99");
        assert_eq!(ours.per_run, vec![Some(2200.0), Some(1600.0), Some(1980.0)]);
        // hnswlib never reached 0.99: no ratio in any run, and the table says so.
        let h = line(&s.ratios, "hnsw / hnswlib", "qps1@.99");
        assert_eq!(h.per_run, vec![None, None, None]);
        assert_eq!(h.median_range(), None);
        let table = s.table();
        assert!(
            table.contains("run 3") && table.contains("0.80–1.10"),
            "{table}"
        );
    }

    #[test]
    fn the_table_comes_back_from_the_json_the_verdict_wrote() {
        let runs = [run(1100.0, 1000.0), run(800.0, 1000.0)];
        let s = Summary::of(&runs);
        let json = s.to_json(&[PathBuf::from("a.json"), PathBuf::from("b.json")]);
        assert_eq!(table_of(&json).as_deref(), Some(s.table().as_str()));
        assert_eq!(
            table_of(&json!({"runs": 2})),
            None,
            "no lines: not a verdict"
        );
    }

    #[test]
    fn a_peer_missing_from_one_run_leaves_a_gap_there_only() {
        let mut second = run(900.0, 1000.0);
        second.peers.retain(|p| p.name != "symqg");
        let s = Summary::of(&[run(1200.0, 1000.0), second]);
        let q = line(&s.ratios, "hnsw / symqg", "qps1@.99");
        assert_eq!(q.per_run, vec![Some(1.2), None]);
        // An even count of measured runs takes the mean of the middle two.
        let both = Summary::of(&[run(1200.0, 1000.0), run(900.0, 1000.0)]);
        let q = line(&both.ratios, "hnsw / symqg", "qps1@.99");
        assert_eq!(q.median_range().map(|m| (m.0 * 100.0).round()), Some(105.0));
    }

    #[test]
    fn runs_alternate_and_have_their_own_files() {
        assert_eq!(
            (1..=4).map(ours_first).collect::<Vec<_>>(),
            [true, false, true, false]
        );
        assert_eq!(
            run_path(Path::new("results/verdict.json"), 2),
            Path::new("results/verdict.run2.json")
        );
        assert!(faces_a_peer("hnsw", &["faiss-hnsw"]));
        assert!(!faces_a_peer("forest", &["faiss-hnsw", "symqg"]));
        assert!(faces_a_peer("forest", &["annoy"]));
    }
}
