//! Speed/accuracy sweeps: recall@k and queries per second at each value of an engine's knob,
//! on one thread and on every core.

use std::time::{Duration, Instant};

use rayon::prelude::*;
use search_core::{Engine, Error, Hit, Result};
use serde::{Deserialize, Serialize};

use crate::workload::Workload;

/// Which knob values a sweep visits and how long it times each.
#[derive(Clone, Debug)]
pub struct SweepSpec {
    /// Knob values, in the order visited (e.g. HNSW `ef` 10, 20, 40, ...). Empty for an engine
    /// without a knob: then the sweep has one point, at the engine's own setting.
    pub values: Vec<usize>,
    /// Stop after the first value whose recall@k reaches this (e.g. 0.995), when set.
    pub stop_at_recall: Option<f64>,
    /// Each point is timed over repeated passes through all queries until this much time has
    /// gone by (at least one pass, at most [`SweepSpec::max_passes`]); the fastest pass counts
    /// (on a shared machine, the one least disturbed by other processes).
    pub min_seconds: f64,
    /// Most passes per point and thread count, in one round.
    pub max_passes: usize,
    /// Times the whole list of values is visited; each point keeps its fastest pass over all
    /// rounds. On a machine whose speed drifts for seconds at a time (a shared cache, other
    /// tenants), one slow stretch then no longer lands on one value alone.
    pub rounds: usize,
    /// Threads of the "all threads" measurement (`0`: every core rayon sees).
    pub threads: usize,
}

impl Default for SweepSpec {
    fn default() -> Self {
        SweepSpec {
            values: Vec::new(),
            stop_at_recall: None,
            min_seconds: 0.5,
            max_passes: 25,
            rounds: 3,
            threads: 0,
        }
    }
}

/// One point of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// The knob's name (`"ef"`, `"search_k"`), or `"exact"` for an engine without one.
    pub param: String,
    /// The knob's value (0 for `"exact"`).
    pub value: usize,
    /// Mean fraction of the exact top-k found, over all held-out queries.
    pub recall_at_k: f64,
    /// Queries per second on one thread (queries asked one after another).
    pub qps_1t: f64,
    /// Queries per second with the queries split across all threads.
    pub qps_all: f64,
}

/// Runs the sweep `spec` over `index`: for each knob value, sets it, asks every held-out query
/// on a one-thread pool and on an all-threads pool, and scores the answers; then visits the
/// values again for `spec.rounds` rounds in all, keeping each point's fastest pass. Leaves the
/// knob at the last value visited.
pub fn sweep(
    index: &mut dyn Engine,
    workload: &Workload,
    spec: &SweepSpec,
) -> Result<Vec<SweepPoint>> {
    let one = pool(1)?;
    let all = pool(spec.threads)?;
    let param = index.knob().map_or("exact", |k| k.name).to_owned();
    let values: Vec<Option<usize>> = if spec.values.is_empty() || index.knob().is_none() {
        vec![None]
    } else {
        spec.values.iter().copied().map(Some).collect()
    };
    let mut points: Vec<SweepPoint> = Vec::with_capacity(values.len());
    for round in 0..spec.rounds.max(1) {
        for (i, value) in values.iter().enumerate() {
            // Later rounds revisit only the values the first one measured.
            if round > 0 && i >= points.len() {
                break;
            }
            if let Some(v) = value {
                index.set_knob(*v)?;
            }
            let (recall_at_k, qps_1t) = time_queries(index, workload, &one, spec)?;
            let (_, qps_all) = time_queries(index, workload, &all, spec)?;
            if round > 0 {
                let p = &mut points[i];
                p.qps_1t = p.qps_1t.max(qps_1t);
                p.qps_all = p.qps_all.max(qps_all);
                continue;
            }
            points.push(SweepPoint {
                param: param.clone(),
                value: value.unwrap_or(0),
                recall_at_k,
                qps_1t,
                qps_all,
            });
            if spec.stop_at_recall.is_some_and(|r| recall_at_k >= r) {
                break;
            }
        }
    }
    Ok(points)
}

fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("sweep-{i}"))
        .build()
        .map_err(|e| Error::InvalidArgument(format!("cannot start a thread pool: {e}")))
}

/// Recall@k of the first pass and the queries per second of the fastest pass.
fn time_queries(
    index: &dyn Engine,
    workload: &Workload,
    pool: &rayon::ThreadPool,
    spec: &SweepSpec,
) -> Result<(f64, f64)> {
    let rows: Vec<&[f32]> = workload.queries.vectors().view().rows().collect();
    if rows.is_empty() {
        return Err(Error::InvalidArgument(
            "a sweep needs at least one query".into(),
        ));
    }
    let k = workload.k;
    let started = Instant::now();
    let mut passes: Vec<Duration> = Vec::new();
    let mut recall = None;
    while passes.is_empty()
        || (started.elapsed().as_secs_f64() < spec.min_seconds && passes.len() < spec.max_passes)
    {
        let start = Instant::now();
        let hits: Vec<Vec<Hit>> = pool.install(|| {
            rows.par_iter()
                .map(|q| index.search(q, k))
                .collect::<Result<Vec<_>>>()
        })?;
        passes.push(start.elapsed());
        if recall.is_none() {
            recall = Some(crate::score::recall(&hits, &workload.exact_top_k));
        }
    }
    let fastest = passes
        .iter()
        .min()
        .map_or(1e-9, |d| d.as_secs_f64().max(1e-9));
    Ok((recall.unwrap_or(0.0), rows.len() as f64 / fastest))
}
