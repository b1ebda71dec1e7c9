//! `cargo xtask build-time`: one of our engines' build against a peer's, alternating, on the
//! bench's gallery: the medians and their ratio (single builds swing by tens of percent on a
//! shared machine; alternating rounds see the same disturbances).

use std::error::Error;
use std::process::{Command, Stdio};
use std::time::Instant;

use search_core::Params;
use serde_json::Value;

use crate::cli::BuildTimeArgs;
use crate::stats::median;

pub fn run(args: &BuildTimeArgs) -> Result<(), Box<dyn Error>> {
    let kind = search_engines::kind(&args.engine)?;
    let data = args.results.join("search_data.npy");
    let key = std::fs::read_to_string(args.results.join("dataset.key")).map_err(|e| {
        format!(
            "{}: {e} (run `cargo xtask bench --results {}` first: it writes the gallery)",
            args.results.join("dataset.key").display(),
            args.results.display()
        )
    })?;
    let gallery = embed_store::npy::read_vectors(&data)?;
    let mut params = Params::new();
    for p in &args.params {
        let (name, value) = p
            .split_once('=')
            .ok_or_else(|| format!("--param {p:?}: expected NAME=VALUE"))?;
        params.set(name, value);
    }
    let root = crate::peers::workspace_root();
    let python = crate::peers::python(&root)?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        let start = Instant::now();
        let index = (kind.build)(gallery.view(), &params, &())?;
        let o = start.elapsed().as_secs_f64();
        drop(index);
        let out = Command::new(&python)
            .arg(root.join("scripts/peers.py"))
            .arg(&args.peer)
            .arg("--results")
            .arg(&args.results)
            .args(["--key", key.trim(), "--build-only"])
            .stderr(Stdio::inherit())
            .output()?;
        if !out.status.success() {
            return Err(format!("peer {} failed ({})", args.peer, out.status).into());
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))?;
        let t = result["build_s"]
            .as_f64()
            .ok_or("the peer printed no build_s")?;
        let call_only = result["build_call_only"] == true;
        println!(
            "round {round}: {} {o:.2} s, {} {t:.2} s{}",
            kind.name,
            args.peer,
            if call_only {
                " (its build call alone)"
            } else {
                ""
            }
        );
        ours.push(o);
        theirs.push(t);
    }
    let (Some(mo), Some(mt)) = (median(&mut ours), median(&mut theirs)) else {
        return Err("no rounds were run".into());
    };
    println!(
        "median of {} rounds: {} {mo:.2} s, {} {mt:.2} s, ratio {:.2}",
        args.rounds,
        kind.name,
        args.peer,
        mo / mt
    );
    Ok(())
}
