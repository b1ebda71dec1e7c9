//! Scratch diagnostics for issue 19 (graph quality): not a user tool.
//!
//! hnsw_diag prepare DIR [--identities 200] [--distractors 100000] [--seed 42]
//! hnsw_diag build DIR NAME [--seed 100] [--f32] [--m 48] [--efc 200]
//! hnsw_diag sweep DIR FILE [--hnswlib] [--efs 10,20,40,80,100]
//! hnsw_diag stats DIR FILE [--hnswlib]

use std::path::{Path, PathBuf};
use std::time::Instant;

use embed_store::synth::{SynthSpec, generate};
use embed_store::{SearchIndex, Vectors};
use search_hnsw::{HnswIndex, HnswParams, Space};
use search_linear::LinearIndex;

const K: usize = 4;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("bad value for {name}")))
        .unwrap_or(default)
}

fn read_f32(path: &Path) -> Vec<f32> {
    bytemuck::pod_collect_to_vec(&std::fs::read(path).expect("read"))
}

fn shape(dir: &Path) -> (usize, usize, usize) {
    let s = std::fs::read_to_string(dir.join("shape.txt")).unwrap();
    let v: Vec<usize> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();
    (v[0], v[1], v[2])
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(&args[1]);
    match args[0].as_str() {
        "prepare" => {
            std::fs::create_dir_all(&dir).unwrap();
            let spec = SynthSpec {
                identities: arg(&args, "--identities", 200),
                distractors: arg(&args, "--distractors", 100_000),
                seed: arg(&args, "--seed", 42),
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
            std::fs::write(dir.join("gallery.f32"), bytemuck::cast_slice(g.as_slice())).unwrap();
            std::fs::write(dir.join("queries.f32"), bytemuck::cast_slice(q.as_slice())).unwrap();
            std::fs::write(dir.join("truth.u32"), bytemuck::cast_slice(&truth)).unwrap();
            std::fs::write(
                dir.join("shape.txt"),
                format!("{} {} {} {}\n", g.len(), q.len(), g.dim(), spec.distractors),
            )
            .unwrap();
        }
        "build" => {
            let (n, _, dim) = shape(&dir);
            let g = Vectors::new(dim, read_f32(&dir.join("gallery.f32"))).unwrap();
            assert_eq!(g.len(), n);
            let p = HnswParams {
                seed: arg(&args, "--seed", 100),
                quantize: !args.iter().any(|a| a == "--f32"),
                m: arg(&args, "--m", 48),
                ef_construction: arg(&args, "--efc", 200),
                threads: arg(&args, "--threads", 0),
                ..HnswParams::default()
            };
            let t = Instant::now();
            let index = HnswIndex::build(g.view(), &p, &()).unwrap();
            let build_s = t.elapsed().as_secs_f64();
            let name = &args[2];
            index.save(&dir.join(format!("{name}.hnsw"))).unwrap();
            index
                .save_hnswlib(&dir.join(format!("{name}.hnswlib")))
                .unwrap();
            println!("{name}: built in {build_s:.1} s");
        }
        "sweep" => {
            let (_, nq, dim) = shape(&dir);
            let index = open(&dir, &args[2], &args, dim);
            let q = read_f32(&dir.join("queries.f32"));
            let truth: Vec<u32> =
                bytemuck::pod_collect_to_vec(&std::fs::read(dir.join("truth.u32")).unwrap());
            let efs: String = arg(&args, "--efs", "10,20,40,80,100".to_string());
            let mut line = format!("{:<28}", args[2]);
            for ef in efs.split(',').map(|e| e.parse::<usize>().unwrap()) {
                let mut hit = 0;
                let mut found_q = 0;
                for i in 0..nq {
                    let res = index.search_ef(&q[i * dim..(i + 1) * dim], K, ef).unwrap();
                    let want = &truth[i * K..(i + 1) * K];
                    let h = res.iter().filter(|h| want.contains(&h.id)).count();
                    hit += h;
                    found_q += usize::from(h > 0);
                }
                let started = Instant::now();
                let mut best = f64::INFINITY;
                while started.elapsed().as_secs_f64() < 0.4 {
                    let t = Instant::now();
                    for i in 0..nq {
                        std::hint::black_box(
                            index.search_ef(&q[i * dim..(i + 1) * dim], K, ef).unwrap(),
                        );
                    }
                    best = best.min(t.elapsed().as_secs_f64());
                }
                let qps = nq as f64 / best;
                line += &format!(
                    " ef{ef}: {:.4} ({:.3} any) {:.0}q/s |",
                    hit as f64 / (nq * K) as f64,
                    found_q as f64 / nq as f64,
                    qps
                );
            }
            println!("{line}");
        }
        "cmp" => {
            // alternate several index files, round after round
            let (_, nq, dim) = shape(&dir);
            let files: Vec<&str> = args[2].split(',').collect();
            let indexes: Vec<HnswIndex> = files.iter().map(|f| open(&dir, f, &args, dim)).collect();
            let q = read_f32(&dir.join("queries.f32"));
            let truth: Vec<u32> =
                bytemuck::pod_collect_to_vec(&std::fs::read(dir.join("truth.u32")).unwrap());
            let ef: usize = arg(&args, "--ef", 20);
            let rounds: usize = arg(&args, "--rounds", 7);
            let mut times = vec![Vec::new(); files.len()];
            let mut recall = vec![0.0; files.len()];
            for _ in 0..rounds {
                for (c, index) in indexes.iter().enumerate() {
                    let t = Instant::now();
                    let mut hit = 0;
                    for i in 0..nq {
                        let res = index.search_ef(&q[i * dim..(i + 1) * dim], K, ef).unwrap();
                        let want = &truth[i * K..(i + 1) * K];
                        hit += res.iter().filter(|h| want.contains(&h.id)).count();
                    }
                    times[c].push(nq as f64 / t.elapsed().as_secs_f64());
                    recall[c] = hit as f64 / (nq * K) as f64;
                }
            }
            for (c, f) in files.iter().enumerate() {
                let t = &mut times[c];
                t.sort_by(|a, b| a.total_cmp(b));
                println!(
                    "{f} ef {ef}: recall {:.4}  q/s median {:.0} best {:.0}",
                    recall[c],
                    t[t.len() / 2],
                    t[t.len() - 1]
                );
            }
        }
        "stats" => {
            let (n, _, dim) = shape(&dir);
            let s = std::fs::read_to_string(dir.join("shape.txt")).unwrap();
            let distractors: usize = s.split_whitespace().nth(3).unwrap().parse().unwrap();
            let ids = n - distractors;
            let index = open(&dir, &args[2], &args, dim);
            let lists = index.level0_lists();
            let mut indeg = vec![0u32; n];
            let mut outdeg = vec![0usize; n];
            for (i, l) in lists.iter().enumerate() {
                outdeg[i] = l.len();
                for &j in l {
                    indeg[j as usize] += 1;
                }
            }
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let od: Vec<f64> = outdeg.iter().map(|&x| x as f64).collect();
            let id_in: Vec<f64> = indeg[..ids].iter().map(|&x| x as f64).collect();
            let d_in: Vec<f64> = indeg[ids..].iter().map(|&x| x as f64).collect();
            // in-edges into identity rows from distractor rows
            let mut from_noise = vec![0u32; ids];
            for l in &lists[ids..] {
                for &j in l {
                    if (j as usize) < ids {
                        from_noise[j as usize] += 1;
                    }
                }
            }
            let fnz: Vec<f64> = from_noise.iter().map(|&x| x as f64).collect();
            let truth: Vec<u32> =
                bytemuck::pod_collect_to_vec(&std::fs::read(dir.join("truth.u32")).unwrap());
            let mut orphan = 0;
            for t in truth.chunks(K) {
                for &a in t {
                    if !t.iter().any(|&b| b != a && lists[b as usize].contains(&a)) {
                        orphan += 1;
                    }
                }
            }
            println!(
                "truth rows with no in-link from a mate: {orphan} of {}",
                truth.len()
            );
            let zero_in = indeg.iter().filter(|&&x| x == 0).count();
            println!(
                "{}: out-degree mean {:.1} (full {}), in-degree identities {:.1} / distractors {:.1}, identity in-edges from distractors {:.2} per row, rows with no in-edge {}",
                args[2],
                mean(&od),
                outdeg.iter().filter(|&&x| x == 96).count(),
                mean(&id_in),
                mean(&d_in),
                mean(&fnz),
                zero_in
            );
        }
        c => panic!("unknown command {c}"),
    }
}

fn open(dir: &Path, file: &str, args: &[String], dim: usize) -> HnswIndex {
    let path = dir.join(file);
    if args.iter().any(|a| a == "--hnswlib") {
        HnswIndex::load_hnswlib(&path, dim, Space::Cosine).unwrap()
    } else {
        HnswIndex::load(&path).unwrap()
    }
}
