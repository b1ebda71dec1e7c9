//! Side-by-side benchmark driver, our half: builds, saves, loads and queries the forest on the
//! synthetic notebook dataset, and writes the dataset and the exact answers for the Python
//! half (`scripts/bench_forest_annoy.py`). Run through `scripts/bench_forest.sh`.
//!
//! ```text
//! cargo run --release -p search-forest --example bench_forest -- OUT_DIR [--distractors N]
//!     [--trees T] [--sweep 80,400,...] [--split two-means|best-of-R] [--repeat R]
//!     [--leaf N|annoy] [--seed S] [--annoy-rs] [--reuse]
//! ```
//! Prints one JSON object (build, size, load, and per search_k: recall@4 and query time).

use std::path::{Path, PathBuf};
use std::time::Instant;

use embed_store::synth::{SynthSpec, generate};
use embed_store::{SearchIndex, npy};
use search_forest::{ForestIndex, ForestParams, Split};
use search_linear::LinearIndex;

const K: usize = 4;
const TAU: f32 = 0.35;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Args {
    out: PathBuf,
    spec: SynthSpec,
    trees: usize,
    sweep: Vec<usize>,
    split: Split,
    iterations: usize,
    repeat: usize,
    annoy_rs: bool,
    reuse: bool,
    leaf: Option<usize>,
    seed: u64,
}

fn parse() -> Args {
    let mut args = std::env::args().skip(1);
    let mut a = Args {
        out: PathBuf::from(args.next().expect("usage: bench_forest OUT_DIR [flags]")),
        spec: SynthSpec::default(),
        trees: 20,
        sweep: vec![80, 200, 500, 1000, 2000, 5000, 10000, 20000, 40000],
        split: Split::TwoMeans,
        iterations: ForestParams::default().two_means_iterations,
        repeat: 5,
        annoy_rs: false,
        reuse: false,
        leaf: ForestParams::default().leaf_size,
        seed: ForestParams::default().seed,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().expect("flag needs a value");
        match flag.as_str() {
            "--distractors" => a.spec.distractors = value().parse().unwrap(),
            "--trees" => a.trees = value().parse().unwrap(),
            "--sweep" => a.sweep = value().split(',').map(|s| s.parse().unwrap()).collect(),
            "--repeat" => a.repeat = value().parse().unwrap(),
            "--iterations" => a.iterations = value().parse().unwrap(),
            "--split" => {
                let v = value();
                a.split = match v.strip_prefix("best-of-") {
                    Some(r) => Split::BestOf(r.parse().unwrap()),
                    None => Split::TwoMeans,
                }
            }
            "--annoy-rs" => a.annoy_rs = true,
            "--reuse" => a.reuse = true,
            // A number, or "annoy" for Annoy's own leaves (K = dim + 2).
            "--leaf" => a.leaf = value().parse().ok(),
            "--seed" => a.seed = value().parse().unwrap(),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse();
    std::fs::create_dir_all(&args.out)?;
    let data = generate(&args.spec, &());
    let gallery = data.gallery.vectors();
    let queries = data.queries.vectors();
    let dim = gallery.dim();
    let gallery_npy = args.out.join("gallery.npy");
    let queries_npy = args.out.join("queries.npy");
    if !gallery_npy.exists() {
        npy::write_gallery(&gallery_npy, &data.gallery)?;
        npy::write_gallery(&queries_npy, &data.queries)?;
    }

    // Exact answers.
    let linear = LinearIndex::build(gallery.view(), &Default::default(), &())?;
    let rows: Vec<&[f32]> = queries.as_slice().chunks_exact(dim).collect();
    let truth: Vec<Vec<u32>> = rows
        .iter()
        .map(|q| Ok(linear.search(q, K)?.iter().map(|h| h.id).collect()))
        .collect::<embed_store::Result<_>>()?;
    let truth_tau: Vec<Vec<u32>> = rows
        .iter()
        .map(|q| {
            Ok(linear
                .search_threshold(q, TAU)?
                .iter()
                .map(|h| h.id)
                .collect())
        })
        .collect::<embed_store::Result<_>>()?;
    std::fs::write(
        args.out.join("truth.json"),
        format!("{:?}", truth).replace(' ', ""),
    )?;

    // Build and save.
    let params = ForestParams {
        n_trees: args.trees,
        split: args.split,
        two_means_iterations: args.iterations,
        leaf_size: args.leaf,
        seed: args.seed,
        ..Default::default()
    };
    let path = args.out.join("ours.ann");
    let mut build_s = f64::NAN;
    let mut build_cpu_s = f64::NAN;
    if !(args.reuse && path.exists()) {
        let t = Instant::now();
        let c = test_support::cpu_seconds();
        let built = ForestIndex::build(gallery.view(), &params, &())?;
        build_s = t.elapsed().as_secs_f64();
        build_cpu_s = test_support::cpu_seconds() - c;
        built.save(&path)?;
    }
    let size = std::fs::metadata(&path)?.len();

    // Load: median of repeated opens (page cache warm, as for annoy).
    let mut loads = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        let index = ForestIndex::load(&path)?;
        loads.push(t.elapsed().as_secs_f64());
        drop(index);
    }
    let load_s = median(loads);
    let mut index = ForestIndex::load(&path)?;

    let recall = |found: &[Vec<u32>]| {
        let hit: usize = found
            .iter()
            .zip(&truth)
            .map(|(f, t)| f.iter().filter(|id| t.contains(id)).count())
            .sum();
        hit as f64 / (K * truth.len()) as f64
    };
    let mut sweep = Vec::new();
    for &search_k in [0].iter().chain(&args.sweep) {
        index.set_knob(search_k)?;
        let mut found = Vec::new();
        let mut passes = Vec::new();
        for pass in 0..=args.repeat {
            let t = Instant::now();
            let answers: Vec<Vec<u32>> = rows
                .iter()
                .map(|q| index.search(q, K).map(|h| h.iter().map(|h| h.id).collect()))
                .collect::<embed_store::Result<_>>()?;
            if pass > 0 {
                passes.push(t.elapsed().as_secs_f64() / rows.len() as f64);
            }
            found = answers;
        }
        let best = passes.iter().copied().fold(f64::INFINITY, f64::min);
        sweep.push(format!(
            "{{\"search_k\":{search_k},\"recall_at_4\":{:.4},\"query_ms\":{:.4},\"query_ms_min\":{:.4}}}",
            recall(&found),
            median(passes) * 1e3,
            best * 1e3
        ));
    }
    // Threshold search at annoy's default rule for it (knob unset).
    index.set_knob(0)?;
    let (mut tp, mut total) = (0usize, 0usize);
    for (q, want) in rows.iter().zip(&truth_tau) {
        let got = index.search_threshold(q, TAU)?;
        tp += got.iter().filter(|h| want.contains(&h.id)).count();
        total += want.len();
    }

    let mut extra = String::new();
    if args.annoy_rs {
        extra = annoy_rs_figures(&path, dim, &rows, &index)?;
    }
    println!(
        "{{\"engine\":\"ours\",\"kernel\":\"{}\",\"n\":{},\"dim\":{dim},\"trees\":{},\"split\":\"{:?}\",\"leaf\":\"{:?}\",\"iterations\":{},\"build_s\":{build_s:.3},\"build_cpu_s\":{build_cpu_s:.2},\"index_bytes\":{size},\"load_ms\":{:.4},\"threshold_recall\":{:.4},\"sweep\":[{}]{extra}}}",
        embed_store::kernels::dot_kernel_name(),
        gallery.len(),
        index.n_trees(),
        args.split,
        args.leaf,
        args.iterations,
        load_s * 1e3,
        tp as f64 / total.max(1) as f64,
        sweep.join(",")
    );
    Ok(())
}

/// annoy-rs on the same file: query time at two search_k, agreement with our reader, and what
/// it does with a damaged file.
fn annoy_rs_figures(
    path: &Path,
    dim: usize,
    rows: &[&[f32]],
    ours: &ForestIndex,
) -> Result<String, Box<dyn std::error::Error>> {
    use annoy_rs::{AnnoyIndex, AnnoyIndexSearchApi, IndexType};
    let t = Instant::now();
    let theirs = AnnoyIndex::load(dim, path.to_str().unwrap(), IndexType::Angular)?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut out = format!(",\"annoy_rs\":{{\"load_ms\":{load_ms:.4}");
    for search_k in [-1i32, 20000] {
        let mut passes = Vec::new();
        let mut same = 0;
        for pass in 0..4 {
            let t = Instant::now();
            for q in rows {
                let r = theirs.get_nearest(q, K, search_k, true);
                if pass == 0 {
                    let sk = (search_k > 0).then_some(search_k as usize);
                    let mine: Vec<u64> = ours
                        .nns_by_vector(q, K, sk)?
                        .iter()
                        .map(|x| u64::from(x.0))
                        .collect();
                    same += (mine == r.id_list) as usize;
                }
            }
            if pass > 0 {
                passes.push(t.elapsed().as_secs_f64() / rows.len() as f64);
            }
        }
        // Our own reader through the annoy-style API, same search_k, same run.
        let mut own = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            for q in rows {
                ours.nns_by_vector(q, K, (search_k > 0).then_some(search_k as usize))?;
            }
            own.push(t.elapsed().as_secs_f64() / rows.len() as f64);
        }
        out += &format!(
            ",\"search_k_{}\":{{\"annoy_rs_query_ms\":{:.4},\"ours_query_ms\":{:.4},\"same_lists\":{same},\"lists\":{}}}",
            if search_k < 0 {
                "default".to_string()
            } else {
                search_k.to_string()
            },
            median(passes) * 1e3,
            median(own) * 1e3,
            rows.len()
        );
    }
    // Damaged files: cut to half its bytes, to half its nodes, and a 100-byte file.
    let bytes = std::fs::read(path)?;
    let dir = path.parent().unwrap();
    let node = 12 + 4 * dim;
    let half_nodes = bytes.len() / node / 2 * node;
    for (name, cut) in [
        ("half", bytes.len() / 2),
        ("half_nodes", half_nodes),
        ("100_bytes", 100),
    ] {
        let p = dir.join(format!("damaged_{name}.ann"));
        std::fs::write(&p, &bytes[..cut])?;
        let p2 = p.clone();
        let q = rows[0].to_vec();
        let rs = std::panic::catch_unwind(move || {
            match AnnoyIndex::load(dim, p2.to_str().unwrap(), IndexType::Angular) {
                Ok(idx) => {
                    let size = idx.size;
                    let r = idx.get_nearest(&q, K, -1, false);
                    format!("loaded size={size}, returned {} ids", r.id_list.len())
                }
                Err(e) => format!("error: {e}"),
            }
        });
        let rs = match rs {
            Ok(s) => s,
            Err(e) => format!(
                "PANIC: {}",
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            ),
        };
        let mine = match ForestIndex::open(&p, dim, search_forest::Metric::Angular) {
            Ok(_) => "loaded".to_string(),
            Err(e) => format!("error: {e}"),
        };
        out += &format!(
            ",\"damaged_{name}\":{{\"annoy_rs\":{:?},\"ours\":{:?}}}",
            rs.replace('"', "'"),
            mine.replace('"', "'")
        );
    }
    out += "}";
    Ok(out)
}
