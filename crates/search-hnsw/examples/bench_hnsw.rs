//! Our side of `scripts/bench_hnsw.sh`: the notebook's workload, measured.
//!
//! ```text
//! bench_hnsw prepare DIR [--distractors N] [--seed S]   dataset + exact top-4 -> DIR
//! bench_hnsw run DIR [--m 48] [--efc 200] [--efs 10,20,...] [--reps R] [--f32] [--reuse]
//!                                                  -> DIR/ours.json (ours-f32.json)
//! ```
//! `prepare` writes raw little-endian files that the Python peer reads with `np.fromfile`:
//! `gallery.f32` (n × dim), `queries.f32` (q × dim), `truth.u32` (q × 4, exact top-4 rows) and
//! `shape.txt` ("n q dim"). `run` builds our index on every core, saves it, loads it back,
//! and sweeps ef on one thread and on all threads, printing JSON.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use embed_store::synth::{SynthSpec, generate};
use embed_store::{SearchIndex, Vectors};
use rayon::prelude::*;
use search_hnsw::{HnswIndex, HnswParams};
use search_linear::LinearIndex;

const K: usize = 4;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("bad value for {name}")))
        .unwrap_or(default)
}

fn write_raw<T: bytemuck::Pod>(path: &Path, data: &[T]) {
    std::fs::write(path, bytemuck::cast_slice(data)).expect("write");
}

fn read_f32(path: &Path) -> Vec<f32> {
    bytemuck::pod_collect_to_vec(&std::fs::read(path).expect("read"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(cmd), Some(dir)) = (args.first(), args.get(1)) else {
        eprintln!("usage: bench_hnsw prepare|run DIR [flags]");
        std::process::exit(2);
    };
    let dir = PathBuf::from(dir);
    match cmd.as_str() {
        "prepare" => prepare(&dir, &args),
        "run" => run(&dir, &args),
        _ => panic!("unknown command {cmd}"),
    }
}

fn prepare(dir: &Path, args: &[String]) {
    std::fs::create_dir_all(dir).unwrap();
    let spec = SynthSpec {
        distractors: arg(args, "--distractors", 100_000),
        seed: arg(args, "--seed", 42),
        ..SynthSpec::default()
    };
    let data = generate(&spec, &());
    let (g, q) = (data.gallery.vectors(), data.queries.vectors());
    let exact = LinearIndex::build(g.view(), &Default::default(), &()).unwrap();
    let truth: Vec<u32> = q
        .view()
        .rows()
        .flat_map(|r| exact.search(r, K).unwrap().into_iter().map(|h| h.id))
        .collect();
    write_raw(&dir.join("gallery.f32"), g.as_slice());
    write_raw(&dir.join("queries.f32"), q.as_slice());
    write_raw(&dir.join("truth.u32"), &truth);
    std::fs::write(
        dir.join("shape.txt"),
        format!("{} {} {}\n", g.len(), q.len(), g.dim()),
    )
    .unwrap();
    eprintln!(
        "prepared {} x {} and {} queries in {}",
        g.len(),
        g.dim(),
        q.len(),
        dir.display()
    );
}

/// CPU seconds used so far by all threads of this process (from /proc, nanosecond
/// resolution): on a shared machine this is steadier than wall time.
fn cpu_s() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        / 1e9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn run(dir: &Path, args: &[String]) {
    let shape = std::fs::read_to_string(dir.join("shape.txt")).unwrap();
    let [n, nq, dim]: [usize; 3] = shape
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let gallery = Vectors::new(dim, read_f32(&dir.join("gallery.f32"))).unwrap();
    let queries = Vectors::new(dim, read_f32(&dir.join("queries.f32"))).unwrap();
    let truth: Vec<u32> =
        bytemuck::pod_collect_to_vec(&std::fs::read(dir.join("truth.u32")).unwrap());
    assert_eq!((gallery.len(), queries.len(), truth.len()), (n, nq, nq * K));
    let efs: Vec<usize> = arg(
        args,
        "--efs",
        "10,20,40,60,80,100,150,200,300,400".to_string(),
    )
    .split(',')
    .map(|x| x.parse().unwrap())
    .collect();
    let reps: usize = arg(args, "--reps", 5);
    let params = HnswParams {
        m: arg(args, "--m", 48),
        ef_construction: arg(args, "--efc", 200),
        quantize: !args.iter().any(|a| a == "--f32"),
        ..Default::default()
    };
    let tag = if params.quantize { "ours" } else { "ours-f32" };
    let path = dir.join(format!("{tag}.hnsw"));
    let mut json = format!("{{\n  \"engine\": \"{tag}\",\n");
    let mut build_cpu_s = f64::NAN;
    let build_s = if args.iter().any(|a| a == "--reuse") && path.exists() {
        f64::NAN
    } else {
        let (t, c) = (Instant::now(), cpu_s());
        let index = HnswIndex::build(gallery.view(), &params, &()).unwrap();
        let build_s = t.elapsed().as_secs_f64();
        build_cpu_s = cpu_s() - c;
        eprintln!(
            "{tag}: built in {build_s:.1} s on {} threads",
            rayon::current_num_threads()
        );
        index.save(&path).unwrap();
        build_s
    };
    let loads: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            let i = HnswIndex::load(&path).unwrap();
            let s = t.elapsed().as_secs_f64();
            drop(i);
            s
        })
        .collect();
    let load_s = median(loads);
    let index = HnswIndex::load(&path).unwrap();
    let t = Instant::now();
    index.search(queries.row(0), K).unwrap();
    let first_query_s = t.elapsed().as_secs_f64();
    let _ = writeln!(
        json,
        "  \"build_s\": {build_s}, \"build_cpu_s\": {build_cpu_s}, \"load_s\": {load_s}, \"first_query_s\": {first_query_s}, \"threads\": {}, \"kernel\": \"{}\", \"index_bytes\": {},",
        rayon::current_num_threads(),
        HnswIndex::kernel_name(),
        std::fs::metadata(&path).unwrap().len()
    );
    json.push_str("  \"sweep\": [\n");
    let rows: Vec<&[f32]> = queries.view().rows().collect();
    for (i, &ef) in efs.iter().enumerate() {
        let recall = {
            let mut hit = 0;
            for (qi, q) in rows.iter().enumerate() {
                let got = index.search_ef(q, K, ef).unwrap();
                let t = &truth[qi * K..(qi + 1) * K];
                hit += got.iter().filter(|h| t.contains(&h.id)).count();
            }
            hit as f64 / (nq * K) as f64
        };
        let c = cpu_s();
        let single = (0..reps)
            .map(|_| {
                let t = Instant::now();
                for q in &rows {
                    std::hint::black_box(index.search_ef(q, K, ef).unwrap());
                }
                nq as f64 / t.elapsed().as_secs_f64()
            })
            .collect();
        let single_cpu = (nq * reps) as f64 / (cpu_s() - c);
        let multi = (0..reps)
            .map(|_| {
                let t = Instant::now();
                rows.par_iter().for_each(|q| {
                    std::hint::black_box(index.search_ef(q, K, ef).unwrap());
                });
                nq as f64 / t.elapsed().as_secs_f64()
            })
            .collect();
        let (single, multi) = (median(single), median(multi));
        eprintln!(
            "{tag} ef={ef:4} recall@4={recall:.4} qps(1)={single:9.0} qps(1, per cpu s)={single_cpu:9.0} qps(all)={multi:9.0}"
        );
        let _ = writeln!(
            json,
            "    {{\"ef\": {ef}, \"recall\": {recall}, \"qps_1\": {single}, \"qps_1_cpu\": {single_cpu}, \"qps_all\": {multi}}}{}",
            if i + 1 < efs.len() { "," } else { "" }
        );
    }
    json.push_str("  ]\n}\n");
    std::fs::write(dir.join(format!("{tag}.json")), &json).unwrap();
    print!("{json}");
}
