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
    /// Recalls at which engines are compared (the ratio table's 0.90 and 0.99): where the
    /// first round's recall crosses one between two knob values, [`SweepSpec::refine_points`]
    /// more values between them are measured too, so that the best q/s at that recall comes
    /// from near the crossing rather than from wherever the grid happened to put a point.
    pub refine_at: Vec<f64>,
    /// Values added between the two around each crossing (`0`: none).
    pub refine_points: usize,
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
            refine_at: vec![0.90, 0.99],
            refine_points: 3,
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
/// on a one-thread pool and on an all-threads pool, and scores the answers; adds the values
/// [`below`] the grid and between those around each crossing of `spec.refine_at`; then times
/// every point again for
/// `spec.rounds` rounds in all, keeping each point's fastest pass. Returns the points in
/// knob order; leaves the knob at the last value visited.
pub fn sweep(
    index: &mut dyn Engine,
    workload: &Workload,
    spec: &SweepSpec,
) -> Result<Vec<SweepPoint>> {
    let one = pool(1)?;
    let all = pool(spec.threads)?;
    let knob = index.knob().is_some();
    let param = index.knob().map_or("exact", |k| k.name).to_owned();
    let mut measure = |value: Option<usize>| -> Result<SweepPoint> {
        if let Some(v) = value {
            index.set_knob(v)?;
        }
        let (recall_at_k, qps_1t) = time_queries(index, workload, &one, spec)?;
        let (_, qps_all) = time_queries(index, workload, &all, spec)?;
        Ok(SweepPoint {
            param: param.clone(),
            value: value.unwrap_or(0),
            recall_at_k,
            qps_1t,
            qps_all,
        })
    };
    let mut points: Vec<SweepPoint> = Vec::new();
    if spec.values.is_empty() || !knob {
        points.push(measure(None)?);
    } else {
        for &v in &spec.values {
            let p = measure(Some(v))?;
            let done = spec.stop_at_recall.is_some_and(|r| p.recall_at_k >= r);
            points.push(p);
            if done {
                break;
            }
        }
        if spec.refine_points > 0 {
            while let Some(v) = below(&points, &spec.refine_at, workload.k) {
                points.push(measure(Some(v))?);
            }
        }
        for v in refinements(&points, &spec.refine_at, spec.refine_points) {
            points.push(measure(Some(v))?);
        }
    }
    for _ in 1..spec.rounds.max(1) {
        for p in &mut points {
            let again = measure(knob.then_some(p.value))?;
            p.qps_1t = p.qps_1t.max(again.qps_1t);
            p.qps_all = p.qps_all.max(again.qps_all);
        }
    }
    points.sort_by_key(|p| p.value);
    Ok(points)
}

/// A knob value below every measured one, when the lowest already reaches one of `targets`
/// (that crossing lies below the grid, where it cannot be refined): half the lowest, but not
/// under `floor` (the k asked for); `None` when there is nothing lower to try.
pub fn below(points: &[SweepPoint], targets: &[f64], floor: usize) -> Option<usize> {
    let lowest = points.iter().min_by_key(|p| p.value)?;
    let reached = targets.iter().any(|&t| lowest.recall_at_k >= t);
    let v = (lowest.value / 2).max(floor);
    (reached && v < lowest.value).then_some(v)
}

/// Knob values to measure between the two measured ones around each crossing of `targets`:
/// for a target, the largest value whose recall is below it and the next larger value, when
/// that one reaches it; `n` values evenly between them (fewer when they are close), none
/// already measured.
pub fn refinements(points: &[SweepPoint], targets: &[f64], n: usize) -> Vec<usize> {
    let mut sorted: Vec<&SweepPoint> = points.iter().collect();
    sorted.sort_by_key(|p| p.value);
    let mut out: Vec<usize> = Vec::new();
    for &target in targets {
        let Some(hi) = sorted.iter().position(|p| p.recall_at_k >= target) else {
            continue;
        };
        let Some(lo) = hi.checked_sub(1).map(|i| sorted[i]) else {
            continue;
        };
        let (a, b) = (lo.value, sorted[hi].value);
        for i in 1..=n {
            let v = a + ((b - a) * i).div_ceil(n + 1);
            if v > a && v < b && !out.contains(&v) && !sorted.iter().any(|p| p.value == v) {
                out.push(v);
            }
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(points: &[(usize, f64)]) -> Vec<SweepPoint> {
        points
            .iter()
            .map(|&(value, recall_at_k)| SweepPoint {
                param: "ef".into(),
                value,
                recall_at_k,
                qps_1t: 1.0,
                qps_all: 1.0,
            })
            .collect()
    }

    #[test]
    fn refinement_fills_the_gap_around_each_crossing_only() {
        // 0.90 is crossed between 10 and 20, 0.99 between 160 and 200.
        let p = at(&[
            (10, 0.85),
            (20, 0.93),
            (160, 0.9825),
            (200, 0.9975),
            (250, 1.0),
        ]);
        assert_eq!(
            refinements(&p, &[0.90, 0.99], 3),
            [13, 15, 18, 170, 180, 190]
        );
        // In any order: the gap is between the nearest values either side.
        let mut q = at(&[(200, 0.9975), (160, 0.9825), (180, 0.985)]);
        q.reverse();
        assert_eq!(refinements(&q, &[0.99], 3), [185, 190, 195]);
        // Close values give fewer, each once; one apart, none.
        assert_eq!(
            refinements(&at(&[(100, 0.95), (102, 0.99)]), &[0.99], 3),
            [101]
        );
        assert!(refinements(&at(&[(24, 0.98), (25, 0.995)]), &[0.99], 3).is_empty());
        // No crossing: the first value already reaches it, or none does.
        assert!(refinements(&at(&[(10, 0.995), (20, 1.0)]), &[0.99], 3).is_empty());
        assert!(refinements(&at(&[(10, 0.5), (20, 0.6)]), &[0.99], 3).is_empty());
        assert!(refinements(&p, &[0.99], 0).is_empty());
    }

    #[test]
    fn a_crossing_below_the_grid_is_looked_for_by_halving_down_to_k() {
        // ef 10 already reaches 0.90: try 5.
        assert_eq!(
            below(&at(&[(20, 0.95), (10, 0.91)]), &[0.90, 0.99], 4),
            Some(5)
        );
        // Not under k, and nothing once k is measured.
        assert_eq!(below(&at(&[(6, 0.92)]), &[0.90], 4), Some(4));
        assert_eq!(below(&at(&[(4, 0.92), (6, 0.95)]), &[0.90], 4), None);
        // The lowest falls short of every target: its crossings are above, in the grid.
        assert_eq!(
            below(&at(&[(10, 0.85), (20, 0.99)]), &[0.90, 0.99], 4),
            None
        );
        assert_eq!(below(&[], &[0.90], 4), None);
    }
}
