//! Times the linear engine on a synthetic gallery and prints one JSON object; the data files it
//! writes are what `scripts/bench_linear.py` feeds to faiss, so both run on the same data.
//! Driven by `scripts/bench_linear.sh`:
//!
//! ```text
//! cargo run --release -p search-linear --example bench_linear -- \
//!     --dir target/bench-linear --distractors 100000 --repeats 5 --k 10
//! ```
//! Files in `--dir` (made once per dataset spec): `gallery.npy`, `queries.npy` (the notebook's
//! float64 layout with labels), `linear.idx` (our index). The JSON holds medians in seconds,
//! the bytes each single query read, and the top-k ids of every query for cross-checking.

use std::path::PathBuf;
use std::time::Instant;

use embed_store::synth::{SynthSpec, generate};
use embed_store::{SearchIndex, Vectors};
use search_linear::{LinearIndex, ScanMode};

struct Args {
    dir: PathBuf,
    distractors: usize,
    dim: usize,
    repeats: usize,
    k: usize,
    tau: f32,
    seed: u64,
    single_queries: usize,
}

fn parse() -> Args {
    let mut a = Args {
        dir: PathBuf::from("target/bench-linear"),
        distractors: 100_000,
        dim: 512,
        repeats: 5,
        k: 10,
        tau: 0.35,
        seed: 42,
        single_queries: usize::MAX,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => a.dir = PathBuf::from(val()),
            "--distractors" => a.distractors = val().parse().expect("a number"),
            "--dim" => a.dim = val().parse().expect("a number"),
            "--repeats" => a.repeats = val().parse().expect("a number"),
            "--k" => a.k = val().parse().expect("a number"),
            "--tau" => a.tau = val().parse().expect("a number"),
            "--seed" => a.seed = val().parse().expect("a number"),
            "--single-queries" => a.single_queries = val().parse().expect("a number"),
            "--help" | "-h" => {
                println!(
                    "bench_linear [--dir D] [--distractors N] [--dim D] [--repeats R] [--k K] [--tau T] [--seed S] [--single-queries N]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Median wall seconds, mean CPU seconds, mean bytes read, and the ids found per query.
type SingleRun = (f64, f64, f64, Vec<Vec<u32>>);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed().as_secs_f64())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = parse();
    std::fs::create_dir_all(&a.dir)?;
    let spec = SynthSpec {
        distractors: a.distractors,
        dim: a.dim,
        seed: a.seed,
        ..SynthSpec::default()
    };
    let stamp = format!("{spec:?}");
    let stamp_path = a.dir.join("spec.txt");
    let (gallery_npy, queries_npy, idx) = (
        a.dir.join("gallery.npy"),
        a.dir.join("queries.npy"),
        a.dir.join("linear.idx"),
    );
    let mut build_s = None;
    if std::fs::read_to_string(&stamp_path).ok().as_deref() != Some(stamp.as_str()) || !idx.exists()
    {
        eprintln!("generating {stamp}");
        let data = generate(&spec, &());
        embed_store::npy::write_gallery(&gallery_npy, &data.gallery)?;
        embed_store::npy::write_gallery(&queries_npy, &data.queries)?;
        let (index, t) =
            timed(|| LinearIndex::build(data.gallery.vectors().view(), &Default::default(), &()));
        build_s = Some(t);
        index?.save(&idx)?;
        std::fs::write(&stamp_path, &stamp)?;
    }
    let queries: Vectors = embed_store::npy::read_vectors(&queries_npy)?;
    let file_bytes = std::fs::metadata(&idx)?.len();

    // Load: map + validate. The file is in the page cache after the first round, as the
    // notebook's np.load figure was.
    let mut loads = Vec::new();
    let mut first_query = Vec::new();
    for _ in 0..a.repeats.max(3) {
        let (index, t) = timed(|| LinearIndex::load(&idx));
        let index = index?;
        loads.push(t);
        let (_, tq) = timed(|| index.search(queries.row(0), a.k));
        first_query.push(t + tq);
    }
    let mut index = LinearIndex::load(&idx)?;
    let (n, dim) = (index.len(), index.dim());

    let single = |index: &LinearIndex| -> Result<SingleRun, embed_store::Error> {
        let cpu0 = test_support::cpu_seconds();
        let mut times = Vec::new();
        let mut bytes = 0usize;
        let mut ids = Vec::new();
        for r in 0..a.repeats {
            for q in queries.view().rows().take(a.single_queries) {
                let (out, t) = timed(|| index.search_with_stats(q, a.k));
                let (hits, stats) = out?;
                times.push(t);
                if r == 0 {
                    bytes += stats.bytes;
                    ids.push(hits.iter().map(|h| h.id).collect());
                }
            }
        }
        let cpu = (test_support::cpu_seconds() - cpu0) / times.len() as f64;
        Ok((median(times), cpu, bytes as f64 / ids.len() as f64, ids))
    };
    let (single_s, single_cpu_s, single_bytes, ids) = single(&index)?;
    index.set_scan_mode(ScanMode::F32)?;
    let (single_f32_s, _, single_f32_bytes, ids_f32) = single(&index)?;
    assert_eq!(ids, ids_f32, "compact and f32 scans disagree");
    index.set_scan_mode(ScanMode::Auto)?;

    let mut thr = Vec::new();
    let mut thr_bytes = 0usize;
    for _ in 0..a.repeats {
        for q in queries.view().rows().take(a.single_queries) {
            let (out, t) = timed(|| index.search_threshold_with_stats(q, a.tau));
            thr_bytes += out?.1.bytes;
            thr.push(t);
        }
    }
    let thr_bytes = thr_bytes as f64 / thr.len() as f64;
    let mut batch = Vec::new();
    let mut batch_ids = Vec::new();
    let cpu0 = test_support::cpu_seconds();
    for _ in 0..a.repeats {
        let (hits, t) = timed(|| index.search_batch(queries.view(), a.k));
        batch.push(t);
        batch_ids = hits?;
    }
    let batch_cpu_s = (test_support::cpu_seconds() - cpu0) / batch.len() as f64;
    let batch_ids: Vec<Vec<u32>> = batch_ids
        .iter()
        .map(|h| h.iter().map(|h| h.id).collect())
        .collect();
    assert_eq!(
        batch_ids[..ids.len()],
        ids,
        "batch and single answers disagree"
    );
    let mut batch_thr = Vec::new();
    for _ in 0..a.repeats {
        batch_thr.push(timed(|| index.search_batch_threshold(queries.view(), a.tau)).1);
    }

    let ids_json: Vec<String> = ids
        .iter()
        .map(|v| {
            format!(
                "[{}]",
                v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    println!(
        "{{\"engine\":\"search-linear\",\"n\":{n},\"dim\":{dim},\"queries\":{},\"k\":{},\"tau\":{},\
         \"threads\":{},\"kernel\":\"{}+{}\",\"build_s\":{},\"index_bytes\":{file_bytes},\
         \"load_s\":{},\"load_first_query_s\":{},\"single_s\":{},\"single_cpu_s\":{},\"single_bytes\":{},\
         \"single_f32_s\":{},\"single_f32_bytes\":{},\"threshold_s\":{},\"threshold_bytes\":{},\"batch_s\":{},\"batch_cpu_s\":{},\
         \"batch_threshold_s\":{},\"ids\":[{}]}}",
        queries.len(),
        a.k,
        a.tau,
        rayon::current_num_threads(),
        embed_store::kernels::dot_kernel_name(),
        search_linear::compact_kernel_name(),
        build_s.map_or("null".to_string(), |t| t.to_string()),
        median(loads),
        median(first_query),
        single_s,
        single_cpu_s,
        single_bytes,
        single_f32_s,
        single_f32_bytes,
        median(thr),
        thr_bytes,
        median(batch),
        batch_cpu_s,
        median(batch_thr),
        ids_json.join(",")
    );
    Ok(())
}
