#![no_main]
//! The notebook's `.npy` gallery reader on arbitrary bytes: an error or a gallery, never a panic.

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = common::as_file(data);
    if let Ok(g) = embed_store::npy::read_gallery(&path) {
        assert_eq!(g.vectors().len(), g.labels().len());
    }
    let _ = embed_store::npy::read_vectors(&path);
    let _ = embed_store::npy::read_labels(&path);
});
