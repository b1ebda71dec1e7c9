//! Criterion benchmarks of every engine through the shared `SearchIndex` trait, so that a
//! regression in any of them shows: build, load, and one top-4 query (the notebook's k) per
//! engine, on a small gallery (200 people × 5 images + 2,000 distractors, 512-d) by default.
//!
//! `ENGINES_BENCH_100K=1` adds the notebook-scale gallery (100,000 distractors): queries and
//! loads of every engine, and the builds of the linear engine and the forest. The HNSW build at
//! the notebook's settings takes minutes there, too long for criterion's ten samples: `cargo
//! xtask bench` times it once (and `--sweep` gives recall and queries/s per `ef`).
//!
//! `cargo bench -p benches --bench engines` (`-- small/top4` for the small queries only).

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use embed_store::SearchIndex;
use embed_store::synth::{Dataset, SynthSpec, generate};
use search_forest::ForestIndex;
use search_hnsw::HnswIndex;
use search_linear::LinearIndex;

const K: usize = 4;

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

fn build<E: SearchIndex>(g: &mut Group<'_>, data: &Dataset, name: &str) {
    let gallery = data.gallery.vectors();
    let params = E::Params::default();
    g.bench_function(BenchmarkId::new(E::NAME, name), |b| {
        b.iter(|| black_box(E::build(gallery.view(), &params, &()).expect("build")))
    });
}

fn save<E: SearchIndex>(data: &Dataset, name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "engines-bench-{}-{}-{name}.idx",
        E::NAME,
        std::process::id()
    ));
    E::build(data.gallery.vectors().view(), &E::Params::default(), &())
        .and_then(|index| index.save(&path))
        .expect("build and save");
    path
}

fn load<E: SearchIndex>(g: &mut Group<'_>, path: &Path, name: &str) {
    g.bench_function(BenchmarkId::new(E::NAME, name), |b| {
        b.iter(|| black_box(E::load(path).expect("load")))
    });
}

fn top4<E: SearchIndex>(g: &mut Group<'_>, path: &Path, data: &Dataset, name: &str) {
    let index = E::load(path).expect("load");
    let queries = data.queries.vectors();
    let mut i = 0;
    g.bench_function(BenchmarkId::new(E::NAME, name), |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            black_box(index.search(queries.row(i), K).expect("search"))
        })
    });
}

/// Every engine with its default (the notebook's) parameters, one group per figure so that
/// the engines sit side by side in criterion's report.
fn run_all(c: &mut Criterion, group: &str, distractors: usize, build_hnsw: bool) {
    let data = generate(
        &SynthSpec {
            distractors,
            ..SynthSpec::default()
        },
        &(),
    );
    let gallery = data.gallery.vectors();
    let name = format!("{}x{}", gallery.len(), gallery.dim());

    let mut g = c.benchmark_group(format!("{group}/build"));
    g.sample_size(10);
    g.throughput(Throughput::Elements(gallery.len() as u64));
    build::<LinearIndex>(&mut g, &data, &name);
    if build_hnsw {
        build::<HnswIndex>(&mut g, &data, &name);
    }
    build::<ForestIndex>(&mut g, &data, &name);
    g.finish();

    let paths = [
        save::<LinearIndex>(&data, &name),
        save::<HnswIndex>(&data, &name),
        save::<ForestIndex>(&data, &name),
    ];
    let mut g = c.benchmark_group(format!("{group}/load"));
    load::<LinearIndex>(&mut g, &paths[0], &name);
    load::<HnswIndex>(&mut g, &paths[1], &name);
    load::<ForestIndex>(&mut g, &paths[2], &name);
    g.finish();

    let mut g = c.benchmark_group(format!("{group}/top4"));
    g.throughput(Throughput::Elements(1));
    top4::<LinearIndex>(&mut g, &paths[0], &data, &name);
    top4::<HnswIndex>(&mut g, &paths[1], &data, &name);
    top4::<ForestIndex>(&mut g, &paths[2], &data, &name);
    g.finish();
    for path in paths {
        let _ = std::fs::remove_file(path);
    }
}

fn engines(c: &mut Criterion) {
    run_all(c, "small", 2_000, true);
    if std::env::var_os("ENGINES_BENCH_100K").is_some() {
        run_all(c, "100k", 100_000, false);
    }
}

criterion_group!(benches, engines);
criterion_main!(benches);
