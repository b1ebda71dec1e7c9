//! Shared by every fuzz target: hand the input to a loader as a real file (on tmpfs when there is
//! one), since loaders memory-map paths; query whatever loaded.

#![allow(dead_code)]

use std::path::PathBuf;

use embed_store::SearchIndex;

pub fn as_file(data: &[u8]) -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let path = dir.join(format!("face-search-fuzz-{}", std::process::id()));
    std::fs::write(&path, data).expect("write fuzz input");
    path
}

/// Asks a loaded index every kind of query: errors are fine, panics and hangs are not.
pub fn query<E: SearchIndex>(index: &E) {
    let q: Vec<f32> = (0..index.dim().min(4096)).map(|i| (i as f32 * 0.7).sin() + 0.1).collect();
    if let Ok(hits) = index.search(&q, 3) {
        assert!(hits.len() <= 3);
    }
    let _ = index.search_threshold(&q, 0.5);
}
