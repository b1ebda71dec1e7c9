//! Times one build of the benchmark forest: `build_time [iterations] [leaf|annoy] [distractors]`.
use embed_store::SearchIndex;
use embed_store::synth::{SynthSpec, generate};
use search_forest::{ForestIndex, ForestParams};
use std::time::Instant;

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
    let (t, c) = (Instant::now(), test_support::cpu_seconds());
    let f = ForestIndex::build(data.gallery.vectors().view(), &params, &()).unwrap();
    println!(
        "build {:.2} s wall, {:.2} s CPU, {} nodes",
        t.elapsed().as_secs_f64(),
        test_support::cpu_seconds() - c,
        f.n_nodes()
    );
}
