//! `cargo xtask bench`: the notebook's comparison, end to end.

use std::error::Error;
use std::path::Path;
use std::time::Instant;

use bench_runner::{EngineRun, HeadlineSearch, Report, RunOptions, Workload, run_engine};
use embed_store::synth::{SynthSpec, generate};
use embed_store::{Gallery, npy};
use indicatif::{ProgressBar, ProgressStyle};
use search_forest::{ForestIndex, ForestParams};
use search_hnsw::{HnswIndex, HnswParams};
use search_linear::LinearIndex;

use crate::cli::{BenchArgs, EngineName};

pub fn run(args: &BenchArgs) -> Result<(), Box<dyn Error>> {
    let started = Instant::now();
    let spec = SynthSpec {
        identities: args.identities,
        images_per_identity: args.images_per_identity as usize,
        distractors: args.distractors,
        dim: args.dim as usize,
        seed: args.seed,
    };
    std::fs::create_dir_all(&args.results)?;

    let bar = progress_bar(args.quiet, "generate", "rows");
    let data = generate(&spec, &bar);
    bar.finish_and_clear();
    let key = format!(
        "synth-v1-{}x{}-{}-{}d-seed{}",
        spec.identities, spec.images_per_identity, spec.distractors, spec.dim, spec.seed
    );
    write_dataset(&args.results, &key, &data.gallery, &data.queries)?;
    eprintln!(
        "dataset: {} gallery vectors ({} people x {} images, {} distractors), {} held-out queries, {} dims",
        data.gallery.len(),
        spec.identities,
        spec.images_per_identity,
        spec.distractors,
        data.queries.len(),
        spec.dim
    );
    let workload = Workload::from_dataset(data, key, args.k as usize, args.tau)?;

    let options = RunOptions {
        results_dir: args.results.clone(),
        rebuild: args.rebuild,
        progress: !args.quiet,
    };
    let mut engines = Vec::new();
    for engine in &args.engines {
        eprintln!("running {engine:?}...");
        let report = match engine {
            EngineName::Linear => {
                let run = EngineRun {
                    params: Default::default(),
                    headline: HeadlineSearch::Threshold,
                    knob: None,
                };
                run_engine::<LinearIndex>(&workload, &run, &options)?
            }
            EngineName::Hnsw => {
                let params = HnswParams {
                    m: args.m,
                    ef_construction: args.ef_construction,
                    ef: args.ef,
                    seed: args.seed,
                    ..Default::default()
                };
                let run = EngineRun {
                    params,
                    headline: HeadlineSearch::TopK,
                    knob: Some(args.ef),
                };
                run_engine::<HnswIndex>(&workload, &run, &options)?
            }
            EngineName::Forest => {
                let params = ForestParams {
                    n_trees: args.trees,
                    seed: args.seed,
                    ..Default::default()
                };
                let run = EngineRun {
                    params,
                    headline: HeadlineSearch::TopK,
                    knob: args.search_k,
                };
                run_engine::<ForestIndex>(&workload, &run, &options)?
            }
        };
        engines.push(report);
    }

    let report = Report {
        query_label: workload.headline.label.clone(),
        truth: workload.headline.truth.clone(),
        k: workload.k,
        tau: workload.tau,
        gallery_len: workload.gallery.len(),
        dim: workload.gallery.dim(),
        queries: workload.queries.len(),
        engines,
    };
    println!("{}", report.to_table());
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json()).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Writes the gallery and queries as the notebook's `.npy` files, unless the same dataset is
/// already there (recorded in `dataset.key`).
fn write_dataset(
    dir: &Path,
    key: &str,
    gallery: &Gallery,
    queries: &Gallery,
) -> Result<(), Box<dyn Error>> {
    let key_file = dir.join("dataset.key");
    let gallery_file = dir.join("search_data.npy");
    let queries_file = dir.join("queries.npy");
    if std::fs::read_to_string(&key_file).ok().as_deref() == Some(key)
        && gallery_file.exists()
        && queries_file.exists()
    {
        return Ok(());
    }
    let _ = std::fs::remove_file(&key_file);
    npy::write_gallery(&gallery_file, gallery)?;
    npy::write_gallery(&queries_file, queries)?;
    std::fs::write(&key_file, key)?;
    Ok(())
}

fn progress_bar(quiet: bool, prefix: &'static str, unit: &str) -> ProgressBar {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{prefix:>8}} [{{bar:40.cyan/blue}}] {{pos}}/{{len}} {unit} ({{elapsed}})"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(prefix);
    bar
}
