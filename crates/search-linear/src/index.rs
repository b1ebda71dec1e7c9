//! The exact index: normalised f32 rows plus their int8 codes, one memory-mappable file.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use rayon::prelude::*;
use search_core::container::{Container, write_container};
use search_core::{
    Access, Error, Hit, Progress, Result, SearchIndex, VectorView, Vectors, Warmup, check_k,
    check_tau, normalized, normalized_rows,
};
use search_kernels::{Aligned, DotFn, dot_kernel};

use crate::codes::{Bound, QueryCode, encode_row, query_code_max};
use crate::select::TopK;

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

    fn write(&self, path: &Path, source: Option<&[u64; 3]>) -> Result<()> {
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

    fn from_container(c: Container) -> Result<LinearIndex> {
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

    /// [`SearchIndex::search`], also returning what the scan read.
    pub fn search_with_stats(&self, query: &[f32], k: usize) -> Result<(Vec<Hit>, ScanStats)> {
        check_k(k)?;
        let q = normalized(query, self.dim, || "query".into())?;
        let compact = self.use_compact(Some(k));
        let (top, stats) = self.scan_blocks(
            compact,
            || TopK::new(k),
            |top| top.floor(),
            |top, hit| top.push(hit),
            &q,
            TopK::merge,
        );
        Ok((top.into_sorted(), stats))
    }

    /// [`SearchIndex::search_threshold`], also returning what the scan read.
    pub fn search_threshold_with_stats(
        &self,
        query: &[f32],
        tau: f32,
    ) -> Result<(Vec<Hit>, ScanStats)> {
        check_tau(tau)?;
        let q = normalized(query, self.dim, || "query".into())?;
        let compact = self.use_compact(None);
        let (mut hits, stats) = self.scan_blocks(
            compact,
            Vec::new,
            // Candidates need f(x) > τ; the filter keeps c̃ + B ≥ τ, a superset.
            |_| tau,
            |hits: &mut Vec<Hit>, hit| {
                if hit.score > tau {
                    hits.push(hit)
                }
            },
            &q,
            |mut a, b| {
                a.extend(b);
                a
            },
        );
        hits.sort_unstable_by(Hit::ranking);
        Ok((hits, stats))
    }

    /// The single-query scan. `floor(state)` is the score a row must be able to reach to
    /// matter; `offer` gets every row's exact f32 hit that may reach it.
    fn scan_blocks<S: Send>(
        &self,
        compact: bool,
        init: impl Fn() -> S + Sync + Send,
        floor: impl Fn(&S) -> f32 + Sync + Send,
        offer: impl Fn(&mut S, Hit) + Sync + Send,
        q: &[f32],
        merge: impl Fn(S, S) -> S + Sync + Send,
    ) -> (S, ScanStats) {
        let dim = self.dim;
        let vectors = self.vectors();
        let dot = dot_kernel();
        let codes = if compact { self.codes() } else { None };
        let qc = codes.map(|_| {
            QueryCode::new(
                q,
                query_code_max(dim).expect("has_codes checked"),
                self.norm_max,
            )
        });
        let blocks = self.len.div_ceil(BLOCK_ROWS);
        let bytes_per_row = if codes.is_some() { dim + 8 } else { 4 * dim };
        // The best floor any thread has reached: every thread may filter against it, since
        // each thread's k-th best is at most the global k-th best.
        let shared = SharedFloor::new();
        let run = |(mut s, mut st, mut ints): (S, ScanStats, Vec<i32>), b: usize| {
            let rows = b * BLOCK_ROWS..((b + 1) * BLOCK_ROWS).min(self.len);
            match (codes, &qc) {
                // An empty `ints` means this run gave up on codes (see below).
                (Some(c), Some(qc)) if !ints.is_empty() => {
                    let floor = |s: &S| floor(s).max(shared.get());
                    let n = rows.len();
                    let rechecked = scan_compact(
                        c, vectors, dim, rows, q, qc, dot, &mut ints, &mut s, &floor, &offer,
                        &mut st,
                    );
                    // When most rows need the f32 re-check anyway (a low τ, a huge k), reading
                    // the codes too only adds bytes: scan the rest of this run in f32.
                    if rechecked * 4 > n {
                        ints = Vec::new();
                    }
                }
                _ => {
                    for (i, row) in vectors[rows.start * dim..rows.end * dim]
                        .chunks_exact(dim)
                        .enumerate()
                    {
                        let score = dot(row, q);
                        offer(
                            &mut s,
                            Hit {
                                id: (rows.start + i) as u32,
                                score,
                            },
                        );
                    }
                    st.rows_f32 += rows.len();
                    st.bytes += rows.len() * 4 * dim;
                }
            }
            shared.raise(floor(&s));
            (s, st, ints)
        };
        let fresh = || (init(), ScanStats::default(), vec![0i32; BLOCK_ROWS]);
        let add = |a: ScanStats, b: ScanStats| ScanStats {
            rows_compact: a.rows_compact + b.rows_compact,
            rows_f32: a.rows_f32 + b.rows_f32,
            bytes: a.bytes + b.bytes,
        };
        if self.parallel(bytes_per_row) {
            // A few contiguous runs of blocks (two per thread, for balance on a busy machine),
            // each scanned in order by one state, so that each selection fills only once.
            let parts = (2 * rayon::current_num_threads()).min(blocks);
            let (s, st) = (0..parts)
                .into_par_iter()
                .map(|p| {
                    let (s, st, _) =
                        (p * blocks / parts..(p + 1) * blocks / parts).fold(fresh(), &run);
                    (s, st)
                })
                .reduce(
                    || (init(), ScanStats::default()),
                    |(a, sa), (b, sb)| (merge(a, b), add(sa, sb)),
                );
            (s, st)
        } else {
            let (s, st, _) = (0..blocks).fold(fresh(), run);
            (s, st)
        }
    }

    /// The top `k` of every query, best first: the same lists [`SearchIndex::search`] returns,
    /// computed with a blocked matrix product (faer) of the queries by the gallery.
    ///
    /// Memory stays bounded whatever the gallery or batch size: queries go in chunks of at most
    /// 256, the gallery in blocks of [`BATCH_BLOCK_ROWS`] rows per thread, and each query keeps
    /// a bounded selection of at most `max(2k, k + 8)` hits per run of blocks (two runs per thread).
    pub fn search_batch(&self, queries: VectorView<'_>, k: usize) -> Result<Vec<Vec<Hit>>> {
        check_k(k)?;
        let qs = self.normalized_queries(queries)?;
        // Selections cost up to max(2k, k + 8) hits per query and run: keep them near 64 MiB a run.
        let chunk = (((64 << 20) / 8) / (2 * k + 8).max(1)).clamp(1, 256);
        let mut out = Vec::with_capacity(queries.len());
        for qchunk in qs.chunks(chunk * self.dim) {
            let tops = self.batch_chunk(
                qchunk,
                || TopK::new(k),
                |t| t.floor(),
                |t, h| t.push(h),
                TopK::merge,
            );
            out.extend(tops.into_iter().map(TopK::into_sorted));
        }
        Ok(out)
    }

    /// Every row with cosine similarity above `tau`, for every query, best first: the same
    /// lists [`SearchIndex::search_threshold`] returns, via the blocked matrix product.
    pub fn search_batch_threshold(
        &self,
        queries: VectorView<'_>,
        tau: f32,
    ) -> Result<Vec<Vec<Hit>>> {
        check_tau(tau)?;
        let qs = self.normalized_queries(queries)?;
        let mut out = Vec::with_capacity(queries.len());
        for qchunk in qs.chunks(256 * self.dim) {
            let lists = self.batch_chunk(
                qchunk,
                Vec::new,
                |_| tau,
                |v: &mut Vec<Hit>, h| {
                    if h.score > tau {
                        v.push(h)
                    }
                },
                |mut a, b| {
                    a.extend(b);
                    a
                },
            );
            out.extend(lists.into_iter().map(|mut v| {
                v.sort_unstable_by(Hit::ranking);
                v
            }));
        }
        Ok(out)
    }

    fn normalized_queries(&self, queries: VectorView<'_>) -> Result<Vec<f32>> {
        if queries.dim() != self.dim {
            return Err(Error::Dimension {
                expected: self.dim,
                found: queries.dim(),
            });
        }
        Ok(normalized_rows(queries)
            .map_err(|e| match e {
                Error::BadVector { what, reason } => Error::BadVector {
                    what: what.replace("gallery row", "query"),
                    reason,
                },
                e => e,
            })?
            .into_inner())
    }

    /// One chunk of at most 256 queries against the whole gallery. Each block's scores `g`
    /// come from faer's f32 matrix product; `|g − f| ≤ 2·γ_d·N·‖q‖` where `f` is the plain
    /// scan's score (both are f32 sums of the same `d` products, see `codes`), so every row with
    /// `g + that ≥ floor` is re-scored with the plain kernel and offered with its exact score.
    fn batch_chunk<S: Send>(
        &self,
        qs: &[f32],
        init: impl Fn() -> S + Sync + Send,
        floor: impl Fn(&S) -> f32 + Sync + Send,
        offer: impl Fn(&mut S, Hit) + Sync + Send,
        merge: impl Fn(S, S) -> S + Sync + Send,
    ) -> Vec<S> {
        let dim = self.dim;
        let m = qs.len() / dim;
        let vectors = self.vectors();
        let dot = dot_kernel();
        let u = f64::from(f32::EPSILON) / 2.0;
        let gamma = dim as f64 * u / (1.0 - dim as f64 * u);
        let slack: Vec<f32> = qs
            .chunks_exact(dim)
            .map(|q| {
                let qn = q.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
                (2.0 * gamma * self.norm_max * qn * (1.0 + 1e-9) + 1e-6) as f32
            })
            .collect();
        let lhs = faer::MatRef::from_row_major_slice(qs, m, dim);
        let shared: Vec<SharedFloor> = (0..m).map(|_| SharedFloor::new()).collect();
        let blocks = self.len.div_ceil(BATCH_BLOCK_ROWS);
        let fresh = || {
            (
                (0..m).map(|_| init()).collect::<Vec<S>>(),
                vec![0f32; m * BATCH_BLOCK_ROWS],
            )
        };
        let run = |(mut states, mut scores): (Vec<S>, Vec<f32>), b: usize| {
            let start = b * BATCH_BLOCK_ROWS;
            let nb = BATCH_BLOCK_ROWS.min(self.len - start);
            let block = &vectors[start * dim..(start + nb) * dim];
            let rhs = faer::MatRef::from_row_major_slice(block, nb, dim).transpose();
            let dst = faer::MatMut::from_row_major_slice_mut(&mut scores[..m * nb], m, nb);
            faer::linalg::matmul::matmul(
                dst,
                faer::Accum::Replace,
                lhs,
                rhs,
                1.0f32,
                faer::Par::Seq,
            );
            for (qi, s) in states.iter_mut().enumerate() {
                let q = &qs[qi * dim..(qi + 1) * dim];
                let row_scores = &scores[qi * nb..(qi + 1) * nb];
                let shared = &shared[qi];
                let floor = |s: &S| floor(s).max(shared.get());
                let mut lim = floor(s) - slack[qi];
                for (c, chunk) in row_scores.chunks(16).enumerate() {
                    if chunk.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) < lim {
                        continue;
                    }
                    for (j, &g) in chunk.iter().enumerate() {
                        if g >= lim {
                            let id = start + c * 16 + j;
                            let score = dot(&vectors[id * dim..(id + 1) * dim], q);
                            offer(
                                s,
                                Hit {
                                    id: id as u32,
                                    score,
                                },
                            );
                            lim = floor(s) - slack[qi];
                        }
                    }
                }
                shared.raise(floor(s));
            }
            (states, scores)
        };
        let parallel = self.len >= 2 * BATCH_BLOCK_ROWS && rayon::current_num_threads() > 1;
        if parallel {
            // Contiguous runs of blocks, two per thread, each with one state per query, so
            // that each selection fills once; floors are shared per query across threads.
            let parts = (2 * rayon::current_num_threads()).min(blocks);
            (0..parts)
                .into_par_iter()
                .map(|p| {
                    (p * blocks / parts..(p + 1) * blocks / parts)
                        .fold(fresh(), &run)
                        .0
                })
                .reduce_with(|a, b| a.into_iter().zip(b).map(|(x, y)| merge(x, y)).collect())
                .unwrap_or_else(|| fresh().0)
        } else {
            (0..blocks).fold(fresh(), run).0
        }
    }
}

/// Gallery rows per block of the batched matrix product (1 MiB of f32 at d = 512).
pub const BATCH_BLOCK_ROWS: usize = 512;

/// One block of the compact scan: exact integer dot products of the codes, then the f32
/// re-check of every row whose compact score is within its bound of the floor. Returns the
/// number of rows re-checked.
#[allow(clippy::too_many_arguments)]
fn scan_compact<S>(
    c: Codes<'_>,
    vectors: &[f32],
    dim: usize,
    rows: std::ops::Range<usize>,
    q: &[f32],
    qc: &QueryCode,
    dot: DotFn,
    ints: &mut [i32],
    s: &mut S,
    floor: &impl Fn(&S) -> f32,
    offer: &impl Fn(&mut S, Hit),
    st: &mut ScanStats,
) -> usize {
    let n = rows.len();
    (search_kernels::int8::BLOCK_DOT.best().kernels)(
        &c.codes[rows.start * dim..rows.end * dim],
        dim,
        &qc.codes,
        &mut ints[..n],
    );
    let Bound { a, c: cc } = qc.bound;
    let meta = &c.meta[2 * rows.start..2 * rows.end];
    let mut lim = floor(s) - cc;
    let mut rechecked = 0;
    for (i, (&int, m)) in ints[..n].iter().zip(meta.chunks_exact(2)).enumerate() {
        let compact = (m[0] * qc.scale) * int as f32;
        if compact + m[1] * a >= lim {
            let id = rows.start + i;
            let score = dot(&vectors[id * dim..(id + 1) * dim], q);
            offer(
                s,
                Hit {
                    id: id as u32,
                    score,
                },
            );
            lim = floor(s) - cc;
            rechecked += 1;
        }
    }
    st.rows_compact += n;
    st.rows_f32 += rechecked;
    st.bytes += n * (dim + 8) + rechecked * 4 * dim;
    rechecked
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
