//! Made-up bench results for the tests of the tasks that read them.

use bench_runner::{BenchFile, EngineReport, Report, SweepPoint};
use serde_json::json;

/// An engine's report with the given headline labels and sweep points
/// `(ef, recall@k, q/s on one thread, q/s on all)`.
pub fn engine(name: &str, labels: &[&str], points: &[(usize, f64, f64, f64)]) -> EngineReport {
    EngineReport {
        name: name.into(),
        params: String::new(),
        build_s: 1.5,
        build_reused: false,
        load_s: 0.01,
        query_s: 0.001,
        total_s: 0.011,
        cold: None,
        warmup: None,
        query_median_s: 0.0005,
        labels: labels.iter().map(|l| l.to_string()).collect(),
        recall_at_k: 0.95,
        threshold_recall: None,
        index_bytes: 1000,
        knob: Some("ef=100".into()),
        index_origin: "built".into(),
        index_file: "x".into(),
        peak_rss_bytes: Some(5_000_000),
        rss_before_bytes: None,
        sweep: points
            .iter()
            .map(|&(value, recall_at_k, qps_1t, qps_all)| SweepPoint {
                param: "ef".into(),
                value,
                recall_at_k,
                qps_1t,
                qps_all,
            })
            .collect(),
        version: None,
        threads: None,
        identification: None,
    }
}

/// A bench file over a tiny gallery with our `engines` and the `peers`.
pub fn bench_file(engines: Vec<EngineReport>, peers: Vec<EngineReport>) -> BenchFile {
    BenchFile {
        report: Report {
            query_label: "id000_1".into(),
            truth: vec!["id000_2".into()],
            k: 4,
            tau: 0.35,
            gallery_len: 10,
            dim: 4,
            queries: 2,
            engines,
        },
        dataset_key: "key".into(),
        dataset: json!({"kind": "synthetic"}),
        params: json!({}),
        machine: json!({}),
        peers,
        peers_params: None,
        distributed: Vec::new(),
        verdict: None,
    }
}
