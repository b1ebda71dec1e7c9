#![no_main]
//! hnswlib's index files on arbitrary bytes: the first byte picks the space and dimension.

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use search_hnsw::{HnswIndex, Space};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let space = [Space::Cosine, Space::InnerProduct, Space::L2][usize::from(first % 3)];
    let dim = usize::from(first / 3 % 16) + 1;
    let path = common::as_file(rest);
    if let Ok(index) = HnswIndex::load_hnswlib(&path, dim, space) {
        common::query(&index);
    }
});
