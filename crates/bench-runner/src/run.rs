//! Build (or reuse), save, load, query and score one engine, seen through the registry's
//! object-safe [`Engine`].

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use search_core::{Engine, EngineKind, Error, Hit, Params, Progress, Result, Warmup};

use crate::cache;
use crate::identification::{IdentificationSpec, identification};
use crate::report::{ColdStart, EngineReport};
use crate::rss;
use crate::score::{overlap, ratio, recall};
use crate::sweep::{SweepSpec, sweep};
use crate::workload::Workload;

/// Makes the progress display of one engine's build, given the engine's name: the caller
/// draws (xtask shows a bar); a library only reports.
pub type ProgressFactory = Arc<dyn Fn(&str) -> Box<dyn Progress> + Send + Sync>;

/// How a run treats files and progress.
#[derive(Clone)]
pub struct RunOptions {
    /// Folder for index files; builds are cached there under a key of data and parameters.
    pub results_dir: PathBuf,
    /// Build again even when a cached index exists.
    pub rebuild: bool,
    /// Where builds report progress; `None`: nowhere.
    pub progress: Option<ProgressFactory>,
    /// Also open the index from a cold file (evicted from the page cache) and time the load,
    /// the first query and a plain read of the file ([`EngineReport::cold`]).
    pub cold: bool,
    /// How our engines open their files.
    pub warmup: Warmup,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            results_dir: PathBuf::from("results"),
            rebuild: false,
            progress: None,
            cold: true,
            warmup: Warmup::default(),
        }
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("results_dir", &self.results_dir)
            .field("rebuild", &self.rebuild)
            .field("cold", &self.cold)
            .field("warmup", &self.warmup)
            .finish_non_exhaustive()
    }
}

/// How to run one engine.
#[derive(Clone, Debug)]
pub struct EngineRun {
    /// The engine, from the registry (`search_engines::kind`).
    pub kind: &'static EngineKind,
    /// Build parameters (unset ones: the engine's defaults).
    pub params: Params,
    /// How the headline query is asked.
    pub headline: HeadlineSearch,
    /// Value for the engine's speed/accuracy knob after loading (`None`: the engine's own).
    pub knob: Option<usize>,
}

/// How the headline query is asked: the notebook asked the exact engine for everything above
/// the threshold and the approximate engines for the top k.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadlineSearch {
    /// `search(query, k)`.
    TopK,
    /// `search_threshold(query, tau)`.
    Threshold,
}

/// An index file that already exists, used instead of building one.
pub struct ExistingIndex<'a> {
    /// The file.
    pub path: &'a Path,
    /// Opens it (e.g. the engine's own `open`, or a reader of another library's format). The
    /// index must hold the workload's gallery, row for row.
    pub open: &'a dyn Fn(&Path) -> Result<Box<dyn Engine>>,
}

/// What [`run_engine`] does beyond the notebook's measurements.
#[derive(Default)]
pub struct RunExtras<'a> {
    /// Sweep the engine's knob after the notebook's measurements.
    pub sweep: Option<&'a SweepSpec>,
    /// Use this index file instead of building (or reusing a cached build).
    pub existing_index: Option<ExistingIndex<'a>>,
    /// Measure identification error rates too (probes that are people).
    pub identification: Option<&'a IdentificationSpec>,
}

/// Runs one engine over `workload`: build (or reuse a cached build), save, open it from a cold
/// file and from a warm one (each timed, with the headline query), ask every held-out query
/// (timed one by one, and scored against the exact answers), and optionally sweep its knob.
/// The process's peak resident memory is reset before the engine's build (see [`crate::rss`])
/// and read after its last query, so [`EngineReport::peak_rss_bytes`] covers this engine alone
/// (on top of the workload the process already holds, [`EngineReport::rss_before_bytes`]).
pub fn run_engine(
    workload: &Workload,
    run: &EngineRun,
    options: &RunOptions,
    extras: &RunExtras<'_>,
) -> Result<EngineReport> {
    let rss_reset = rss::reset_peak();
    let rss_before_bytes = rss::current_bytes();
    std::fs::create_dir_all(&options.results_dir)
        .map_err(|e| Error::io(&options.results_dir, e))?;
    let (path, build_s, origin) = match &extras.existing_index {
        Some(existing) => (existing.path.to_path_buf(), 0.0, "given"),
        None => {
            let path = index_path(run.kind, &run.params, workload, &options.results_dir);
            let build_record = path.with_extension("build-seconds");
            let cached = !options.rebuild && path.exists() && build_record.exists();
            let (build_s, origin) = match cached.then(|| read_seconds(&build_record)).flatten() {
                Some(seconds) => (seconds, "cached"),
                None => (build_and_save(workload, run, &path, options)?, "built"),
            };
            std::fs::write(&build_record, build_s.to_string())
                .map_err(|e| Error::io(&build_record, e))?;
            (path, build_s, origin)
        }
    };
    let open = |path: &Path| -> Result<Box<dyn Engine>> {
        let index = match &extras.existing_index {
            Some(existing) => (existing.open)(path)?,
            None => (run.kind.open)(path, options.warmup)?,
        };
        if index.len() != workload.gallery.len() || index.dim() != workload.gallery.dim() {
            return Err(Error::InvalidArgument(format!(
                "{} holds {} vectors of {} dims, but the gallery has {} of {}: an index \
                 given with its file must be built over the same gallery",
                path.display(),
                index.len(),
                index.dim(),
                workload.gallery.len(),
                workload.gallery.dim()
            )));
        }
        Ok(index)
    };
    // The notebook's Load and Query columns: open the file, ask the headline query.
    let open_and_ask = |path: &Path| -> Result<Opened> {
        let start = Instant::now();
        let mut index = open(path)?;
        let load_s = start.elapsed().as_secs_f64();
        if let Some(value) = run.knob {
            index.set_knob(value)?;
        }
        let start = Instant::now();
        let hits = match run.headline {
            HeadlineSearch::TopK => index.search(&workload.headline.vector, workload.k)?,
            HeadlineSearch::Threshold => {
                index.search_threshold(&workload.headline.vector, workload.tau)?
            }
        };
        Ok(Opened {
            index,
            load_s,
            query_s: start.elapsed().as_secs_f64(),
            hits,
        })
    };
    // Cold first: nothing of ours maps the file now, so eviction drops all of it. One cold
    // read swings with the disk (by 5x from one run to the next on a VM), so the file read
    // and the cold open alternate COLD_ROUNDS times and each figure is the median.
    let cold = if options.cold {
        let mut rounds: [Vec<Duration>; 4] = Default::default();
        for _ in 0..COLD_ROUNDS {
            // It leaves the file evicted for the open that follows.
            let file_read_s = cache::read_cold_seconds(&path)?;
            let Opened {
                load_s, query_s, ..
            } = open_and_ask(&path)?;
            for (times, s) in
                rounds
                    .iter_mut()
                    .zip([load_s, query_s, load_s + query_s, file_read_s])
            {
                times.push(Duration::from_secs_f64(s));
            }
        }
        let [load, query, total, read] = rounds.map(|mut t| median_seconds(&mut t).unwrap_or(0.0));
        Some(ColdStart {
            load_s: load,
            query_s: query,
            total_s: total,
            file_read_s: read,
        })
    } else {
        None
    };
    cache::make_warm(&path)?;
    let Opened {
        mut index,
        load_s,
        query_s,
        hits: headline_hits,
    } = open_and_ask(&path)?;

    let mut times = Vec::with_capacity(workload.queries.len());
    let mut all_hits = Vec::with_capacity(workload.queries.len());
    for q in workload.queries.vectors().view().rows() {
        let start = Instant::now();
        let hits = index.search(q, workload.k)?;
        times.push(start.elapsed());
        all_hits.push(hits);
    }

    let (mut thr_found, mut thr_expected) = (0usize, 0usize);
    for (q, exact) in workload
        .queries
        .vectors()
        .view()
        .rows()
        .zip(&workload.exact_threshold)
    {
        let hits = index.search_threshold(q, workload.tau)?;
        thr_found += overlap(&hits, exact);
        thr_expected += exact.len();
    }
    let knob = index.knob().map(|k| format!("{}={}", k.name, k.value));

    let identification = match extras.identification {
        Some(spec) => Some(identification(index.as_mut(), workload, spec)?),
        None => None,
    };
    let sweep_points = match extras.sweep {
        Some(spec) => sweep(index.as_mut(), workload, spec)?,
        None => Vec::new(),
    };
    let peak_rss_bytes = if rss_reset { rss::peak_bytes() } else { None };

    Ok(EngineReport {
        name: run.kind.name.to_owned(),
        params: resolved_params(run.kind, &run.params).join(" "),
        build_s,
        build_reused: origin != "built",
        load_s,
        query_s,
        total_s: load_s + query_s,
        cold,
        warmup: extras
            .existing_index
            .is_none()
            .then(|| options.warmup.to_string()),
        query_median_s: median_seconds(&mut times).unwrap_or(0.0),
        labels: workload.labels_of(&headline_hits),
        recall_at_k: recall(&all_hits, &workload.exact_top_k),
        threshold_recall: Some(ratio(thr_found, thr_expected)),
        index_bytes: std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .len(),
        knob,
        index_origin: origin.to_owned(),
        index_file: path.display().to_string(),
        peak_rss_bytes,
        rss_before_bytes,
        sweep: sweep_points,
        identification,
        version: None,
        threads: None,
    })
}

fn build_and_save(
    workload: &Workload,
    run: &EngineRun,
    path: &Path,
    options: &RunOptions,
) -> Result<f64> {
    let progress: Box<dyn Progress> = match &options.progress {
        Some(make) => make(run.kind.name),
        None => Box::new(()),
    };
    let start = Instant::now();
    let index = (run.kind.build)(workload.gallery.vectors().view(), &run.params, &*progress)?;
    let build_s = start.elapsed().as_secs_f64();
    drop(progress);
    index.save(path)?;
    Ok(build_s)
}

/// Every build parameter of `kind` as `name=value`, given or default, in the engine's order.
fn resolved_params(kind: &EngineKind, params: &Params) -> Vec<String> {
    kind.params
        .iter()
        .map(|s| {
            let given = params.iter().find(|(k, _)| *k == s.name).map(|(_, v)| v);
            format!("{}={}", s.name, given.unwrap_or(s.default))
        })
        .collect()
}

/// Where an index of `kind` with `params` over `workload` is cached: a path that changes with
/// any of them, and with the engine's build revision.
pub(crate) fn index_path(
    kind: &EngineKind,
    params: &Params,
    workload: &Workload,
    dir: &Path,
) -> PathBuf {
    // Every parameter, given or default, so that naming a default changes nothing.
    let resolved = resolved_params(kind, params);
    let mut h = std::hash::DefaultHasher::new();
    (kind.name, kind.build_revision, &workload.key, resolved).hash(&mut h);
    dir.join(format!("{}-{:016x}.idx", kind.name, h.finish()))
}

fn read_seconds(path: &Path) -> Option<f64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Cold opens (and cold file reads) per engine: their medians are reported.
pub const COLD_ROUNDS: usize = 3;

/// The median of `times` in seconds (the upper middle one for an even count), sorting them;
/// `None` for none.
pub(crate) fn median_seconds(times: &mut [Duration]) -> Option<f64> {
    times.sort_unstable();
    times.get(times.len() / 2).map(Duration::as_secs_f64)
}

/// An index just opened, with the notebook's Load and Query times and the headline answer.
struct Opened {
    index: Box<dyn Engine>,
    load_s: f64,
    query_s: f64,
    hits: Vec<Hit>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HeadlineSearch;
    use embed_store::synth::{SynthSpec, generate};

    #[test]
    fn a_cached_build_is_reused_only_by_the_same_build_revision() {
        let spec = SynthSpec {
            identities: 4,
            images_per_identity: 3,
            distractors: 100,
            dim: 32,
            seed: 3,
        };
        let workload = Workload::from_dataset(generate(&spec, &()), "cache-test", 4, 0.35).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let options = RunOptions {
            results_dir: dir.path().into(),
            ..Default::default()
        };
        let linear = search_engines::kind("linear").unwrap();
        // `EngineRun` takes a registry entry, which lives for the whole program.
        let newer: &'static EngineKind = Box::leak(Box::new(EngineKind {
            build_revision: linear.build_revision + 1,
            ..*linear
        }));
        let reused = |kind: &'static EngineKind| {
            let run = EngineRun {
                kind,
                params: Params::new(),
                headline: HeadlineSearch::Threshold,
                knob: None,
            };
            let report = run_engine(&workload, &run, &options, &RunExtras::default()).unwrap();
            assert_eq!(report.recall_at_k, 1.0);
            report.build_reused
        };
        assert!(!reused(linear), "first run builds");
        assert!(reused(linear), "same revision: the cached build");
        assert!(!reused(newer), "a newer revision builds again");
        assert!(reused(newer), "and then caches its own build");
        assert!(
            reused(linear),
            "the older build is still there for the older revision"
        );
    }
}
