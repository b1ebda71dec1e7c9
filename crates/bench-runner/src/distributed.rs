//! Figures of a gallery sharded over a Ray cluster (`cargo xtask distributed`, measured by
//! scripts/distributed_bench.py through `face_search.distributed`), beside the same engine
//! unsharded in one process.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// One configuration: an engine unsharded (`mode == "local"`) or sharded over Ray.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DistributedPoint {
    /// Engine name ("linear", "hnsw", "forest").
    pub engine: String,
    /// Its build parameters (`name=value`, space-separated).
    pub params: String,
    /// Its speed/accuracy knob, e.g. "ef=100".
    pub knob: Option<String>,
    /// `"local"`: one index in the measuring process, no Ray; `"ray"`: shards served by Ray
    /// actors.
    pub mode: String,
    /// Shards the gallery is split into (1 for local).
    pub shards: usize,
    /// Replicas of each shard (1 for local).
    pub replicas: usize,
    /// Ray nodes of the cluster (0 for local).
    pub nodes: usize,
    /// Neighbours asked for.
    pub k: usize,
    /// Queries measured.
    pub queries: usize,
    /// Seconds to build the index or all shards (from the cache when reused).
    pub build_s: f64,
    /// Seconds to open it: load the index, or start the actors and load every shard.
    pub open_s: f64,
    /// Queries per second, one query per call.
    pub single_qps: f64,
    /// Queries per second, `batch_size` queries per call.
    pub batch_qps: f64,
    /// Queries per batch call.
    pub batch_size: usize,
    /// Median seconds of a single query.
    pub p50_s: f64,
    /// 99th percentile seconds of a single query.
    pub p99_s: f64,
    /// Mean fraction of the exact top-k found.
    pub recall_at_k: f64,
}

/// The points as a text table, one line each, with each Ray point's single-query q/s as a
/// fraction of the same engine's local figure.
pub fn distributed_table(points: &[DistributedPoint]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<7} {:<8} {:>6} {:>8} {:>5} {:>9} {:>12} {:>10} {:>10} {:>10} {:>9} {:>9}",
        "engine",
        "mode",
        "shards",
        "replicas",
        "nodes",
        "recall@k",
        "1-query q/s",
        "vs local",
        "batch q/s",
        "p50 (ms)",
        "p99 (ms)",
        "open (s)"
    );
    for p in points {
        let local = points
            .iter()
            .find(|l| l.engine == p.engine && l.mode == "local" && l.knob == p.knob);
        let ratio = match local {
            Some(l) if p.mode != "local" && l.single_qps > 0.0 => {
                format!("{:.3}x", p.single_qps / l.single_qps)
            }
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<7} {:<8} {:>6} {:>8} {:>5} {:>9.4} {:>12.0} {:>10} {:>10.0} {:>10.3} {:>9.3} {:>9.2}",
            p.engine,
            p.mode,
            p.shards,
            p.replicas,
            p.nodes,
            p.recall_at_k,
            p.single_qps,
            ratio,
            p.batch_qps,
            p.p50_s * 1e3,
            p.p99_s * 1e3,
            p.open_s
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(mode: &str, shards: usize, qps: f64) -> DistributedPoint {
        DistributedPoint {
            engine: "hnsw".into(),
            params: "m=48".into(),
            knob: Some("ef=100".into()),
            mode: mode.into(),
            shards,
            replicas: 1,
            nodes: if mode == "local" { 0 } else { 2 },
            k: 4,
            queries: 200,
            build_s: 1.0,
            open_s: 0.5,
            single_qps: qps,
            batch_qps: 2.0 * qps,
            batch_size: 200,
            p50_s: 1.0 / qps,
            p99_s: 2.0 / qps,
            recall_at_k: 0.99,
        }
    }

    #[test]
    fn ray_rows_are_compared_with_the_local_row() {
        let table = distributed_table(&[point("local", 1, 1000.0), point("ray", 2, 250.0)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].contains(" - "), "{}", lines[1]);
        assert!(lines[2].contains("0.250x"), "{}", lines[2]);
    }

    #[test]
    fn points_read_back_from_the_scripts_json() {
        let line = r#"{"engine": "linear", "params": "", "knob": null, "mode": "ray", "shards": 4,
            "replicas": 2, "nodes": 2, "k": 4, "queries": 200, "build_s": 1.5, "open_s": 2.0,
            "single_qps": 300.0, "batch_qps": 900.0, "batch_size": 200, "p50_s": 0.003,
            "p99_s": 0.01, "recall_at_k": 1.0}"#;
        let p: DistributedPoint = serde_json::from_str(line).unwrap();
        assert_eq!((p.shards, p.replicas, p.knob), (4, 2, None));
    }
}
