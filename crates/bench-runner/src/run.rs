//! Build (or reuse), save, load, query and score one engine.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use embed_store::{Error, Hit, Result, SearchIndex};
use indicatif::{ProgressBar, ProgressStyle};

use crate::report::EngineReport;
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
    std::fs::create_dir_all(&options.results_dir)
        .map_err(|e| Error::io(&options.results_dir, e))?;
    let path = index_path::<E>(workload, &run.params, &options.results_dir);
    let build_record = path.with_extension("build-seconds");
    let cached = !options.rebuild && path.exists() && build_record.exists();
    let (build_s, build_reused) = match cached.then(|| read_seconds(&build_record)).flatten() {
        Some(seconds) => (seconds, true),
        None => (
            build_and_save::<E>(workload, &run.params, &path, options)?,
            false,
        ),
    };
    std::fs::write(&build_record, build_s.to_string()).map_err(|e| Error::io(&build_record, e))?;

    let start = Instant::now();
    let mut index = E::load(&path)?;
    let load_s = start.elapsed().as_secs_f64();
    if let Some(value) = run.knob {
        index.set_knob(value)?;
    }

    let start = Instant::now();
    let headline_hits = match run.headline {
        HeadlineSearch::TopK => index.search(&workload.headline.vector, workload.k)?,
        HeadlineSearch::Threshold => {
            index.search_threshold(&workload.headline.vector, workload.tau)?
        }
    };
    let query_s = start.elapsed().as_secs_f64();

    let mut times = Vec::with_capacity(workload.queries.len());
    let mut found = 0usize;
    for (q, exact) in workload
        .queries
        .vectors()
        .view()
        .rows()
        .zip(&workload.exact_top_k)
    {
        let start = Instant::now();
        let hits = index.search(q, workload.k)?;
        times.push(start.elapsed());
        found += overlap(&hits, exact);
    }
    let expected: usize = workload.exact_top_k.iter().map(Vec::len).sum();

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

    Ok(EngineReport {
        name: E::NAME.to_owned(),
        build_s,
        build_reused,
        load_s,
        query_s,
        total_s: load_s + query_s,
        query_median_s: median(&mut times).as_secs_f64(),
        labels: workload.labels_of(&headline_hits),
        recall_at_k: ratio(found, expected),
        threshold_recall: ratio(thr_found, thr_expected),
        index_bytes: std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .len(),
        knob: index.knob().map(|k| format!("{}={}", k.name, k.value)),
    })
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
