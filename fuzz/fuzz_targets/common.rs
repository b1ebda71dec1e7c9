//! Shared by every fuzz target: hand the input to a loader as a real file (on tmpfs when there is
//! one), since loaders memory-map paths.

use std::path::PathBuf;

pub fn as_file(data: &[u8]) -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let path = dir.join(format!("face-search-fuzz-{}", std::process::id()));
    std::fs::write(&path, data).expect("write fuzz input");
    path
}
