//! `cargo xtask bench` end to end on a small dataset: the JSON it writes, and the build cache.

use std::process::Command;

use serde_json::Value;

fn run_bench(results: &std::path::Path, extra: &[&str]) -> Value {
    let json = results.join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "bench",
            "--distractors",
            "3000",
            "--identities",
            "30",
            "--quiet",
            "--results",
        ])
        .arg(results)
        .arg("--json")
        .arg(&json)
        .args(extra)
        .output()
        .expect("run xtask");
    assert!(
        out.status.success(),
        "xtask bench failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    let report: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    for engine in report["engines"].as_array().unwrap() {
        let name = engine["name"].as_str().unwrap();
        assert!(
            table.lines().any(|l| l.starts_with(name)),
            "table lacks a {name} row:\n{table}"
        );
    }
    report
}

#[test]
fn bench_writes_the_notebook_comparison_as_json_and_reuses_builds() {
    let dir = tempfile::tempdir().unwrap();
    let report = run_bench(dir.path(), &[]);

    assert_eq!(report["query_label"], "id000_1");
    let truth: Vec<&str> = report["truth"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(truth, ["id000_2", "id000_3", "id000_4", "id000_5"]);
    let engines = report["engines"].as_array().unwrap();
    let names: Vec<&str> = engines
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["linear", "hnsw", "forest"]);
    for e in engines {
        for field in ["build_s", "load_s", "query_s", "total_s", "recall_at_k"] {
            let x = e[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{field} missing in {e}"));
            assert!(x.is_finite() && x >= 0.0, "{field} = {x}");
        }
        let total = e["load_s"].as_f64().unwrap() + e["query_s"].as_f64().unwrap();
        assert!((e["total_s"].as_f64().unwrap() - total).abs() < 1e-9);
        assert!(
            e["index_bytes"].as_u64().unwrap() > 3000 * 512 * 4,
            "index smaller than its vectors"
        );
        assert_eq!(e["build_reused"], false);
    }
    // The exact engine finds exactly the headline person's other images, and all of the exact top-k.
    let mut linear_labels: Vec<&str> = engines[0]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    linear_labels.sort_unstable();
    assert_eq!(linear_labels, truth);
    assert_eq!(engines[0]["recall_at_k"], 1.0);
    assert!(
        engines[1]["recall_at_k"].as_f64().unwrap() >= 0.95,
        "hnsw recall {}",
        engines[1]["recall_at_k"]
    );
    // The notebook's .npy files are there for other tools.
    assert!(dir.path().join("search_data.npy").exists() && dir.path().join("queries.npy").exists());

    // A second run with the same data and parameters reuses every build.
    let again = run_bench(dir.path(), &[]);
    for e in again["engines"].as_array().unwrap() {
        assert_eq!(e["build_reused"], true, "{} was rebuilt", e["name"]);
    }
    let rebuilt = run_bench(dir.path(), &["--rebuild", "--engines", "linear"]);
    assert_eq!(rebuilt["engines"][0]["build_reused"], false);
}
