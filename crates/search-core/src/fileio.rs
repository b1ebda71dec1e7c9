//! File helpers shared by every engine: atomic writes and validated memory maps.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Writes a file atomically: `write` fills a temporary file in the same folder, which is
/// flushed, fsynced and renamed over `path` only when `write` succeeds. A failure at any
/// point leaves the previous content of `path` untouched.
///
/// ```
/// use std::io::Write;
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("index.bin");
/// search_core::write_atomically(&path, |w| w.write_all(b"good"))?;
/// let failed = search_core::write_atomically(&path, |w| {
///     w.write_all(b"half")?;
///     Err(std::io::Error::other("disk full"))
/// });
/// assert!(failed.is_err());
/// assert_eq!(std::fs::read(&path)?, b"good");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&mut File>) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io_err = |e| Error::io(path, e);
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io_err)?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        write(&mut w).map_err(io_err)?;
        w.flush().map_err(io_err)?;
    }
    tmp.as_file().sync_all().map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    // Make the rename itself durable.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Maps `path` read-only into memory.
///
/// The map is only as trustworthy as the file: callers validate every header field against
/// `map.len()` before use. (Like every mmap, it assumes no other process truncates the file
/// while it is open.)
pub fn map_file(path: &Path) -> Result<memmap2::Mmap> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only; the file is not modified by this process while mapped.
    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))
}
