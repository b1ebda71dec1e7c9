//! `cargo xtask bench` end to end on a small dataset: the JSON it writes, and the build cache.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn run_bench(results: &Path, extra: &[&str]) -> Value {
    let json = results.join("report.json");
    let table = test_support::stdout_of(
        Command::new(env!("CARGO_BIN_EXE_xtask"))
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
            .args(extra),
        "xtask bench",
    );
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

    // Annoy's own leaves make another forest: built anew, recorded, with fewer (larger) leaves.
    let annoy_leaves = run_bench(dir.path(), &["--engines", "forest", "--leaf", "annoy"]);
    let forest = &annoy_leaves["engines"][0];
    assert_eq!(forest["build_reused"], false);
    let params = |e: &Value| e["params"].as_str().unwrap().to_owned();
    assert!(
        params(forest).contains("leaf_size=annoy"),
        "{}",
        params(forest)
    );
    assert!(
        params(&engines[2]).contains("leaf_size=64"),
        "{}",
        params(&engines[2])
    );
    assert!(
        forest["index_bytes"].as_u64().unwrap() < engines[2]["index_bytes"].as_u64().unwrap(),
        "{} vs {}",
        forest["index_bytes"],
        engines[2]["index_bytes"]
    );
}

fn finite(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} missing or not a number: {v}"));
    assert!(x.is_finite(), "{what} = {x}");
    x
}

#[test]
fn sweep_own_data_given_index_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let report_dir = dir.path().join("report");
    let report = run_bench(
        dir.path(),
        &[
            "--sweep",
            "--sweep-min-seconds",
            "0.01",
            "--sweep-ef",
            "10,40,100",
            "--sweep-search-k",
            "100,1000,100000",
            "--report",
            report_dir.to_str().unwrap(),
        ],
    );
    for e in report["engines"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        let sweep = e["sweep"].as_array().unwrap();
        // Up to 3 values are added around each crossing of recall 0.90 and 0.99, and halves
        // of the first value down to k while it already reaches one.
        let (param, len, given) = match name {
            "linear" => ("exact", 1..=1, &[0][..]),
            "hnsw" => ("ef", 3..=11, &[10, 40, 100][..]),
            // The forest's sweep may stop early once recall reaches --sweep-stop-recall.
            _ => ("search_k", 1..=15, &[100][..]),
        };
        assert!(len.contains(&sweep.len()), "{name}: {} points", sweep.len());
        let values: Vec<u64> = sweep.iter().map(|p| p["value"].as_u64().unwrap()).collect();
        assert!(
            values.is_sorted(),
            "{name}: points in knob order: {values:?}"
        );
        for v in given {
            assert!(values.contains(v), "{name}: {v} measured: {values:?}");
        }
        for p in sweep {
            assert_eq!(p["param"], param);
            assert!(p["value"].is_u64());
            let r = finite(&p["recall_at_k"], "recall_at_k");
            assert!((0.0..=1.0).contains(&r), "{name} recall {r}");
            assert!(finite(&p["qps_1t"], "qps_1t") > 0.0);
            assert!(finite(&p["qps_all"], "qps_all") > 0.0);
        }
        // Linux reports the peak resident memory; it is at least the data the process holds.
        if cfg!(target_os = "linux") {
            let peak = e["peak_rss_bytes"].as_u64().expect("peak_rss_bytes");
            assert!(peak >= 3000 * 512 * 4, "{name} peak {peak}");
        }
        assert_eq!(e["index_origin"], "built");
    }
    assert_eq!(report["engines"][0]["sweep"][0]["recall_at_k"], 1.0);
    assert_eq!(report["dataset"]["kind"], "synthetic");
    assert!(report["machine"]["threads"].as_u64().unwrap() >= 1);
    // Three numbers from /proc/loadavg, taken before the run.
    let load = report["machine"]["load_average"]
        .as_str()
        .expect("load_average");
    assert_eq!(
        load.split(' ').filter(|f| f.parse::<f64>().is_ok()).count(),
        3,
        "{load}"
    );
    let page = std::fs::read_to_string(report_dir.join("report.html")).unwrap();
    assert!(page.contains("<svg") && page.contains("hnsw (ours)"));

    // Own data: the files the bench wrote, as a user would pass them, with the HNSW index
    // built above given instead of built again.
    let hnsw_file = report["engines"][1]["index_file"].as_str().unwrap();
    let mine = bench_own_data(
        dir.path(),
        "linear,hnsw",
        Path::new(hnsw_file),
        &dir.path().join("own"),
    );
    assert_eq!(mine["dataset"]["kind"], "files");
    // The headline is the first query, id000_q; its truth the person's gallery images (the
    // synthetic gallery holds 4 of them: image 1 is the synthetic headline query).
    assert_eq!(mine["query_label"], "id000_q");
    assert_eq!(mine["truth"], report["truth"]);
    assert_eq!(mine["engines"][0]["recall_at_k"], 1.0);
    assert_eq!(mine["engines"][1]["index_origin"], "given");
    assert_eq!(mine["engines"][1]["build_s"], 0.0);
    assert_eq!(
        mine["engines"][1]["recall_at_k"],
        report["engines"][1]["recall_at_k"]
    );

    // An index over another gallery is refused with a clear message.
    let other = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "bench",
            "--quiet",
            "--engines",
            "hnsw",
            "--distractors",
            "100",
            "--identities",
            "5",
            "--index",
            &format!("hnsw={hnsw_file}"),
            "--results",
        ])
        .arg(dir.path().join("other"))
        .output()
        .unwrap();
    assert!(!other.status.success());
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(err.contains("same gallery"), "{err}");
}

#[test]
fn an_index_written_by_python_hnswlib_is_used_as_given() {
    let dir = tempfile::tempdir().unwrap();
    run_bench(dir.path(), &["--engines", "linear"]);
    let py_index = dir.path().join("notebook-hnsw.bin");
    let rows = test_support::run_python(
        "fixtures/scripts/make_hnswlib_index.py",
        [
            dir.path().join("search_data.npy").as_os_str(),
            py_index.as_os_str(),
        ],
    );
    assert_eq!(rows.trim(), "3149");
    let report = bench_own_data(dir.path(), "hnsw", &py_index, &dir.path().join("given"));
    let hnsw = &report["engines"][0];
    assert_eq!(hnsw["index_origin"], "given");
    assert!(hnsw["recall_at_k"].as_f64().unwrap() >= 0.9, "{hnsw}");
}

/// Runs the bench on the gallery and queries an earlier run wrote to `data`, as a user would
/// pass their own files, with `hnsw_index` given; returns the JSON report.
fn bench_own_data(data: &Path, engines: &str, hnsw_index: &Path, results: &Path) -> Value {
    let json = results.join("own.json");
    test_support::stdout_of(
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["bench", "--quiet", "--engines", engines, "--gallery"])
            .arg(data.join("search_data.npy"))
            .arg("--queries")
            .arg(data.join("queries.npy"))
            .arg("--index")
            .arg(format!("hnsw={}", hnsw_index.display()))
            .arg("--results")
            .arg(results)
            .arg("--json")
            .arg(&json),
        "xtask bench on own data",
    );
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

/// `--workload faces`: every engine gets identification figures, exact search's are the
/// floor the approximate engines' FNIR is compared with, and the page has the DET plot.
#[test]
fn faces_workload_reports_identification_errors() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("faces.json");
    let table = test_support::stdout_of(
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args([
                "bench",
                "--workload",
                "faces",
                "--people",
                "600",
                "--images-per-person",
                "3",
                "--mated",
                "150",
                "--non-mated",
                "150",
                "--dim",
                "128",
                "--quiet",
                "--no-cold",
                "--results",
            ])
            .arg(dir.path())
            .arg("--json")
            .arg(&json)
            .arg("--report")
            .arg(dir.path().join("report")),
        "xtask bench --workload faces",
    );
    assert!(
        table.contains("identification (150 mated probes, 150 non-mated"),
        "{table}"
    );
    assert!(
        table.contains("headline query: p00000_q (person p00000)"),
        "{table}"
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["dataset"]["kind"], "faces");
    for e in report["engines"].as_array().unwrap() {
        let id = &e["identification"];
        assert_eq!(id["mated"], 150, "{}", e["name"]);
        assert_eq!(id["non_mated"], 150);
        let p = &id["at_default"];
        let (rank1, rank5) = (finite(&p["rank1"], "rank1"), finite(&p["rank5"], "rank5"));
        assert!(rank1 <= rank5 && rank5 <= 1.0);
        assert!(rank1 > 0.8, "{} rank-1 {rank1}", e["name"]);
        let points = p["operating_points"].as_array().unwrap();
        assert_eq!(points.len(), 3);
        for op in points {
            assert!(finite(&op["fpir"], "fpir") <= finite(&op["target_fpir"], "target") + 1e-12);
            assert!((0.0..=1.0).contains(&finite(&op["fnir"], "fnir")));
        }
        assert!(!p["det"].as_array().unwrap().is_empty());
        let watchlist = finite(&p["watchlist_recall_at_k"], "watchlist recall");
        assert!((0.0..=1.0).contains(&watchlist));
        if e["name"] == "linear" {
            assert_eq!(watchlist, 1.0, "exact search within a watchlist is exact");
        }
    }
    // At a fixed threshold an approximate engine can only miss impostors too, never find
    // more: its FPIR at tau is at most exact search's.
    let fpir_at_tau =
        |e: &Value| finite(&e["identification"]["at_default"]["at_tau"]["fpir"], "fpir");
    let engines = report["engines"].as_array().unwrap();
    for e in &engines[1..] {
        assert!(
            fpir_at_tau(e) <= fpir_at_tau(&engines[0]) + 1e-12,
            "{} named more strangers than exact search",
            e["name"]
        );
    }
    let page = std::fs::read_to_string(dir.path().join("report/report.html")).unwrap();
    assert!(page.contains("Who is it? Identification errors") && page.contains("DET"));
}
