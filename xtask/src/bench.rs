//! `cargo xtask bench`: the notebook's comparison, end to end, with optional knob sweeps, the
//! user's own data and an HTML report.

use std::error::Error;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::Instant;

use bench_runner::{
    EngineRun, ExistingIndex, HeadlineSearch, Report, RunExtras, RunOptions, SweepSpec, Workload,
    run_engine_with,
};
use embed_store::synth::{Dataset, Headline, SynthSpec, generate};
use embed_store::{Gallery, SearchIndex, npy};
use indicatif::{ProgressBar, ProgressStyle};
use search_forest::{ForestIndex, ForestParams, Metric};
use search_hnsw::{HnswIndex, HnswParams, Space};
use search_linear::LinearIndex;
use serde_json::{Value, json};

use crate::cli::{BenchArgs, EngineName};

pub fn run(args: &BenchArgs) -> Result<(), Box<dyn Error>> {
    let started = Instant::now();
    // Before any work: the load average then says whether other jobs shared the machine.
    let machine = crate::machine::describe();
    std::fs::create_dir_all(&args.results)?;

    let (data, key, source) = match &args.gallery {
        Some(gallery) => own_data(args, gallery)?,
        None => synthetic(args),
    };
    write_dataset(&args.results, &key, &data)?;
    eprintln!(
        "dataset: {} gallery vectors, {} held-out queries, {} dims ({})",
        data.gallery.len(),
        data.queries.len(),
        data.gallery.dim(),
        source["kind"].as_str().unwrap_or("?")
    );
    let own_labels = args.gallery.is_some() && source["query_labels"] == false;
    let mut workload = Workload::from_dataset(data, key.clone(), args.k as usize, args.tau)?;
    if own_labels {
        // Queries without labels: the headline's truth is what exact search finds.
        workload.headline.truth = workload
            .exact_top_k
            .first()
            .map(|rows| {
                rows.iter()
                    .map(|&r| workload.gallery.label(r as usize).to_owned())
                    .collect()
            })
            .unwrap_or_default();
    }

    let options = RunOptions {
        results_dir: args.results.clone(),
        rebuild: args.rebuild,
        progress: !args.quiet,
        cold: !args.no_cold,
        warmup: args.warmup,
    };
    let base_sweep = SweepSpec {
        min_seconds: args.sweep_min_seconds,
        threads: args.threads,
        ..SweepSpec::default()
    };
    let linear_sweep = base_sweep.clone();
    let hnsw_sweep = SweepSpec {
        values: args.sweep_ef.clone(),
        ..base_sweep.clone()
    };
    let forest_sweep = SweepSpec {
        values: args.sweep_search_k.clone(),
        stop_at_recall: Some(args.sweep_stop_recall),
        ..base_sweep
    };
    let dim = workload.gallery.dim();
    // Our own file, else a file written by Python hnswlib (the notebook's cosine space).
    let open_hnsw = |p: &Path| {
        HnswIndex::load(p)
            .or_else(|e| HnswIndex::load_hnswlib(p, dim, Space::Cosine).map_err(|_| e))
    };
    let open_forest = |p: &Path| {
        ForestIndex::load(p).or_else(|e| ForestIndex::open(p, dim, Metric::Angular).map_err(|_| e))
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
                let extras = RunExtras {
                    sweep: args.sweep.then_some(&linear_sweep),
                    existing_index: None,
                };
                run_engine_with::<LinearIndex>(&workload, &run, &options, &extras)?
            }
            EngineName::Hnsw => {
                let params = HnswParams {
                    m: args.m,
                    ef_construction: args.ef_construction,
                    ef: args.ef,
                    seed: args.build_seed.unwrap_or(args.seed),
                    ..Default::default()
                };
                let run = EngineRun {
                    params,
                    headline: HeadlineSearch::TopK,
                    knob: Some(args.ef),
                };
                let extras = RunExtras {
                    sweep: args.sweep.then_some(&hnsw_sweep),
                    existing_index: args.hnsw_index.as_deref().map(|path| ExistingIndex {
                        path,
                        open: &open_hnsw,
                    }),
                };
                run_engine_with::<HnswIndex>(&workload, &run, &options, &extras)?
            }
            EngineName::Forest => {
                let params = ForestParams {
                    n_trees: args.trees,
                    seed: args.build_seed.unwrap_or(args.seed),
                    leaf_size: args.leaf.0,
                    ..Default::default()
                };
                let run = EngineRun {
                    params,
                    headline: HeadlineSearch::TopK,
                    knob: args.search_k,
                };
                let extras = RunExtras {
                    sweep: args.sweep.then_some(&forest_sweep),
                    existing_index: args.forest_index.as_deref().map(|path| ExistingIndex {
                        path,
                        open: &open_forest,
                    }),
                };
                run_engine_with::<ForestIndex>(&workload, &run, &options, &extras)?
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

    let mut doc = serde_json::to_value(&report)?;
    doc["dataset_key"] = json!(key);
    doc["dataset"] = source;
    doc["params"] = params_json(args);
    doc["machine"] = machine;
    if let Some(path) = &args.json {
        // Keep the peers of an earlier `cargo xtask peers` on the same data.
        if let Some(old) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            && old["dataset_key"] == doc["dataset_key"]
            && old["peers"].is_array()
        {
            doc["peers"] = old["peers"].clone();
        }
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(dir) = &args.report {
        let page = crate::report_html::write(dir, &doc)?;
        eprintln!("wrote {}", page.display());
    }
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn synthetic(args: &BenchArgs) -> (Dataset, String, Value) {
    let spec = SynthSpec {
        identities: args.identities,
        images_per_identity: args.images_per_identity as usize,
        distractors: args.distractors,
        dim: args.dim as usize,
        seed: args.seed,
    };
    let bar = progress_bar(args.quiet, "generate", "rows");
    let data = generate(&spec, &bar);
    bar.finish_and_clear();
    let key = format!(
        "synth-v1-{}x{}-{}-{}d-seed{}",
        spec.identities, spec.images_per_identity, spec.distractors, spec.dim, spec.seed
    );
    let source = json!({
        "kind": "synthetic",
        "identities": spec.identities,
        "images_per_identity": spec.images_per_identity,
        "distractors": spec.distractors,
        "dim": spec.dim,
        "seed": spec.seed,
    });
    (data, key, source)
}

/// The user's gallery and queries, with the headline query = the first query.
fn own_data(
    args: &BenchArgs,
    gallery_path: &Path,
) -> Result<(Dataset, String, Value), Box<dyn Error>> {
    let queries_path = args.queries.as_deref().ok_or("--gallery needs --queries")?;
    let gallery = match &args.labels {
        Some(labels) => Gallery::new(npy::read_vectors(gallery_path)?, npy::read_labels(labels)?)?,
        None => npy::read_gallery(gallery_path)
            .map_err(|e| format!("{e} (a gallery file without labels needs --labels PATH)"))?,
    };
    let (queries, query_labels) = match &args.query_labels {
        Some(labels) => (
            Gallery::new(npy::read_vectors(queries_path)?, npy::read_labels(labels)?)?,
            true,
        ),
        None => match npy::read_gallery(queries_path) {
            Ok(g) => (g, true),
            Err(embed_store::Error::Format { message, .. })
                if message.contains("no label array") =>
            {
                let vectors = npy::read_vectors(queries_path)?;
                let labels = (0..vectors.len()).map(|i| format!("query_{i}")).collect();
                (Gallery::new(vectors, labels)?, false)
            }
            Err(e) => return Err(e.into()),
        },
    };
    if queries.is_empty() {
        return Err(format!("{}: no queries", queries_path.display()).into());
    }
    if gallery.is_empty() {
        return Err(format!("{}: empty gallery", gallery_path.display()).into());
    }
    if queries.dim() != gallery.dim() {
        return Err(format!(
            "queries have {} dims but the gallery has {}",
            queries.dim(),
            gallery.dim()
        )
        .into());
    }
    let label = queries.label(0).to_owned();
    let truth = if query_labels {
        let person = identity(&label);
        gallery
            .labels()
            .iter()
            .filter(|l| identity(l) == person)
            .cloned()
            .collect()
    } else {
        Vec::new() // filled in from exact search
    };
    let headline = Headline {
        label,
        vector: queries.vectors().row(0).to_vec(),
        truth,
    };
    let mut h = std::hash::DefaultHasher::new();
    for g in [&gallery, &queries] {
        bytemuck::cast_slice::<f32, u8>(g.vectors().as_slice()).hash(&mut h);
        g.dim().hash(&mut h);
        g.labels().hash(&mut h);
    }
    let key = format!(
        "files-v1-{}x{}d-{:016x}",
        gallery.len(),
        gallery.dim(),
        h.finish()
    );
    let source = json!({
        "kind": "files",
        "gallery": gallery_path.display().to_string(),
        "labels": args.labels.as_ref().map(|p| p.display().to_string()),
        "queries": queries_path.display().to_string(),
        "query_labels": query_labels,
        "dim": gallery.dim(),
    });
    Ok((
        Dataset {
            gallery,
            queries,
            headline,
        },
        key,
        source,
    ))
}

/// A label's person: everything before the last '_' (`id042` of `id042_3`), or all of it.
fn identity(label: &str) -> &str {
    label.rsplit_once('_').map_or(label, |(person, _)| person)
}

fn params_json(args: &BenchArgs) -> Value {
    json!({
        "k": args.k,
        "tau": args.tau,
        "engines": args.engines.iter().map(|e| format!("{e:?}").to_lowercase()).collect::<Vec<_>>(),
        "hnsw": {"m": args.m, "ef_construction": args.ef_construction, "ef": args.ef, "seed": args.seed,
                 "index_file": args.hnsw_index.as_ref().map(|p| p.display().to_string())},
        "forest": {"trees": args.trees, "search_k": args.search_k, "seed": args.seed,
                   "leaf": args.leaf.0.map_or(json!("annoy"), |n| json!(n)),
                   "index_file": args.forest_index.as_ref().map(|p| p.display().to_string())},
        "sweep": args.sweep.then(|| json!({
            "ef": args.sweep_ef,
            "search_k": args.sweep_search_k,
            "stop_recall_forest": args.sweep_stop_recall,
            "min_seconds": args.sweep_min_seconds,
            "threads_all": threads(args.threads),
        })),
    })
}

pub fn threads(asked: usize) -> usize {
    if asked > 0 {
        asked
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Writes the gallery, the queries and the headline query as the notebook's `.npy` files
/// (`search_data.npy`, `queries.npy`, `headline.npy`, for other tools such as the peers),
/// unless the same dataset is already there (recorded in `dataset.key`).
fn write_dataset(dir: &Path, key: &str, data: &Dataset) -> Result<(), Box<dyn Error>> {
    let key_file = dir.join("dataset.key");
    let gallery_file = dir.join("search_data.npy");
    let queries_file = dir.join("queries.npy");
    let headline_file = dir.join("headline.npy");
    if std::fs::read_to_string(&key_file).ok().as_deref() == Some(key)
        && gallery_file.exists()
        && queries_file.exists()
        && headline_file.exists()
    {
        return Ok(());
    }
    let _ = std::fs::remove_file(&key_file);
    npy::write_gallery(&gallery_file, &data.gallery)?;
    npy::write_gallery(&queries_file, &data.queries)?;
    let headline = Gallery::new(
        embed_store::Vectors::new(data.gallery.dim(), data.headline.vector.clone())?,
        vec![data.headline.label.clone()],
    )?;
    npy::write_gallery(&headline_file, &headline)?;
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
