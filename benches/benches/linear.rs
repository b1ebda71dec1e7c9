//! Criterion benchmarks of the exact linear engine on the notebook-scale gallery (200 people ×
//! 5 images + 100,000 distractors, 512-d): single-query latency (compact and plain f32 scans,
//! top-k and threshold), a 200-query batch, and load. `LINEAR_BENCH_1M=1` adds a 1M × 512
//! gallery (about 2.6 GB of index and a minute of set-up).
//!
//! `cargo bench -p benches --bench linear`; the faiss comparison is `cargo xtask peers --peers faiss-flat`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use embed_store::SearchIndex;
use embed_store::synth::{SynthSpec, generate};
use search_linear::{LinearIndex, ScanMode};

fn bench_size(c: &mut Criterion, distractors: usize) {
    let spec = SynthSpec {
        distractors,
        ..SynthSpec::default()
    };
    let data = generate(&spec, &());
    let path = std::env::temp_dir().join(format!(
        "linear-bench-{}-{distractors}.idx",
        std::process::id()
    ));
    LinearIndex::build(data.gallery.vectors().view(), &Default::default(), &())
        .and_then(|index| index.save(&path))
        .expect("build and save");
    let mut index = LinearIndex::load(&path).expect("load");
    let queries = data.queries.vectors();
    let n = index.len();
    let name = format!("{}x512", n);
    let f32_bytes = (n * 512 * 4) as u64;

    let mut g = c.benchmark_group("linear/single");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(f32_bytes));
    for mode in [ScanMode::Auto, ScanMode::F32] {
        index.set_scan_mode(mode).expect("mode");
        let mut i = 0;
        g.bench_function(BenchmarkId::new(format!("top10/{mode:?}"), &name), |b| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                black_box(index.search(queries.row(i), 10).expect("search"))
            })
        });
        g.bench_function(BenchmarkId::new(format!("tau0.35/{mode:?}"), &name), |b| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                black_box(
                    index
                        .search_threshold(queries.row(i), 0.35)
                        .expect("search"),
                )
            })
        });
    }
    index.set_scan_mode(ScanMode::Auto).expect("mode");
    g.finish();

    let mut g = c.benchmark_group("linear/batch200");
    g.sample_size(10);
    g.throughput(Throughput::Elements(queries.len() as u64));
    g.bench_function(BenchmarkId::new("top10", &name), |b| {
        b.iter(|| black_box(index.search_batch(queries.view(), 10).expect("batch")))
    });
    g.bench_function(BenchmarkId::new("tau0.35", &name), |b| {
        b.iter(|| {
            black_box(
                index
                    .search_batch_threshold(queries.view(), 0.35)
                    .expect("batch"),
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("linear/load");
    g.bench_function(BenchmarkId::new("mmap", &name), |b| {
        b.iter(|| black_box(LinearIndex::load(&path).expect("load")))
    });
    g.finish();
    drop(index);
    let _ = std::fs::remove_file(&path);
}

fn linear(c: &mut Criterion) {
    bench_size(c, 100_000);
    if std::env::var_os("LINEAR_BENCH_1M").is_some() {
        bench_size(c, 1_000_000);
    }
}

criterion_group!(benches, linear);
criterion_main!(benches);
