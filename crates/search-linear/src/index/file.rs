//! The index file: writing an index to the container format, reading it back (checking its
//! shape and code constants before any search can touch it), and the `.npy` cache keyed by the
//! source file's size and modification time. It does not know how rows are scanned or batched;
//! it only produces and consumes the `Storage` the rest of the index reads.

use std::path::Path;

use search_core::container::{Container, write_container};
use search_core::{Error, Result, SearchIndex, Vectors};

use super::{KIND_BYTES, LinearIndex, LinearParams, ScanMode, Storage, VERSION};

impl LinearIndex {
    /// Opens a gallery file (e.g. the notebook's `.npy`, read by `read`, such as
    /// `embed_store::npy::read_vectors`) through a native index file at `cache`: the first call
    /// reads `source`, builds and saves `cache`; later calls only map `cache`, as long as it was
    /// made from a file of the same size and modification time.
    pub fn open_cached(
        source: &Path,
        cache: &Path,
        read: impl FnOnce(&Path) -> Result<Vectors>,
    ) -> Result<LinearIndex> {
        let stamp = source_stamp(source)?;
        if let Ok(c) = Container::open(cache, KIND_BYTES, VERSION..=VERSION)
            && c.section_as::<u64>("source").ok() == Some(&stamp[..])
        {
            return Self::from_container(c);
        }
        let vectors = read(source)?;
        let index = LinearIndex::build(vectors.view(), &LinearParams::default(), &())?;
        index.write(cache, Some(&stamp))?;
        LinearIndex::load(cache)
    }

    pub(super) fn write(&self, path: &Path, source: Option<&[u64; 3]>) -> Result<()> {
        let meta = [
            self.dim as u64,
            self.len as u64,
            self.norm_max.to_bits(),
            u64::from(self.codes().is_some()),
        ];
        let mut sections: Vec<(&str, &[u8])> = vec![
            ("meta", bytemuck::cast_slice(&meta)),
            ("vectors", bytemuck::cast_slice(self.vectors())),
        ];
        if let Some(c) = self.codes() {
            sections.push(("codes", bytemuck::cast_slice(c.codes)));
            sections.push(("code_meta", bytemuck::cast_slice(c.meta)));
        }
        if let Some(s) = source {
            sections.push(("source", bytemuck::cast_slice(s)));
        }
        write_container(path, KIND_BYTES, VERSION, &sections)
    }

    pub(super) fn from_container(c: Container) -> Result<LinearIndex> {
        let path = c.path().to_owned();
        let bad = |m: String| Error::format(&path, m);
        let meta = c.section_as::<u64>("meta")?;
        let (dim, len, norm_max, has_codes) = match (c.version(), meta) {
            (1, &[dim, len]) => (dim, len, 1.0 + 1e-6, false),
            (2, &[dim, len, norm_bits, flags]) if flags <= 1 => {
                (dim, len, f64::from_bits(norm_bits), flags == 1)
            }
            _ => {
                return Err(bad(format!(
                    "meta section of {} values is not valid for format version {}",
                    meta.len(),
                    c.version()
                )));
            }
        };
        if dim == 0 || len > u64::from(u32::MAX) || !(norm_max.is_finite() && norm_max > 0.0) {
            return Err(bad(format!(
                "impossible shape: {len} rows of {dim} dimensions (norm bound {norm_max})"
            )));
        }
        let expected = dim
            .checked_mul(len)
            .filter(|&e| e <= (isize::MAX as u64) / 4)
            .ok_or_else(|| bad(format!("impossible shape: {len} rows of {dim} dimensions")))?
            as usize;
        c.section_exact::<f32>("vectors", expected)?;
        if has_codes {
            c.section_exact::<i8>("codes", expected)?;
            let m = c.section_exact::<f32>("code_meta", 2 * len as usize)?;
            // 8 bytes a row: cheap next to the codes themselves, and it keeps NaN out of bounds.
            if let Some(i) = m
                .chunks_exact(2)
                .position(|p| !(p[0].is_finite() && p[0] > 0.0 && p[1].is_finite() && p[1] >= 0.0))
            {
                return Err(bad(format!(
                    "code constants of row {i} are invalid: {:?}",
                    &m[2 * i..2 * i + 2]
                )));
            }
        }
        Ok(LinearIndex {
            dim: dim as usize,
            len: len as usize,
            norm_max,
            storage: Storage::Mapped {
                container: c,
                has_codes,
            },
            mode: ScanMode::Auto,
        })
    }
}

/// Size and modification time of `path`, to tell whether a cache was made from it.
fn source_stamp(path: &Path) -> Result<[u64; 3]> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default();
    Ok([meta.len(), mtime.as_secs(), u64::from(mtime.subsec_nanos())])
}
