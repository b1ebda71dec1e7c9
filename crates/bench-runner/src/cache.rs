//! The page cache state a measurement starts from: a file evicted from memory ("cold"), or
//! read in full ("warm").

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use search_core::{Error, Result};

/// Drops `path`'s pages from the kernel's page cache (`posix_fadvise(POSIX_FADV_DONTNEED)`;
/// no root needed). Pages that a live memory map of this process holds, or that are dirty,
/// stay: drop every index on the file first (our saves are synced).
pub fn evict(path: &Path) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    fadvise(&file, path, libc::POSIX_FADV_DONTNEED)
}

/// Seconds to read `path` from start to end in 1 MiB reads after evicting it: the time to
/// load a file from cold the simplest way. Evicts it again afterwards.
pub fn read_cold_seconds(path: &Path) -> Result<f64> {
    evict(path)?;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    fadvise(&file, path, libc::POSIX_FADV_SEQUENTIAL)?;
    let start = Instant::now();
    read_through(file, path)?;
    let seconds = start.elapsed().as_secs_f64();
    evict(path)?;
    Ok(seconds)
}

/// Reads `path` in full so that its pages are in the page cache.
pub fn make_warm(path: &Path) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    read_through(file, path)
}

fn read_through(mut file: std::fs::File, path: &Path) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
}

fn fadvise(file: &std::fs::File, path: &Path, advice: libc::c_int) -> Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the duration of the call; offset 0 and length 0
    // mean the whole file.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, advice) };
    if rc != 0 {
        return Err(Error::io(path, std::io::Error::from_raw_os_error(rc)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_reads_the_same_after_eviction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        std::fs::File::open(&path).unwrap().sync_all().unwrap();
        let seconds = read_cold_seconds(&path).unwrap();
        assert!(seconds > 0.0);
        evict(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
        make_warm(&path).unwrap();
        assert!(evict(&dir.path().join("missing")).is_err());
    }
}
