//! `cargo xtask distributed`: the bench's gallery sharded over a two-node Ray cluster on this
//! machine, measured by scripts/distributed_bench.py (through the face_search Python package)
//! and merged into the bench's JSON.

use std::error::Error;
use std::process::{Command, Stdio};

use bench_runner::{DistributedPoint, distributed_table};

use crate::cli::DistributedArgs;
use crate::peers::{bench_file_for, workspace_root};

pub fn run(args: &DistributedArgs) -> Result<(), Box<dyn Error>> {
    let mut doc = bench_file_for(&args.results, &args.json)?;
    let root = workspace_root();
    eprintln!("building the face_search Python package into target/pyenv...");
    let install = Command::new("bash")
        .arg(root.join("scripts/test-python.sh"))
        .arg("--install-only")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("bash scripts/test-python.sh: {e}"))?;
    if !install.status.success() {
        return Err(format!("installing the Python package failed ({})", install.status).into());
    }
    let python = String::from_utf8(install.stdout)?.trim().to_owned();
    let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let out = Command::new(&python)
        .arg(root.join("scripts/distributed_bench.py"))
        .arg("--results")
        .arg(&args.results)
        .args(["--engines", &args.engines.join(",")])
        .args(["--shards", &list(&args.shards)])
        .args(["--replicas", &list(&args.replicas)])
        .args(["--k", &doc.report.k.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{python}: {e}"))?;
    if !out.status.success() {
        return Err(format!("scripts/distributed_bench.py failed ({})", out.status).into());
    }
    let mut points = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.trim().is_empty() {
            continue;
        }
        let point: DistributedPoint = serde_json::from_str(line)
            .map_err(|e| format!("scripts/distributed_bench.py printed {line:?}: {e}"))?;
        points.push(point);
    }
    if points.is_empty() {
        return Err("scripts/distributed_bench.py measured nothing".into());
    }
    // A run replaces the earlier figures of the engines it measured.
    doc.distributed
        .retain(|p| !points.iter().any(|q| q.engine == p.engine));
    doc.distributed.extend(points);
    doc.write(&args.json)?;
    eprintln!("wrote {}", args.json.display());
    println!("{}", distributed_table(&doc.distributed));
    if let Some(dir) = &args.report {
        let page = crate::report_html::write(dir, &doc)?;
        eprintln!("wrote {}", page.display());
    }
    Ok(())
}
