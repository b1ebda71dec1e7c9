//! Build (or reuse), save, load, query and score one engine.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use embed_store::{Error, Hit, Result, SearchIndex, Warmup};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cache;
use crate::report::{ColdStart, EngineReport};
use crate::rss;
use crate::sweep::{SweepSpec, sweep};
use crate::workload::Workload;

/// How a run treats files and the terminal.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Folder for index files; builds are cached there under a key of data and parameters.
    pub results_dir: PathBuf,
    /// Build again even when a cached index exists.
    pub rebuild: bool,
    /// Show progress bars on stderr.
    pub progress: bool,
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
            progress: false,
            cold: true,
            warmup: Warmup::default(),
        }
    }
}

/// How to run one engine.
#[derive(Clone, Debug)]
pub struct EngineRun<P> {
    /// Build parameters.
    pub params: P,
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

/// Runs engine `E` over `workload`: build (or reuse a cached build), save, load back (timed),
/// ask the headline query (timed), then every held-out query (timed one by one, and scored
/// against the exact answers).
pub fn run_engine<E: SearchIndex>(
    workload: &Workload,
    run: &EngineRun<E::Params>,
    options: &RunOptions,
) -> Result<EngineReport> {
    run_engine_with::<E>(workload, run, options, &RunExtras::default())
}

/// An index file that already exists, used instead of building one.
pub struct ExistingIndex<'a, E> {
    /// The file.
    pub path: &'a Path,
    /// Opens it (e.g. [`SearchIndex::load`], or an engine's reader of another library's
    /// format). The index must hold the workload's gallery, row for row.
    pub open: &'a dyn Fn(&Path) -> Result<E>,
}

/// What [`run_engine_with`] does beyond [`run_engine`].
pub struct RunExtras<'a, E> {
    /// Sweep the engine's knob after the notebook's measurements.
    pub sweep: Option<&'a SweepSpec>,
    /// Use this index file instead of building (or reusing a cached build).
    pub existing_index: Option<ExistingIndex<'a, E>>,
}

impl<E> Default for RunExtras<'_, E> {
    fn default() -> Self {
        RunExtras {
            sweep: None,
            existing_index: None,
        }
    }
}

/// [`run_engine`], plus a knob sweep ([`crate::SweepPoint`]s in [`EngineReport::sweep`]) and
/// the option of an existing index file. The process's peak resident memory is reset before
/// the engine's build (see [`crate::rss`]) and read after its last query, so
/// [`EngineReport::peak_rss_bytes`] covers this engine alone (on top of the workload the
/// process already holds, [`EngineReport::rss_before_bytes`]).
pub fn run_engine_with<E: SearchIndex>(
    workload: &Workload,
    run: &EngineRun<E::Params>,
    options: &RunOptions,
    extras: &RunExtras<'_, E>,
) -> Result<EngineReport> {
    let rss_reset = rss::reset_peak();
    let rss_before_bytes = rss::current_bytes();
    std::fs::create_dir_all(&options.results_dir)
        .map_err(|e| Error::io(&options.results_dir, e))?;
    let (path, build_s, origin) = match &extras.existing_index {
        Some(existing) => (existing.path.to_path_buf(), 0.0, "given"),
        None => {
            let path = index_path::<E>(workload, &run.params, &options.results_dir);
            let build_record = path.with_extension("build-seconds");
            let cached = !options.rebuild && path.exists() && build_record.exists();
            let (build_s, origin) = match cached.then(|| read_seconds(&build_record)).flatten() {
                Some(seconds) => (seconds, "cached"),
                None => (
                    build_and_save::<E>(workload, &run.params, &path, options)?,
                    "built",
                ),
            };
            std::fs::write(&build_record, build_s.to_string())
                .map_err(|e| Error::io(&build_record, e))?;
            (path, build_s, origin)
        }
    };
    let open = |path: &Path| -> Result<E> {
        let index = match &extras.existing_index {
            Some(existing) => (existing.open)(path)?,
            None => E::load_with(path, options.warmup)?,
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
    let open_and_ask = |path: &Path| -> Result<(E, f64, f64, Vec<Hit>)> {
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
        Ok((index, load_s, start.elapsed().as_secs_f64(), hits))
    };
    // Cold first: nothing of ours maps the file now, so eviction drops all of it.
    let cold = if options.cold {
        let file_read_s = cache::read_cold_seconds(&path)?;
        cache::evict(&path)?;
        let (index, load_s, query_s, _) = open_and_ask(&path)?;
        drop(index);
        Some(ColdStart {
            load_s,
            query_s,
            total_s: load_s + query_s,
            file_read_s,
        })
    } else {
        None
    };
    cache::make_warm(&path)?;
    let (mut index, load_s, query_s, headline_hits) = open_and_ask(&path)?;

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

    let sweep_points = match extras.sweep {
        Some(spec) => sweep(&mut index, workload, spec)?,
        None => Vec::new(),
    };
    let peak_rss_bytes = if rss_reset { rss::peak_bytes() } else { None };

    Ok(EngineReport {
        name: E::NAME.to_owned(),
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
        query_median_s: median(&mut times).as_secs_f64(),
        labels: workload.labels_of(&headline_hits),
        recall_at_k: recall(&all_hits, &workload.exact_top_k),
        threshold_recall: ratio(thr_found, thr_expected),
        index_bytes: std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .len(),
        knob,
        index_origin: origin.to_owned(),
        index_file: path.display().to_string(),
        peak_rss_bytes,
        rss_before_bytes,
        sweep: sweep_points,
    })
}

/// Mean fraction of each query's exact top-k found in its hits.
pub(crate) fn recall(hits: &[Vec<Hit>], exact: &[Vec<u32>]) -> f64 {
    let found: usize = hits.iter().zip(exact).map(|(h, e)| overlap(h, e)).sum();
    let expected: usize = exact.iter().map(Vec::len).sum();
    ratio(found, expected)
}

fn build_and_save<E: SearchIndex>(
    workload: &Workload,
    params: &E::Params,
    path: &Path,
    options: &RunOptions,
) -> Result<f64> {
    let bar = if options.progress {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>8} build [{bar:40.cyan/blue}] {pos}/{len} rows ({elapsed}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(E::NAME);
    let start = Instant::now();
    let index = E::build(workload.gallery.vectors().view(), params, &bar)?;
    let build_s = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    index.save(path)?;
    Ok(build_s)
}

/// Where engine `E`'s index over `workload` with `params` is cached.
pub(crate) fn index_path<E: SearchIndex>(
    workload: &Workload,
    params: &E::Params,
    dir: &Path,
) -> PathBuf {
    let mut h = std::hash::DefaultHasher::new();
    (E::NAME, &workload.key, format!("{params:?}")).hash(&mut h);
    dir.join(format!("{}-{:016x}.idx", E::NAME, h.finish()))
}

fn read_seconds(path: &Path) -> Option<f64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn overlap(hits: &[Hit], exact: &[u32]) -> usize {
    hits.iter().filter(|h| exact.contains(&h.id)).count()
}

fn ratio(found: usize, expected: usize) -> f64 {
    if expected == 0 {
        1.0
    } else {
        found as f64 / expected as f64
    }
}

fn median(times: &mut [Duration]) -> Duration {
    if times.is_empty() {
        return Duration::ZERO;
    }
    times.sort_unstable();
    times[times.len() / 2]
}
