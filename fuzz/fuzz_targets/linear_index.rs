#![no_main]
//! The linear engine's index loader on arbitrary bytes; whatever loads must answer queries.

#[path = "common.rs"]
mod common;

use embed_store::SearchIndex;
use libfuzzer_sys::fuzz_target;
use search_linear::LinearIndex;

fuzz_target!(|data: &[u8]| {
    let path = common::as_file(data);
    if let Ok(index) = LinearIndex::load(&path) {
        let q = vec![1.0f32; index.dim().min(4096)];
        let _ = index.search(&q, 3);
        let _ = index.search_threshold(&q, 0.5);
    }
});
