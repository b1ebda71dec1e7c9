//! Times one build of the benchmark forest: `build_time [iterations] [leaf|annoy] [distractors]`.
use embed_store::SearchIndex;
use embed_store::synth::{SynthSpec, generate};
use search_forest::{ForestIndex, ForestParams};
use std::time::Instant;

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f[11] + f[12]) / 100.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut params = ForestParams::default();
    if let Some(i) = args.next() {
        params.two_means_iterations = i.parse().unwrap();
    }
    if let Some(l) = args.next() {
        params.leaf_size = l.parse().ok();
    }
    let mut spec = SynthSpec::default();
    if let Some(d) = args.next() {
        spec.distractors = d.parse().unwrap();
    }
    let data = generate(&spec, &());
    let (t, c) = (Instant::now(), cpu_seconds());
    let f = ForestIndex::build(data.gallery.vectors().view(), &params, &()).unwrap();
    println!(
        "build {:.2} s wall, {:.2} s CPU, {} nodes",
        t.elapsed().as_secs_f64(),
        cpu_seconds() - c,
        f.n_nodes()
    );
}
