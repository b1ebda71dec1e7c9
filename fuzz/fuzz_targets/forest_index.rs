#![no_main]
//! The forest loader (Annoy's format, dimension inferred) on arbitrary bytes.

#[path = "common.rs"]
mod common;

use embed_store::SearchIndex;
use libfuzzer_sys::fuzz_target;
use search_forest::ForestIndex;

fuzz_target!(|data: &[u8]| {
    let path = common::as_file(data);
    if let Ok(index) = ForestIndex::load(&path) {
        common::query(&index);
    }
});
