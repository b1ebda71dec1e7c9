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
        common::query(&index);
    }
});
