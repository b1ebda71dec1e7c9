//! `cargo xtask bench`: the notebook's comparison, end to end, with optional knob sweeps, the
//! user's own data and an HTML report.

use std::error::Error;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::Instant;

use bench_runner::{
    BenchFile, EngineRun, ExistingIndex, HeadlineSearch, IdentificationSpec, Report, RunExtras,
    RunOptions, SweepSpec, Workload as BenchWorkload, run_engine,
};
use embed_store::faces::{FacesSpec, generate_faces};
use embed_store::synth::{Dataset, Headline, SynthSpec, generate};
use embed_store::{Gallery, npy};
use search_core::{EngineKind, Params};
use serde_json::{Value, json};

use crate::cli::{BenchArgs, Workload};

pub fn run(args: &BenchArgs) -> Result<(), Box<dyn Error>> {
    let started = Instant::now();
    // Before any work: the load average then says whether other jobs shared the machine.
    let machine = crate::machine::describe();
    std::fs::create_dir_all(&args.results)?;

    let (data, key, source) = match (&args.gallery, args.workload) {
        (Some(gallery), _) => own_data(args, gallery)?,
        (None, Workload::Notebook) => synthetic(args),
        (None, Workload::Faces) => faces(args),
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
    let mut workload = BenchWorkload::from_dataset(data, key.clone(), args.k as usize, args.tau)?;
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
        progress: (!args.quiet).then(crate::progress::build_bars),
        cold: !args.no_cold,
        warmup: args.warmup,
    };
    let plan = EnginePlan::from_args(args)?;
    let identify = match (&args.gallery_identities, &args.query_identities) {
        (Some(rows), Some(queries)) => Some(identities_from_files(&workload, rows, queries)?),
        (Some(_), None) => return Err("--gallery-identities needs --query-identities".into()),
        _ => (args.identify || (args.workload == Workload::Faces && args.gallery.is_none()))
            .then(|| IdentificationSpec::from_labels(&workload)),
    };
    if let Some(spec) = &identify {
        let mated = spec.mates.iter().filter(|m| m.is_some()).count();
        eprintln!(
            "identification: {} people enrolled; {mated} mated and {} non-mated probes",
            spec.identities.persons(),
            spec.mates.len() - mated
        );
    }
    let dim = workload.gallery.dim();
    let mut engines = Vec::new();
    for name in &args.engines {
        let kind = search_engines::kind(name)?;
        eprintln!("running {name}...");
        let sweep = plan.sweep(kind, args);
        let existing = plan.index(name);
        let open_existing = |path: &Path| search_engines::open_any(kind, path, dim, args.warmup);
        let run = EngineRun {
            kind,
            params: plan.params(kind, args)?,
            // The notebook asked the exact engine for everything above the threshold, the
            // approximate ones for the top k.
            headline: if kind.knob.is_some() {
                HeadlineSearch::TopK
            } else {
                HeadlineSearch::Threshold
            },
            knob: plan.knob(name),
        };
        let id_spec = identify.as_ref().map(|spec| IdentificationSpec {
            knob_values: if args.sweep {
                sweep.values.clone()
            } else {
                Vec::new()
            },
            ..spec.clone()
        });
        let extras = RunExtras {
            identification: id_spec.as_ref(),
            sweep: args.sweep.then_some(&sweep),
            existing_index: existing.map(|path| ExistingIndex {
                path,
                open: &open_existing,
            }),
        };
        engines.push(run_engine(&workload, &run, &options, &extras)?);
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

    let mut doc = BenchFile {
        report,
        dataset_key: key,
        dataset: source,
        params: params_json(args),
        machine,
        peers: Vec::new(),
        peers_params: None,
        distributed: Vec::new(),
        // Measured with another run of ours: a new bench run makes it stale.
        verdict: None,
    };
    if let Some(path) = &args.json {
        // Keep the peers of an earlier `cargo xtask peers` on the same data.
        if let Ok(old) = BenchFile::read(path)
            && old.dataset_key == doc.dataset_key
        {
            doc.peers = old.peers;
            doc.peers_params = old.peers_params;
            doc.distributed = old.distributed;
        }
        doc.write(path)?;
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
    let bar = crate::progress::bar(args.quiet, "generate", "rows");
    let data = generate(&spec, &bar);
    drop(bar);
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

/// Identification from the user's identity arrays: one string per gallery row and per query.
fn identities_from_files(
    workload: &BenchWorkload,
    rows: &Path,
    queries: &Path,
) -> Result<IdentificationSpec, Box<dyn Error>> {
    let row_ids = npy::read_labels(rows)?;
    let query_ids = npy::read_labels(queries)?;
    if row_ids.len() != workload.gallery.len() {
        return Err(format!(
            "{}: {} identities for {} gallery rows",
            rows.display(),
            row_ids.len(),
            workload.gallery.len()
        )
        .into());
    }
    if query_ids.len() != workload.queries.len() {
        return Err(format!(
            "{}: {} identities for {} queries",
            queries.display(),
            query_ids.len(),
            workload.queries.len()
        )
        .into());
    }
    let identities = face_identify::Identities::from_names(&row_ids);
    let mates = query_ids.iter().map(|q| identities.find(q)).collect();
    Ok(IdentificationSpec {
        identities,
        mates,
        ..IdentificationSpec::from_labels(workload)
    })
}

fn faces(args: &BenchArgs) -> (Dataset, String, Value) {
    let spec = FacesSpec {
        people: args.people,
        images_per_person: args.images_per_person,
        mated_probes: args.mated,
        non_mated_probes: args.non_mated,
        dim: args.dim as usize,
        cone: args.cone,
        lookalike_fraction: args.lookalikes,
        hard_probe_fraction: args.hard_probes,
        seed: args.seed,
        ..FacesSpec::default()
    };
    let bar = crate::progress::bar(args.quiet, "generate", "rows");
    let data = generate_faces(&spec, &bar);
    drop(bar);
    let key = format!(
        "faces-v1-{}x{}-{}+{}-{}d-cone{}-look{}-hard{}-share{}-seed{}",
        spec.people,
        spec.images_per_person,
        spec.mated_probes,
        spec.non_mated_probes,
        spec.dim,
        spec.cone,
        spec.lookalike_fraction,
        spec.hard_probe_fraction,
        spec.attribute_share,
        spec.seed
    );
    // f32 parameters as the decimals typed, not their binary expansions.
    let short = |x: f32| (f64::from(x) * 1e6).round() / 1e6;
    let source = json!({
        "kind": "faces",
        "people": spec.people,
        "images_per_person": spec.images_per_person,
        "mated_probes": spec.mated_probes,
        "non_mated_probes": spec.non_mated_probes,
        "dim": spec.dim,
        "cone": short(spec.cone),
        "lookalike_fraction": short(spec.lookalike_fraction),
        "hard_probe_fraction": short(spec.hard_probe_fraction),
        "attribute_share": short(spec.attribute_share),
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
        None => match npy::read_vectors_and_labels(queries_path)? {
            (vectors, Some(labels)) => (Gallery::new(vectors, labels)?, true),
            (vectors, None) => {
                let labels = (0..vectors.len()).map(|i| format!("query_{i}")).collect();
                (Gallery::new(vectors, labels)?, false)
            }
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
        let person = embed_store::person_of(&label);
        gallery
            .labels()
            .iter()
            .filter(|l| embed_store::person_of(l) == person)
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

fn params_json(args: &BenchArgs) -> Value {
    json!({
        "k": args.k,
        "tau": args.tau,
        "engines": args.engines,
        "params": args.params,
        "knobs": args.knobs,
        "indexes": args.indexes,
        "seed": args.seed,
        "build_seed": args.build_seed,
        "warmup": args.warmup.to_string(),
        "sweep": args.sweep.then(|| json!({
            "ef": args.sweep_ef,
            "search_k": args.sweep_search_k,
            "values": args.sweep_values,
            "stop_recall_search_k": args.sweep_stop_recall,
            "min_seconds": args.sweep_min_seconds,
            "rounds": args.sweep_rounds,
            "refine": args.sweep_refine,
            "threads_all": threads(args.threads),
        })),
    })
}

/// What the command line says about each engine: parameters, knobs, given index files and
/// sweep values, by engine name. Nothing here names an engine but the notebook's shortcuts.
struct EnginePlan {
    params: Vec<(String, String, String)>,
    knobs: Vec<(String, usize)>,
    indexes: Vec<(String, std::path::PathBuf)>,
    sweeps: Vec<(String, Vec<usize>)>,
}

impl EnginePlan {
    fn from_args(args: &BenchArgs) -> Result<Self, Box<dyn Error>> {
        let split = |s: &str, sep: char, what: &str| -> Result<(String, String), String> {
            s.split_once(sep)
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| {
                    format!(
                        "{what} {s:?}: expected {}",
                        match sep {
                            '=' => "ENGINE=VALUE",
                            _ => "ENGINE.NAME=VALUE",
                        }
                    )
                })
        };
        let known = |engine: &str| search_engines::kind(engine).map(|_| ());
        let mut params = Vec::new();
        for p in &args.params {
            let (target, value) = split(p, '=', "--param")?;
            let (engine, name) = split(&target, '.', "--param")?;
            known(&engine)?;
            params.push((engine, name, value));
        }
        // The notebook's shortcuts.
        let shortcuts = [
            ("hnsw", "m", args.m.map(|v| v.to_string())),
            (
                "hnsw",
                "ef_construction",
                args.ef_construction.map(|v| v.to_string()),
            ),
            ("hnsw", "ef", args.ef.map(|v| v.to_string())),
            ("forest", "n_trees", args.trees.map(|v| v.to_string())),
            ("forest", "leaf_size", args.leaf.clone()),
        ];
        for (engine, name, value) in shortcuts {
            if let Some(v) = value {
                params.push((engine.into(), name.into(), v));
            }
        }
        let mut knobs = Vec::new();
        for k in &args.knobs {
            let (engine, value) = split(k, '=', "--knob")?;
            known(&engine)?;
            let v = value.parse().map_err(|e| format!("--knob {k:?}: {e}"))?;
            knobs.push((engine, v));
        }
        if let Some(ef) = args.ef {
            knobs.push(("hnsw".into(), ef));
        }
        if let Some(search_k) = args.search_k {
            knobs.push(("forest".into(), search_k));
        }
        let mut indexes = Vec::new();
        for i in &args.indexes {
            let (engine, path) = split(i, '=', "--index")?;
            known(&engine)?;
            indexes.push((engine, path.into()));
        }
        let mut sweeps = Vec::new();
        for v in &args.sweep_values {
            let (engine, values) = split(v, '=', "--sweep-values")?;
            known(&engine)?;
            let values = values
                .split(',')
                .map(|x| x.trim().parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("--sweep-values {v:?}: {e}"))?;
            sweeps.push((engine, values));
        }
        Ok(EnginePlan {
            params,
            knobs,
            indexes,
            sweeps,
        })
    }

    /// The engine's parameters: those given, and the build seed where it takes one.
    fn params(&self, kind: &EngineKind, args: &BenchArgs) -> Result<Params, Box<dyn Error>> {
        let mut p = Params::new();
        if kind.params.iter().any(|s| s.name == "seed") {
            p.set("seed", args.build_seed.unwrap_or(args.seed));
        }
        for (engine, name, value) in &self.params {
            if engine == kind.name {
                p.set(name.clone(), value);
            }
        }
        Ok(p)
    }

    fn knob(&self, engine: &str) -> Option<usize> {
        self.knobs
            .iter()
            .rev()
            .find(|(e, _)| e == engine)
            .map(|(_, v)| *v)
    }

    fn index(&self, engine: &str) -> Option<&Path> {
        self.indexes
            .iter()
            .find(|(e, _)| e == engine)
            .map(|(_, p)| p.as_path())
    }

    fn sweep(&self, kind: &EngineKind, args: &BenchArgs) -> SweepSpec {
        let base = SweepSpec {
            min_seconds: args.sweep_min_seconds,
            rounds: args.sweep_rounds,
            threads: args.threads,
            refine_points: args.sweep_refine,
            ..SweepSpec::default()
        };
        let given = self
            .sweeps
            .iter()
            .find(|(e, _)| e == kind.name)
            .map(|(_, v)| v.clone());
        match kind.knob {
            None => base,
            Some("search_k") => SweepSpec {
                values: given.unwrap_or_else(|| args.sweep_search_k.clone()),
                stop_at_recall: Some(args.sweep_stop_recall),
                ..base
            },
            Some("ef") => SweepSpec {
                values: given.unwrap_or_else(|| args.sweep_ef.clone()),
                ..base
            },
            Some(_) => SweepSpec {
                values: given.unwrap_or_default(),
                ..base
            },
        }
    }
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
