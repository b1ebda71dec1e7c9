#![no_main]
//! Annoy files with a caller-given dimension and metric on arbitrary bytes: the first byte
//! picks them.

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use search_forest::{ForestIndex, Metric};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let metric = if first & 1 == 0 { Metric::Angular } else { Metric::Euclidean };
    let dim = usize::from(first >> 1) % 16 + 1;
    let path = common::as_file(rest);
    if let Ok(index) = ForestIndex::open(&path, dim, metric) {
        common::query(&index);
    }
});
