//! The exact index: normalised f32 rows plus their int8 codes, one memory-mappable file.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use rayon::prelude::*;
use search_core::container::Container;
use search_core::{
    Access, Error, Hit, Progress, Result, SearchIndex, VectorView, Warmup, normalized_rows,
};
use search_kernels::Aligned;

use crate::codes::{encode_row, query_code_max};

mod batch;
mod file;
mod scan;

pub use batch::BATCH_BLOCK_ROWS;

pub(crate) const KIND_BYTES: &[u8; 8] = b"linear\0\0";
/// Version 1: `meta` + `vectors`. Version 2 adds `codes` and `code_meta` (still reads 1).
const VERSION: u32 = 2;
/// Rows per block of a single-query scan: 512 KiB of codes or 2 MiB of f32 at d = 512.
const BLOCK_ROWS: usize = 1024;
/// Below this many bytes of scanned data a single query stays on one thread.
const PARALLEL_BYTES: usize = 2 << 20;
/// Below this many rows `ScanMode::Auto` scans f32 rows directly.
const COMPACT_MIN_ROWS: usize = 2048;

/// Build parameters of the linear engine.
#[derive(Clone, Debug)]
pub struct LinearParams {
    /// Also store int8 codes of every row (a quarter of the f32 size) so that single queries
    /// scan a quarter of the bytes and re-check in f32 only the rows that could matter.
    /// Answers are identical either way. Default: true.
    pub compact_codes: bool,
}

impl Default for LinearParams {
    fn default() -> Self {
        LinearParams {
            compact_codes: true,
        }
    }
}

/// Which representation a single-query scan reads. Every mode returns identical answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScanMode {
    /// Compact codes when the index has them and the gallery is large enough to gain.
    #[default]
    Auto,
    /// Every f32 row (the reference).
    F32,
    /// The int8 codes, re-checking in f32 every row within the error bound of the k-th best
    /// score (or of τ).
    Compact,
}

/// What a single-query scan read, for reports (bytes scanned per second).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Rows whose compact code was scored.
    pub rows_compact: usize,
    /// Rows scored in f32 (all of them in f32 mode; the re-checked ones in compact mode).
    pub rows_f32: usize,
    /// Bytes of vectors, codes and per-row constants read.
    pub bytes: usize,
}

/// Exact cosine search over unit-normalised rows.
///
/// Every search path (f32 scan, compact scan, batch) returns exactly the hits, scores and
/// order that a plain f32 scan with [`search_kernels::dot`] returns.
#[derive(Debug)]
pub struct LinearIndex {
    dim: usize,
    len: usize,
    /// An upper bound on every row's Euclidean norm (1 up to rounding).
    norm_max: f64,
    storage: Storage,
    mode: ScanMode,
}

#[derive(Debug)]
enum Storage {
    Owned {
        vectors: Vec<f32>,
        codes: Option<(Aligned<i8>, Vec<f32>)>,
    },
    Mapped {
        container: Container,
        has_codes: bool,
    },
}

/// Borrowed int8 codes: `codes` (n × d) and `meta` (n × [scale, error bound]).
#[derive(Clone, Copy)]
struct Codes<'a> {
    codes: &'a [i8],
    meta: &'a [f32],
}

impl LinearIndex {
    /// The unit-normalised rows, row-major.
    pub fn vectors(&self) -> &[f32] {
        match &self.storage {
            Storage::Owned { vectors, .. } => vectors,
            Storage::Mapped { container, .. } => container
                .section_as::<f32>("vectors")
                .expect("checked on load"),
        }
    }

    fn codes(&self) -> Option<Codes<'_>> {
        match &self.storage {
            Storage::Owned { codes, .. } => {
                codes.as_ref().map(|(c, m)| Codes { codes: c, meta: m })
            }
            Storage::Mapped {
                container,
                has_codes: true,
            } => Some(Codes {
                codes: container
                    .section_as::<i8>("codes")
                    .expect("checked on load"),
                meta: container
                    .section_as::<f32>("code_meta")
                    .expect("checked on load"),
            }),
            Storage::Mapped { .. } => None,
        }
    }

    /// True when the index holds int8 codes, so that [`ScanMode::Compact`] is available.
    pub fn has_codes(&self) -> bool {
        self.codes().is_some() && query_code_max(self.dim).is_some()
    }

    /// The scan mode of single queries.
    pub fn scan_mode(&self) -> ScanMode {
        self.mode
    }

    /// Chooses what single queries scan. [`ScanMode::Compact`] fails on an index without codes.
    pub fn set_scan_mode(&mut self, mode: ScanMode) -> Result<()> {
        if mode == ScanMode::Compact && !self.has_codes() {
            return Err(Error::InvalidArgument(
                "this linear index holds no compact codes (built with compact_codes: false, \
                 saved by format version 1, or of too high a dimension)"
                    .into(),
            ));
        }
        self.mode = mode;
        Ok(())
    }

    /// Builds the index with explicit parameters (same as [`SearchIndex::build`]).
    fn build_with(vectors: VectorView<'_>, params: &LinearParams) -> Result<LinearIndex> {
        search_core::check_gallery_len(vectors.len())?;
        let dim = vectors.dim();
        let normalised = normalized_rows(vectors)?.into_inner();
        let norm_max = normalised
            .par_chunks(dim.max(1))
            .map(|r| r.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt())
            .reduce(|| 0.0, f64::max);
        // Rounding: a relative 1e-12 covers the f64 sums.
        let norm_max = norm_max.max(f64::MIN_POSITIVE) * (1.0 + 1e-12);
        let codes = (params.compact_codes && query_code_max(dim).is_some()).then(|| {
            let mut codes = Aligned::<i8>::zeroed(normalised.len());
            let mut meta = vec![0f32; 2 * vectors.len()];
            codes
                .par_chunks_mut(dim)
                .zip(meta.par_chunks_mut(2))
                .zip(normalised.par_chunks(dim))
                .for_each(|((c, m), row)| {
                    let (s, e) = encode_row(row, c);
                    m[0] = s;
                    m[1] = e;
                });
            (codes, meta)
        });
        Ok(LinearIndex {
            dim,
            len: vectors.len(),
            norm_max,
            storage: Storage::Owned {
                vectors: normalised,
                codes,
            },
            mode: ScanMode::Auto,
        })
    }

    fn use_compact(&self, k: Option<usize>) -> bool {
        match self.mode {
            ScanMode::F32 => false,
            ScanMode::Compact => self.has_codes(),
            ScanMode::Auto => {
                self.has_codes()
                    && self.len >= COMPACT_MIN_ROWS
                    && k.is_none_or(|k| k <= self.len / 16)
            }
        }
    }

    fn parallel(&self, bytes_per_row: usize) -> bool {
        self.len.saturating_mul(bytes_per_row) >= PARALLEL_BYTES && rayon::current_num_threads() > 1
    }
}

/// A monotonically rising f32 shared between threads (an order-preserving map onto u32).
struct SharedFloor(AtomicU32);

impl SharedFloor {
    fn new() -> Self {
        SharedFloor(AtomicU32::new(Self::key(f32::NEG_INFINITY)))
    }

    fn key(f: f32) -> u32 {
        let b = f.to_bits();
        if b >> 31 == 1 { !b } else { b | 1 << 31 }
    }

    fn get(&self) -> f32 {
        let k = self.0.load(Ordering::Relaxed);
        f32::from_bits(if k >> 31 == 1 { k & !(1 << 31) } else { !k })
    }

    fn raise(&self, f: f32) {
        if !f.is_nan() {
            self.0.fetch_max(Self::key(f), Ordering::Relaxed);
        }
    }
}

impl SearchIndex for LinearIndex {
    type Params = LinearParams;
    const NAME: &'static str = "linear";

    fn build_unchecked(
        vectors: VectorView<'_>,
        params: &LinearParams,
        progress: &dyn Progress,
    ) -> Result<Self> {
        progress.set_total(vectors.len() as u64);
        let index = Self::build_with(vectors, params)?;
        progress.advance(vectors.len() as u64);
        Ok(index)
    }

    fn save(&self, path: &Path) -> Result<()> {
        self.write(path, None)
    }

    /// Hot: the int8 codes and their constants, which a single query scans in full (only
    /// the rows it cannot rule out are read in f32); the f32 rows when there are no codes.
    fn load_with(path: &Path, warmup: Warmup) -> Result<Self> {
        let index = Self::from_container(Container::open(path, KIND_BYTES, 1..=VERSION)?)?;
        if let Storage::Mapped {
            container,
            has_codes,
        } = &index.storage
        {
            let hot: &[(&str, Access)] = if *has_codes {
                &[("codes", Access::Scan), ("code_meta", Access::Scan)]
            } else {
                &[("vectors", Access::Scan)]
            };
            container.warm(hot, warmup);
        }
        Ok(index)
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        self.len
    }

    fn search_unchecked(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        Ok(self.search_with_stats(query, k)?.0)
    }

    fn search_threshold_unchecked(&self, query: &[f32], tau: f32) -> Result<Vec<Hit>> {
        Ok(self.search_threshold_with_stats(query, tau)?.0)
    }

    /// The blocked matrix product ([`LinearIndex::search_batch`]); there is no knob.
    fn search_batch(
        &self,
        queries: VectorView<'_>,
        k: usize,
        _knob: Option<usize>,
    ) -> Result<Vec<Vec<Hit>>> {
        LinearIndex::search_batch(self, queries, k)
    }

    /// The stored row, scaled to unit length.
    fn vector(&self, id: u32) -> Result<Vec<f32>> {
        let i = id as usize;
        if i >= self.len {
            return Err(Error::InvalidArgument(format!(
                "no item with id {id} in the index ({} items)",
                self.len
            )));
        }
        Ok(self.vectors()[i * self.dim..(i + 1) * self.dim].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::SharedFloor;

    #[test]
    fn shared_floor_only_rises_and_round_trips() {
        let f = SharedFloor::new();
        assert_eq!(f.get(), f32::NEG_INFINITY);
        for (offer, want) in [
            (-0.5, -0.5),
            (-0.7, -0.5),
            (0.0, 0.0),
            (0.25, 0.25),
            (0.1, 0.25),
            (f32::NAN, 0.25),
            (1.0, 1.0),
        ] {
            f.raise(offer);
            assert_eq!(f.get(), want);
        }
    }
}
