//! Measured figures per engine, printed as the notebook's table or written as JSON.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::sweep::SweepPoint;

/// What was measured for one engine.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EngineReport {
    /// Engine name: "linear", "hnsw" or "forest" (or a peer's name).
    pub name: String,
    /// The build parameters, given or default (`name=value`, space-separated, in the
    /// engine's order; see `cargo xtask engines`). A peer's, in its own words.
    #[serde(default)]
    pub params: String,
    /// Seconds to build the index (from the cached build when it was reused).
    pub build_s: f64,
    /// True when no build ran: the index file of an earlier run with the same data and
    /// parameters was reused, or a file was given (`index_origin`).
    pub build_reused: bool,
    /// Seconds to load the saved index back from a warm file (in the page cache).
    pub load_s: f64,
    /// Seconds for the headline query, the first query after that load (as the notebook timed
    /// it), warm.
    pub query_s: f64,
    /// `load_s + query_s`, the notebook's "Total", warm.
    pub total_s: f64,
    /// The same three from a cold file (evicted from the page cache before the load), and the
    /// time to read that file from start to end from cold, for scale; `None` when not measured.
    #[serde(default)]
    pub cold: Option<ColdStart>,
    /// How our engines were opened (`"lazy"`, `"background"`, `"eager"`: see
    /// `search_core::Warmup`); `None` for peers, which load their own way.
    #[serde(default)]
    pub warmup: Option<String>,
    /// Median seconds per query over all held-out queries, one at a time (warm).
    pub query_median_s: f64,
    /// Labels the engine returned for the headline query (threshold search for the exact
    /// engine, as in the notebook; top-k for approximate engines).
    pub labels: Vec<String>,
    /// Mean fraction of the exact top-k found, over the held-out queries.
    pub recall_at_k: f64,
    /// Fraction of the exact above-threshold rows found by threshold search, over all queries
    /// (`None` for a peer without threshold search).
    pub threshold_recall: Option<f64>,
    /// Size of the index file on disk, in bytes.
    pub index_bytes: u64,
    /// The engine's speed/accuracy knob and its value, e.g. "ef=100".
    pub knob: Option<String>,
    /// Where the index came from: `"built"`, `"cached"` (an earlier run's build) or `"given"`
    /// (a file named by the user; `build_s` is then 0).
    pub index_origin: String,
    /// The index file that was loaded.
    pub index_file: String,
    /// Peak resident memory of the process during this engine's build, load and queries, in
    /// bytes (Linux `VmHWM`, reset before the engine), including what the process held before
    /// (`rss_before_bytes`); `None` where the system does not report it.
    pub peak_rss_bytes: Option<u64>,
    /// Resident memory of the process before this engine started (the gallery, queries and
    /// exact answers), in bytes.
    pub rss_before_bytes: Option<u64>,
    /// Recall and queries per second at each knob value (empty unless a sweep was asked for).
    pub sweep: Vec<SweepPoint>,
    /// Identification error rates, when the workload's probes are people (`--workload faces`,
    /// or queries with identities).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identification: Option<crate::IdentificationReport>,
    /// A peer's library version (`None` for our engines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Threads of a peer's "all threads" measurements (`None` for our engines: see the
    /// bench's parameters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
}

/// Opening an index from a cold file: what a user sees after a restart. Each figure is the
/// median of several rounds (a cold read swings with the disk).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct ColdStart {
    /// Seconds to load the index.
    pub load_s: f64,
    /// Seconds for the first (headline) query after it.
    pub query_s: f64,
    /// `load_s + query_s`: the time to the first answer.
    pub total_s: f64,
    /// Seconds to read the whole index file sequentially from cold (1 MiB reads).
    pub file_read_s: f64,
}

/// The people an answer names (by `embed_store::person_of`), then its image labels:
/// `Eduardo_Eiras: Eduardo_Eiras1 Eduardo_Eiras3`.
fn who(labels: &[String]) -> String {
    let mut people: Vec<&str> = Vec::new();
    for l in labels {
        let p = embed_store::person_of(l);
        if !people.contains(&p) {
            people.push(p);
        }
    }
    if people.is_empty() {
        return "(nobody above the threshold)".into();
    }
    format!("{}: {}", people.join(", "), labels.join(" "))
}

/// A whole comparison: the headline query and one report per engine.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// Label of the headline query.
    pub query_label: String,
    /// Labels it should find: the same person's images in the gallery.
    pub truth: Vec<String>,
    /// Neighbours asked for.
    pub k: usize,
    /// Cosine threshold of threshold search.
    pub tau: f32,
    /// Gallery size.
    pub gallery_len: usize,
    /// Vector dimension.
    pub dim: usize,
    /// Number of held-out queries recall is measured over.
    pub queries: usize,
    /// One entry per engine, in the order run.
    pub engines: Vec<EngineReport>,
}

/// The bench's JSON file: the [`Report`], what it was measured on and with, and the peers that
/// `cargo xtask peers` merged in. One schema for the bench, the peers (Python and Rust, which
/// print [`EngineReport`]s) and the HTML report: a renamed field fails to compile or to parse,
/// it does not blank a page.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchFile {
    /// Our engines' measurements.
    #[serde(flatten)]
    pub report: Report,
    /// Identifies the data: peers refuse to merge into a file about other data.
    pub dataset_key: String,
    /// Where the data came from (synthetic parameters, or the user's files).
    pub dataset: serde_json::Value,
    /// The bench's command-line parameters.
    pub params: serde_json::Value,
    /// The machine: CPU, cores, kernels chosen, load average at the start.
    pub machine: serde_json::Value,
    /// The peers, in the order run.
    #[serde(default)]
    pub peers: Vec<EngineReport>,
    /// How the peers were run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers_params: Option<serde_json::Value>,
    /// The gallery sharded over Ray (`cargo xtask distributed`), beside each engine unsharded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub distributed: Vec<crate::DistributedPoint>,
    /// `cargo xtask verdict`: the ratios ours/theirs of each of its runs, with their medians.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<serde_json::Value>,
}

impl BenchFile {
    /// Reads a bench JSON file.
    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a bench JSON file: {e}", path.display()))
    }

    /// Writes it as pretty JSON.
    pub fn write(&self, path: &std::path::Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).expect("a bench file always serialises");
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl Report {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// The notebook's table, extended with build time, recall and index size.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "gallery: {} vectors x {} dims; recall over {} held-out queries; k = {}, tau = {}",
            self.gallery_len, self.dim, self.queries, self.k, self.tau
        );
        let _ = writeln!(
            out,
            "headline query: {} (person {})",
            self.query_label,
            embed_store::person_of(&self.query_label)
        );
        let _ = writeln!(out, "truth:          {}\n", self.truth.join(" "));
        let _ = writeln!(
            out,
            "{:<8} {:>10} {:>9} {:>10} {:>9} {:>9} {:>9} {:>11} {:>11} {:>11} {:>9} {:>10} {:>10} {:>9}  who: labels",
            "engine",
            "build (s)",
            "load (s)",
            "query (s)",
            "total (s)",
            "cold load",
            "cold 1st",
            "cold total",
            "file read",
            "median (ms)",
            "recall@k",
            "thr.recall",
            "size (MB)",
            "peak (MB)",
        );
        for e in &self.engines {
            let build = match e.index_origin.as_str() {
                "given" => "given".to_owned(),
                _ => format!("{:.2}{}", e.build_s, if e.build_reused { "*" } else { "" }),
            };
            let peak = e
                .peak_rss_bytes
                .map_or("-".to_owned(), |b| format!("{:.0}", b as f64 / 1e6));
            let cold = |f: fn(&ColdStart) -> f64| {
                e.cold
                    .as_ref()
                    .map_or("-".to_owned(), |c| format!("{:.4}", f(c)))
            };
            let _ = writeln!(
                out,
                "{:<8} {:>10} {:>9.4} {:>10.6} {:>9.4} {:>9} {:>9} {:>11} {:>11} {:>11.3} {:>9.3} {:>10.3} {:>10.1} {:>9}  {}",
                e.name,
                build,
                e.load_s,
                e.query_s,
                e.total_s,
                cold(|c| c.load_s),
                cold(|c| c.query_s),
                cold(|c| c.total_s),
                cold(|c| c.file_read_s),
                e.query_median_s * 1e3,
                e.recall_at_k,
                e.threshold_recall.unwrap_or(f64::NAN),
                e.index_bytes as f64 / 1e6,
                peak,
                who(&e.labels)
            );
        }
        let _ = writeln!(
            out,
            "\nload/query/total: warm (the index file in the page cache), in seconds; cold \
             load/1st/total: the same after evicting the file from the page cache (posix_fadvise \
             DONTNEED); file read: reading the whole file from cold; each cold figure the median \
             of {} alternating reads and opens.{}",
            crate::run::COLD_ROUNDS,
            self.engines
                .iter()
                .find_map(|e| e.warmup.as_ref())
                .map_or(String::new(), |w| format!(
                    " Our engines open with warm-up \"{w}\"."
                ))
        );
        if self
            .engines
            .iter()
            .any(|e| e.build_reused && e.index_origin != "given")
        {
            let _ = writeln!(
                out,
                "\n* index reused from an earlier run with the same data, parameters and build revision (--rebuild to build again)"
            );
        }
        if self.engines.iter().any(|e| e.peak_rss_bytes.is_some()) {
            let _ = writeln!(
                out,
                "peak: the process's peak resident memory during each engine's build, load and \
                 queries (it already held the data: {})",
                self.engines
                    .iter()
                    .filter_map(|e| e.rss_before_bytes.map(|b| format!(
                        "{} {:.0} MB",
                        e.name,
                        b as f64 / 1e6
                    )))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if self.engines.iter().any(|e| !e.sweep.is_empty()) {
            let _ = writeln!(
                out,
                "\nsweep (recall@{} and queries/s over {} queries):",
                self.k, self.queries
            );
            let _ = writeln!(
                out,
                "{:<8} {:>9} {:>8} {:>9} {:>12} {:>12}",
                "engine", "knob", "value", "recall", "qps 1 thread", "qps all"
            );
            for e in &self.engines {
                for p in &e.sweep {
                    let _ = writeln!(
                        out,
                        "{:<8} {:>9} {:>8} {:>9.4} {:>12.0} {:>12.0}",
                        e.name, p.param, p.value, p.recall_at_k, p.qps_1t, p.qps_all
                    );
                }
            }
        }
        if self.engines.iter().any(|e| e.identification.is_some()) {
            out.push_str(&self.identification_table());
        }
        out
    }

    /// Who is this? Rank-n rates, FNIR at fixed FPIR, and what each approximate engine adds
    /// to the exact engine's FNIR.
    fn identification_table(&self) -> String {
        let mut out = String::new();
        let exact = self
            .engines
            .iter()
            .find(|e| e.name == "linear")
            .and_then(|e| e.identification.as_ref());
        let first = self.engines.iter().find_map(|e| e.identification.as_ref());
        let (mated, non_mated) = first.map_or((0, 0), |i| (i.mated, i.non_mated));
        let targets: Vec<f64> = first
            .map(|i| {
                i.at_default
                    .operating_points
                    .iter()
                    .map(|p| p.target_fpir)
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "\nidentification ({mated} mated probes, {non_mated} non-mated; 5 candidates; FNIR at \
             each FPIR with the threshold set on the non-mated probes; +exact: FNIR minus exact \
             search's at the same FPIR (negative when an engine also misses impostors); watchlist: recall@{} \
             of a search restricted to every tenth person, against exact; thr. ms: median threshold search at tau = {}):",
            self.k, self.tau
        );
        let mut header = format!(
            "{:<8} {:>10} {:>7} {:>7}",
            "engine", "knob", "rank-1", "rank-5"
        );
        for t in &targets {
            let _ = write!(header, " {:>18}", format!("FNIR@{t}"));
        }
        let _ = write!(
            header,
            " {:>11} {:>11} {:>10} {:>13} {:>13}",
            "FPIR@tau", "FNIR@tau", "watchlist", "thr.ms mated", "thr.ms non-m."
        );
        let _ = writeln!(out, "{header}");
        for e in &self.engines {
            let Some(id) = &e.identification else {
                continue;
            };
            for p in std::iter::once(&id.at_default).chain(&id.sweep) {
                let mut line = format!(
                    "{:<8} {:>10} {:>7.4} {:>7.4}",
                    e.name,
                    p.knob.as_deref().unwrap_or("exact"),
                    p.rank1,
                    p.rank5
                );
                for (i, op) in p.operating_points.iter().enumerate() {
                    let delta = exact
                        .and_then(|x| x.at_default.operating_points.get(i))
                        .filter(|_| e.name != "linear")
                        .map_or(String::new(), |x| format!("{:+.4}", op.fnir - x.fnir));
                    let _ = write!(
                        line,
                        " {:>18}",
                        format!(
                            "{:.4}{}",
                            op.fnir,
                            if delta.is_empty() {
                                String::new()
                            } else {
                                format!(" ({delta})")
                            }
                        )
                    );
                }
                let _ = writeln!(
                    out,
                    "{line} {:>11.4} {:>11.4} {:>10} {:>13.3} {:>13.3}",
                    p.at_tau.fpir,
                    p.at_tau.fnir,
                    p.watchlist_recall_at_k
                        .map_or("-".to_owned(), |r| format!("{r:.4}")),
                    p.mated_threshold_median_s * 1e3,
                    p.non_mated_threshold_median_s * 1e3
                );
            }
        }
        out
    }
}
