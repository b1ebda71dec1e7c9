//! [`HnswIndex`]: storage (owned or memory-mapped), queries, save/load, add and delete.

use std::path::Path;
use std::sync::Mutex;

use rayon::prelude::*;
use search_core::container::{Container, write_container};
use search_core::{
    Access, Error, Hit, Knob, Progress, Result, SearchIndex, VectorView, Warmup, check_k,
    check_vector,
};

use crate::build::{Builder, F32Dist, Graph, I8Dist, MAX_LEVEL, NodeDist, draw_levels};
use crate::quant::code_stride;
use crate::search::{Cand, Links, NoScreen, Scratch, Screen, greedy, search_layer};
use crate::signs::{self, CodesRef, Frame, FrameRef, SignScreen};
use search_kernels::int8::DOT_I8;
use search_kernels::{Aligned, DotFn as DistFn, normalise, prefetch, quantize};

pub(crate) const KIND_BYTES: &[u8; 8] = b"hnsw\0\0\0\0";
/// Version 1 (no int8 codes, 14 header words) and 2 (no sign codes, 15 words) are still read.
const VERSION: u32 = 3;
const META_LEN: usize = 16;
/// Floats per padded row unit: rows start on 64-byte boundaries.
const LANES: usize = 16;

/// The metric of an index. Our own builds are always [`Space::Cosine`]; the others exist for
/// files written by hnswlib ([`HnswIndex::load_hnswlib`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// Cosine similarity: vectors are normalised on the way in; `Hit::score` is the cosine.
    Cosine,
    /// Inner product of the raw vectors; `Hit::score` is the inner product.
    InnerProduct,
    /// Squared Euclidean distance; `Hit::score` is minus the squared distance, so that higher
    /// is still better.
    L2,
}

impl Space {
    fn code(self) -> u64 {
        match self {
            Space::Cosine => 0,
            Space::InnerProduct => 1,
            Space::L2 => 2,
        }
    }

    fn from_code(c: u64) -> Option<Self> {
        [Space::Cosine, Space::InnerProduct, Space::L2]
            .into_iter()
            .find(|s| s.code() == c)
    }

    pub(crate) fn dist_fn(self) -> DistFn {
        match self {
            Space::Cosine | Space::InnerProduct => search_kernels::f32::kernels().neg_dot,
            Space::L2 => search_kernels::f32::kernels().l2_squared,
        }
    }

    /// hnswlib's name for the space: `"cosine"`, `"ip"` or `"l2"`.
    pub fn hnswlib_name(self) -> &'static str {
        match self {
            Space::Cosine => "cosine",
            Space::InnerProduct => "ip",
            Space::L2 => "l2",
        }
    }
}

/// Build parameters. `Default` gives the notebook's settings: M = 48, ef_construction = 200,
/// ef = 100, on every core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HnswParams {
    /// Links per node on the upper layers (twice as many on layer 0), as hnswlib's `M`.
    pub m: usize,
    /// Size of the candidate list while inserting.
    pub ef_construction: usize,
    /// Size of the candidate list while searching (the knob "ef"); at least k is used.
    pub ef: usize,
    /// Seed of the level draws: a build with `threads = 1` is reproducible from it.
    pub seed: u64,
    /// Build threads; 0 means rayon's current pool (all cores by default).
    pub threads: usize,
    /// Keep int8 copies of the vectors and walk the graph (build and search) with them,
    /// re-ranking the final candidates with exact f32 dot products. Faster, and on the
    /// notebook's workload as accurate; `false` walks with f32 throughout. Cosine only: an
    /// `ip` or `l2` index always walks with f32.
    pub quantize: bool,
    /// The metric, as hnswlib's `space`: [`Space::Cosine`] (the default) normalises the rows;
    /// [`Space::InnerProduct`] and [`Space::L2`] index them as they are.
    pub space: Space,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 48,
            ef_construction: 200,
            ef: 100,
            seed: 100,
            threads: 0,
            quantize: true,
            space: Space::Cosine,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    pub dim: usize,
    pub stride: usize,
    pub len: usize,
    pub m: usize,
    pub m0: usize,
    pub ef_construction: usize,
    pub ef: usize,
    pub seed: u64,
    pub space: Space,
    pub entry: u32,
    pub max_level: Option<u8>,
    pub deleted: usize,
    /// Bytes per int8 code row; 0 when the index keeps no codes.
    pub code_stride: usize,
    /// u64 words per sign-code row; 0 when the index keeps none.
    pub sign_words: usize,
}

impl Meta {
    fn words(&self, upper_len: usize, has_labels: bool) -> [u64; META_LEN] {
        [
            self.dim as u64,
            self.stride as u64,
            self.len as u64,
            self.m as u64,
            self.m0 as u64,
            self.ef_construction as u64,
            self.ef as u64,
            self.seed,
            self.space.code(),
            u64::from(self.entry),
            self.max_level.map_or(u64::MAX, u64::from),
            self.deleted as u64,
            upper_len as u64,
            u64::from(has_labels),
            self.code_stride as u64,
            self.sign_words as u64,
        ]
    }
}

pub(crate) struct Owned {
    /// Rows of `stride` floats (a multiple of 16: every row starts on a cache line).
    pub vectors: Aligned<f32>,
    pub graph: Graph,
    pub deleted: Vec<u8>,
    pub labels: Option<Vec<u32>>,
    pub codes: Option<Codes>,
    pub signs: Option<Signs>,
}

/// The one-bit codes of the rows and the frame they are taken in (see [`crate::signs`]).
pub(crate) struct Signs {
    pub frame: Frame,
    pub codes: signs::Codes,
}

/// The int8 copies of the rows (see [`crate::quant`]).
pub(crate) struct Codes {
    /// Rows of `code_stride` codes (a multiple of 64).
    pub codes: Aligned<i8>,
    pub scales: Vec<f32>,
}

impl Codes {
    /// Quantises `rows` (padded f32 rows of `stride` floats, `dim` of them meaningful).
    fn of(rows: &[f32], stride: usize, dim: usize) -> Codes {
        let cs = code_stride(dim);
        let n = rows.len() / stride;
        let mut codes = Aligned::<i8>::zeroed(n * cs);
        let scales = codes
            .par_chunks_mut(cs)
            .zip(rows.par_chunks(stride))
            .map(|(out, row)| quantize(&row[..dim], out))
            .collect();
        Codes { codes, scales }
    }

    fn append(&mut self, other: Codes) {
        self.codes.extend_from_slice(&other.codes);
        self.scales.extend_from_slice(&other.scales);
    }
}

enum Store {
    Owned(Box<Owned>),
    Mapped(Container),
}

/// An HNSW graph over unit-normalised vectors (cosine), or over raw vectors for inner-product
/// and l2 files read from hnswlib.
///
/// Built with [`SearchIndex::build`] on every core, saved in our own sectioned file (see the
/// crate docs) and loaded by memory-mapping it: a load checks the header and section sizes and
/// searches the file in place. Every neighbour id read from a file is bounds-checked as it is
/// used, so a corrupt file gives poor answers or an error, never a panic or a wild read.
pub struct HnswIndex {
    meta: Meta,
    store: Store,
    pool: Mutex<Vec<Scratch>>,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex")
            .field("meta", &self.meta)
            .field("mapped", &self.is_mapped())
            .finish_non_exhaustive()
    }
}

/// Borrowed slices of an index, owned or mapped: what searches run on.
pub(crate) struct View<'a> {
    pub meta: Meta,
    pub vecs: &'a [f32],
    pub links0: &'a [u32],
    pub upper: &'a [u32],
    pub upper_off: &'a [u32],
    pub levels: &'a [u8],
    pub deleted: &'a [u8],
    pub labels: Option<&'a [u32]>,
    /// Int8 codes (`code_stride` bytes per row) and their scales, when kept.
    pub codes: Option<(&'a [i8], &'a [f32])>,
    /// Sign codes (`sign_words` u64 per row), their factors, and their frame, when kept.
    pub signs: Option<CodesRef<'a>>,
}

impl Links for View<'_> {
    fn len(&self) -> usize {
        self.meta.len
    }

    #[inline]
    fn neighbours(&self, id: u32, level: usize, out: &mut Vec<u32>) {
        out.clear();
        let n = self.meta.len;
        let list = if level == 0 {
            let b = id as usize * (self.meta.m0 + 1);
            &self.links0[b..b + self.meta.m0 + 1]
        } else {
            if self
                .levels
                .get(id as usize)
                .is_none_or(|&l| usize::from(l) < level)
            {
                return;
            }
            let b = self.upper_off[id as usize] as usize + (level - 1) * (self.meta.m + 1);
            match self.upper.get(b..b + self.meta.m + 1) {
                Some(l) => l,
                None => return,
            }
        };
        let count = (list[0] as usize).min(list.len() - 1);
        out.extend(
            list[1..=count]
                .iter()
                .copied()
                .filter(|&x| (x as usize) < n),
        );
    }
}

impl View<'_> {
    #[inline]
    pub fn row(&self, id: u32) -> &[f32] {
        let b = id as usize * self.meta.stride;
        &self.vecs[b..b + self.meta.stride]
    }

    pub fn label(&self, id: u32) -> u32 {
        self.labels.map_or(id, |l| l[id as usize])
    }

    fn is_live(&self, id: u32) -> bool {
        self.deleted[id as usize] == 0
    }
}

pub(crate) fn round_up(dim: usize) -> usize {
    dim.div_ceil(LANES) * LANES
}

/// Copies rows into zero-padded, aligned storage, checking each (and normalising for cosine).
pub(crate) fn padded_rows(
    vectors: VectorView<'_>,
    space: Space,
    first_row: usize,
) -> Result<Aligned<f32>> {
    let (dim, stride) = (vectors.dim(), round_up(vectors.dim()));
    let mut lines = Aligned::<f32>::zeroed(vectors.len() * stride);
    let flat: &mut [f32] = &mut lines;
    for (i, (row, out)) in vectors
        .rows()
        .zip(flat.chunks_exact_mut(stride))
        .enumerate()
    {
        check_vector(row, dim, || format!("gallery row {}", first_row + i))?;
        out[..dim].copy_from_slice(row);
        if space == Space::Cosine {
            normalise(&mut out[..dim]);
        }
    }
    Ok(lines)
}

fn run_in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> Result<R> {
    if threads == 0 {
        return Ok(f());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::InvalidArgument(format!("cannot start {threads} threads: {e}")))?;
    Ok(pool.install(f))
}

/// Inserts the nodes after `old`'s into the graph (their levels are `new_levels`), walking on
/// the int8 codes when the index keeps them (screened by the sign codes), else on the f32 rows.
#[allow(clippy::too_many_arguments)]
fn grow(
    meta: &Meta,
    vecs: &[f32],
    codes: Option<&Codes>,
    signs: Option<&Signs>,
    deleted: &[u8],
    old: Graph,
    new_levels: &[u8],
    threads: usize,
    progress: &dyn Progress,
) -> Result<Graph> {
    let n = vecs.len() / meta.stride;
    let screen = signs.map(|s| {
        let codes = CodesRef {
            frame: s.frame.view(),
            bits: &s.codes.bits,
            factors: &s.codes.factors,
        };
        (codes, vecs, meta.stride)
    });
    #[allow(clippy::too_many_arguments)]
    fn go<D: NodeDist>(
        dist: D,
        meta: &Meta,
        n: usize,
        deleted: &[u8],
        screen: Option<(CodesRef<'_>, &[f32], usize)>,
        old: Graph,
        new_levels: &[u8],
        progress: &dyn Progress,
    ) -> Result<Graph> {
        let from = old.levels.len();
        let b = Builder::new(
            dist,
            n,
            meta.m,
            meta.m0,
            meta.ef_construction,
            deleted,
            screen,
            old,
            new_levels,
        )?;
        b.insert_all(
            from,
            meta.seed ^ (from as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            progress,
        );
        Ok(b.finish())
    }
    run_in_pool(threads, || match codes {
        Some(c) => go(
            I8Dist {
                codes: &c.codes,
                stride: meta.code_stride,
                scales: &c.scales,
                f: DOT_I8.best().kernels,
            },
            meta,
            n,
            deleted,
            screen,
            old,
            new_levels,
            progress,
        ),
        None => go(
            F32Dist {
                vecs,
                stride: meta.stride,
                f: meta.space.dist_fn(),
            },
            meta,
            n,
            deleted,
            screen,
            old,
            new_levels,
            progress,
        ),
    })?
}

fn empty_graph() -> Graph {
    Graph {
        links0: Vec::new(),
        upper: Vec::new(),
        upper_off: Vec::new(),
        levels: Vec::new(),
        entry: 0,
        max_level: None,
    }
}

fn check_params(p: &HnswParams) -> Result<()> {
    if !(2..=10_000).contains(&p.m) {
        return Err(Error::InvalidArgument(format!(
            "M must be in 2..=10000, got {}",
            p.m
        )));
    }
    if p.ef == 0 {
        return Err(Error::InvalidArgument("ef must be at least 1".into()));
    }
    Ok(())
}

impl HnswIndex {
    pub(crate) fn from_parts(meta: Meta, owned: Owned) -> Self {
        HnswIndex {
            meta,
            store: Store::Owned(Box::new(owned)),
            pool: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn view(&self) -> View<'_> {
        match &self.store {
            Store::Owned(o) => View {
                meta: self.meta,
                vecs: &o.vectors,
                links0: &o.graph.links0,
                upper: &o.graph.upper,
                upper_off: &o.graph.upper_off,
                levels: &o.graph.levels,
                deleted: &o.deleted,
                labels: o.labels.as_deref(),
                codes: o.codes.as_ref().map(|c| (&c.codes[..], &c.scales[..])),
                signs: o.signs.as_ref().map(|s| CodesRef {
                    frame: s.frame.view(),
                    bits: &s.codes.bits,
                    factors: &s.codes.factors,
                }),
            },
            Store::Mapped(c) => {
                // Every section was checked (name, type, exact length) by `load`.
                let s = |name| c.section(name).expect("checked on load");
                View {
                    meta: self.meta,
                    vecs: bytemuck::cast_slice(s("vectors")),
                    links0: bytemuck::cast_slice(s("links0")),
                    upper: bytemuck::cast_slice(s("upper")),
                    upper_off: bytemuck::cast_slice(s("upper_off")),
                    levels: s("levels"),
                    deleted: s("deleted"),
                    labels: (self.meta_has_labels(c)).then(|| bytemuck::cast_slice(s("labels"))),
                    codes: (self.meta.code_stride > 0).then(|| {
                        (
                            bytemuck::cast_slice(s("codes")),
                            bytemuck::cast_slice(s("scales")),
                        )
                    }),
                    signs: (self.meta.sign_words > 0).then(|| CodesRef {
                        frame: FrameRef {
                            dim: self.meta.dim,
                            flips: bytemuck::cast_slice(s("rotation")),
                            mean: bytemuck::cast_slice(s("mean")),
                        },
                        bits: bytemuck::cast_slice(s("signs")),
                        factors: bytemuck::cast_slice(s("sign_factors")),
                    }),
                }
            }
        }
    }

    fn meta_has_labels(&self, c: &Container) -> bool {
        c.section("labels").is_ok()
    }

    /// The metric of this index.
    pub fn space(&self) -> Space {
        self.meta.space
    }

    /// hnswlib's `M`: links per node on the upper layers.
    pub fn m(&self) -> usize {
        self.meta.m
    }

    /// The `ef_construction` the graph was built with.
    pub fn ef_construction(&self) -> usize {
        self.meta.ef_construction
    }

    /// The current search list size (the knob "ef").
    pub fn ef(&self) -> usize {
        self.meta.ef
    }

    /// Number of deleted items (still in the graph, never returned).
    pub fn deleted_count(&self) -> usize {
        self.meta.deleted
    }

    /// True when the index is searched in place from a memory-mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(self.store, Store::Mapped(_))
    }

    /// Name of the f32 distance kernels chosen for this CPU ("avx512", "avx2", "neon" or
    /// "portable").
    pub fn kernel_name() -> &'static str {
        search_kernels::f32::KERNELS.best().name()
    }

    /// Checks a query and turns it into a padded row in the index's space.
    fn prepare(&self, query: &[f32]) -> Result<Vec<f32>> {
        let dim = self.meta.dim;
        check_vector(query, dim, || "query".into())?;
        let mut q = vec![0.0; self.meta.stride];
        q[..dim].copy_from_slice(query);
        if self.meta.space == Space::Cosine {
            normalise(&mut q[..dim]);
        }
        Ok(q)
    }

    /// The `ef` closest live nodes to the padded query `q`, closest first. The walk uses the
    /// most compact distances the index keeps: one-bit codes to skip the neighbours that are
    /// surely too far, int8 codes for the rest; f32 rows when it keeps neither. The results
    /// are re-ranked with exact f32 distances.
    fn find(&self, q: &[f32], ef: usize) -> Vec<Cand> {
        let v = self.view();
        let exact = v.meta.space.dist_fn();
        let Some((codes, scales)) = v.codes else {
            let row_bytes = v.meta.stride * 4;
            return self.walk(
                &v,
                ef,
                &|j| exact(q, v.row(j)),
                &|j| prefetch(v.row(j).as_ptr().cast(), row_bytes),
                1,
                &NoScreen,
            );
        };
        let cs = v.meta.code_stride;
        let mut qc = vec![0i8; cs];
        let qs = quantize(&q[..v.meta.dim], &mut qc);
        let dot = DOT_I8.best().kernels;
        let code = |j: u32| &codes[j as usize * cs..(j as usize + 1) * cs];
        let int8 = |j: u32| -(qs * scales[j as usize] * dot(&qc, code(j)) as f32);
        let mut out = match v.signs {
            None => self.walk(
                &v,
                ef,
                &int8,
                &|j| prefetch(code(j).as_ptr().cast(), cs),
                1,
                &NoScreen,
            ),
            Some(signs) => self.walk(
                &v,
                ef,
                &int8,
                &|j| prefetch(code(j).as_ptr().cast(), cs),
                2,
                &SignScreen::new(signs, q),
            ),
        };
        for c in &mut out {
            c.d = exact(q, v.row(c.id));
        }
        out.sort_unstable();
        out
    }

    /// Greedy descent through the upper layers, then a best-first search of layer 0.
    fn walk(
        &self,
        v: &View<'_>,
        ef: usize,
        dist: &impl Fn(u32) -> f32,
        pre: &impl Fn(u32),
        ahead: usize,
        screen: &impl Screen,
    ) -> Vec<Cand> {
        let Some(max_level) = v.meta.max_level else {
            return Vec::new();
        };
        let mut s = self
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_else(|| Scratch::new(v.meta.len));
        let mut cur = Cand {
            d: dist(v.meta.entry),
            id: v.meta.entry,
        };
        let mut buf = std::mem::take(&mut s.buf);
        for l in (1..=usize::from(max_level)).rev() {
            cur = greedy(v, l, cur, dist, &mut buf);
        }
        s.buf = buf;
        // ef comes from the caller or the file: never size memory from it beyond the graph.
        let mut out = Vec::with_capacity(ef.min(v.meta.len));
        let bare = v.meta.deleted == 0;
        let keep = |j: u32| v.is_live(j);
        search_layer(
            v, 0, cur, ef, bare, dist, &keep, pre, ahead, screen, &mut s, &mut out,
        );
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).push(s);
        out
    }

    fn hits(&self, cands: &[Cand]) -> Vec<Hit> {
        let v = self.view();
        let mut hits: Vec<Hit> = cands
            .iter()
            .map(|c| Hit {
                id: v.label(c.id),
                score: -c.d,
            })
            .collect();
        hits.sort_by(Hit::ranking);
        hits
    }

    /// Like [`SearchIndex::search`] with an explicit `ef` instead of the index's own.
    pub fn search_ef(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<Hit>> {
        check_k(k)?;
        let q = self.prepare(query)?;
        let mut found = self.find(&q, ef.max(k));
        found.truncate(k);
        Ok(self.hits(&found))
    }

    fn make_owned(&mut self) {
        if let Store::Mapped(_) = self.store {
            let v = self.view();
            let owned = Owned {
                vectors: Aligned::from_slice(v.vecs),
                graph: Graph {
                    links0: v.links0.to_vec(),
                    upper: v.upper.to_vec(),
                    upper_off: v.upper_off.to_vec(),
                    levels: v.levels.to_vec(),
                    entry: v.meta.entry,
                    max_level: v.meta.max_level,
                },
                deleted: v.deleted.to_vec(),
                labels: v.labels.map(<[u32]>::to_vec),
                codes: v.codes.map(|(c, s)| Codes {
                    codes: Aligned::from_slice(c),
                    scales: s.to_vec(),
                }),
                signs: v.signs.map(|s| Signs {
                    frame: Frame {
                        dim: s.frame.dim,
                        flips: s.frame.flips.to_vec(),
                        mean: s.frame.mean.to_vec(),
                    },
                    codes: signs::Codes {
                        bits: s.bits.to_vec(),
                        factors: s.factors.to_vec(),
                    },
                }),
            };
            self.store = Store::Owned(Box::new(owned));
        }
    }

    fn owned(&mut self) -> &mut Owned {
        self.make_owned();
        match &mut self.store {
            Store::Owned(o) => o,
            Store::Mapped(_) => unreachable!("made owned above"),
        }
    }

    /// Adds `vectors` to the graph (in parallel, like a build) and returns the ids they got:
    /// the next rows after the current ones. A mapped index is copied into memory first.
    ///
    /// ```
    /// use search_core::{SearchIndex, Vectors};
    /// use search_hnsw::HnswIndex;
    /// let v = Vectors::new(2, vec![1.0, 0.0, 0.0, 1.0])?;
    /// let mut index = HnswIndex::build(v.view(), &Default::default(), &())?;
    /// let ids = index.add(Vectors::new(2, vec![0.6, 0.8])?.view(), &())?;
    /// assert_eq!(ids, 2..3);
    /// assert_eq!(index.search(&[0.6, 0.8], 1)?[0].id, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add(
        &mut self,
        vectors: VectorView<'_>,
        progress: &dyn Progress,
    ) -> Result<std::ops::Range<u32>> {
        let ids = self.add_labelled(vectors, None, progress)?;
        let first = ids.first().copied().unwrap_or(self.meta.len as u32);
        Ok(first..first + ids.len() as u32)
    }

    /// Adds `vectors` as [`HnswIndex::add`] does, under the ids `ids` when given (hnswlib's
    /// labels: one per row, distinct, none live in the index already; a deleted item's id may
    /// be given again), and returns the ids the rows got.
    ///
    /// ```
    /// use search_core::{SearchIndex, Vectors};
    /// use search_hnsw::HnswIndex;
    /// let v = Vectors::new(2, vec![1.0, 0.0, 0.0, 1.0])?;
    /// let mut index = HnswIndex::build(v.view(), &Default::default(), &())?;
    /// let more = Vectors::new(2, vec![0.6, 0.8])?;
    /// assert_eq!(index.add_labelled(more.view(), Some(&[70]), &())?, [70]);
    /// assert_eq!(index.search(&[0.6, 0.8], 1)?[0].id, 70);
    /// assert!(index.add_labelled(more.view(), Some(&[0]), &()).is_err()); // 0 is live
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_labelled(
        &mut self,
        vectors: VectorView<'_>,
        ids: Option<&[u32]>,
        progress: &dyn Progress,
    ) -> Result<Vec<u32>> {
        if vectors.dim() != self.meta.dim {
            return Err(Error::Dimension {
                expected: self.meta.dim,
                found: vectors.dim(),
            });
        }
        let old_len = self.meta.len;
        let new_len = old_len + vectors.len();
        if u32::try_from(new_len).is_err() {
            return Err(Error::InvalidArgument(format!(
                "{new_len} items exceed the u32 id space"
            )));
        }
        let meta = self.meta;
        let lines = padded_rows(vectors, meta.space, old_len)?;
        let new_ids = self.new_ids(vectors.len(), ids)?;
        progress.set_total(vectors.len() as u64);
        let seed = meta.seed ^ (old_len as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let new_levels = draw_levels(vectors.len(), meta.m, seed);
        let o = self.owned();
        let identity = o.labels.is_none()
            && new_ids
                .iter()
                .enumerate()
                .all(|(i, &id)| id as usize == old_len + i);
        if !identity {
            let labels = o
                .labels
                .get_or_insert_with(|| (0..old_len as u32).collect());
            labels.extend_from_slice(&new_ids);
        }
        if let Some(codes) = &mut o.codes {
            codes.append(Codes::of(&lines, meta.stride, meta.dim));
        }
        if let Some(s) = &mut o.signs {
            let more = signs::Codes::of(s.frame.view(), &lines, meta.stride);
            s.codes.append(more);
        }
        o.vectors.extend_from_slice(&lines);
        o.deleted.resize(new_len, 0);
        let old = std::mem::replace(&mut o.graph, empty_graph());
        let graph = grow(
            &meta,
            &o.vectors,
            o.codes.as_ref(),
            o.signs.as_ref(),
            &o.deleted,
            old,
            &new_levels,
            0,
            progress,
        )?;
        let (entry, max_level) = (graph.entry, graph.max_level);
        o.graph = graph;
        self.meta.entry = entry;
        self.meta.max_level = max_level;
        self.meta.len = new_len;
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).clear();
        Ok(new_ids)
    }

    /// The ids `count` new rows get: `ids` checked (one per row, distinct, none live), else
    /// the next ones (row numbers, or past the largest label).
    fn new_ids(&self, count: usize, ids: Option<&[u32]>) -> Result<Vec<u32>> {
        let v = self.view();
        let Some(ids) = ids else {
            let first = match v.labels {
                None => v.meta.len as u64,
                Some(l) => l.iter().max().map_or(0, |&m| u64::from(m) + 1),
            };
            if u32::try_from(first + count as u64).is_err() {
                return Err(Error::InvalidArgument("ids would exceed u32".into()));
            }
            return Ok((first as u32..(first + count as u64) as u32).collect());
        };
        if ids.len() != count {
            return Err(Error::InvalidArgument(format!(
                "{} ids for {count} rows",
                ids.len()
            )));
        }
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        if let Some(dup) = ids.iter().find(|&&id| !seen.insert(id)) {
            return Err(Error::InvalidArgument(format!("id {dup} is given twice")));
        }
        if let Some(live) = ids.iter().find(|&&id| self.contains(id)) {
            return Err(Error::InvalidArgument(format!(
                "id {live} is already in the index (delete it first)"
            )));
        }
        Ok(ids.to_vec())
    }

    /// Marks item `id` deleted: it stays in the graph as a waypoint but is never returned.
    /// Fails when there is no such live item. A mapped index is copied into memory first.
    pub fn delete(&mut self, id: u32) -> Result<()> {
        let internal = self.internal_id(id)?;
        let o = self.owned();
        if o.deleted[internal] != 0 {
            return Err(Error::InvalidArgument(format!(
                "item {id} is already deleted"
            )));
        }
        o.deleted[internal] = 1;
        self.meta.deleted += 1;
        Ok(())
    }

    /// True when item `id` exists and is not deleted.
    pub fn contains(&self, id: u32) -> bool {
        self.internal_id(id)
            .is_ok_and(|i| self.view().deleted[i] == 0)
    }

    fn internal_id(&self, id: u32) -> Result<usize> {
        let v = self.view();
        let found = match v.labels {
            None => ((id as usize) < v.meta.len).then_some(id as usize),
            // An id given again after a delete: the live item first.
            Some(l) => l
                .iter()
                .enumerate()
                .position(|(i, &x)| x == id && v.deleted[i] == 0)
                .or_else(|| l.iter().position(|&x| x == id)),
        };
        found.ok_or_else(|| Error::InvalidArgument(format!("no item with id {id} in the index")))
    }

    /// Every node's level-0 neighbour list (diagnostics).
    #[doc(hidden)]
    pub fn level0_lists(&self) -> Vec<Vec<u32>> {
        let v = self.view();
        let mut buf = Vec::new();
        (0..v.meta.len as u32)
            .map(|i| {
                v.neighbours(i, 0, &mut buf);
                buf.clone()
            })
            .collect()
    }

    /// Checks the whole graph (every link in range, counts within bounds, levels consistent):
    /// O(size of the index). `load` does not do this, because searches bounds-check as they go.
    pub fn verify(&self) -> Result<()> {
        let v = self.view();
        let bad = |m: String| Err(Error::InvalidArgument(format!("corrupt graph: {m}")));
        let n = v.meta.len;
        for id in 0..n {
            let l0 = &v.links0[id * (v.meta.m0 + 1)..(id + 1) * (v.meta.m0 + 1)];
            if l0[0] as usize > v.meta.m0 || l0[1..=l0[0] as usize].iter().any(|&x| x as usize >= n)
            {
                return bad(format!("node {id} has a bad level-0 list"));
            }
            let level = usize::from(v.levels[id]);
            if level > 0 {
                let b = v.upper_off[id] as usize;
                let Some(block) = v.upper.get(b..b + level * (v.meta.m + 1)) else {
                    return bad(format!("node {id}'s upper lists lie outside the file"));
                };
                for l in block.chunks_exact(v.meta.m + 1) {
                    if l[0] as usize > v.meta.m
                        || l[1..=l[0] as usize].iter().any(|&x| x as usize >= n)
                    {
                        return bad(format!("node {id} has a bad upper list"));
                    }
                }
            }
        }
        if let Some(max) = v.meta.max_level
            && v.levels.get(v.meta.entry as usize) != Some(&max)
        {
            return bad("the entry point is not on the top level".into());
        }
        Ok(())
    }
}

impl SearchIndex for HnswIndex {
    type Params = HnswParams;
    const NAME: &'static str = "hnsw";

    fn build_unchecked(
        vectors: VectorView<'_>,
        params: &HnswParams,
        progress: &dyn Progress,
    ) -> Result<Self> {
        check_params(params)?;
        let n = vectors.len();
        progress.set_total(n as u64);
        let space = params.space;
        // The int8 and sign codes assume unit rows.
        let quantize = params.quantize && space == Space::Cosine;
        let lines = padded_rows(vectors, space, 0)?;
        let stride = round_up(vectors.dim());
        let m0 = 2 * params.m;
        let levels = draw_levels(n, params.m, params.seed);
        let deleted = vec![0u8; n];
        let codes = quantize.then(|| Codes::of(&lines, stride, vectors.dim()));
        let signs = quantize.then(|| {
            let rows: &[f32] = &lines;
            let frame = Frame::new(
                rows.chunks_exact(stride).map(|r| &r[..vectors.dim()]),
                vectors.dim(),
                params.seed,
            );
            let codes = signs::Codes::of(frame.view(), rows, stride);
            Signs { frame, codes }
        });
        let mut meta = Meta {
            dim: vectors.dim(),
            stride,
            len: n,
            m: params.m,
            m0,
            ef_construction: params.ef_construction.max(params.m),
            ef: params.ef,
            seed: params.seed,
            space,
            entry: 0,
            max_level: None,
            deleted: 0,
            code_stride: if quantize {
                code_stride(vectors.dim())
            } else {
                0
            },
            sign_words: if quantize {
                signs::words(vectors.dim())
            } else {
                0
            },
        };
        let graph = grow(
            &meta,
            &lines,
            codes.as_ref(),
            signs.as_ref(),
            &deleted,
            empty_graph(),
            &levels,
            params.threads,
            progress,
        )?;
        meta.entry = graph.entry;
        meta.max_level = graph.max_level;
        Ok(HnswIndex::from_parts(
            meta,
            Owned {
                vectors: lines,
                graph,
                deleted,
                labels: None,
                codes,
                signs,
            },
        ))
    }

    fn save(&self, path: &Path) -> Result<()> {
        let v = self.view();
        let meta = v.meta.words(v.upper.len(), v.labels.is_some());
        let mut sections: Vec<(&str, &[u8])> = vec![
            ("meta", bytemuck::cast_slice(&meta)),
            ("vectors", bytemuck::cast_slice(v.vecs)),
            ("links0", bytemuck::cast_slice(v.links0)),
            ("upper", bytemuck::cast_slice(v.upper)),
            ("upper_off", bytemuck::cast_slice(v.upper_off)),
            ("levels", v.levels),
            ("deleted", v.deleted),
        ];
        if let Some(l) = v.labels {
            sections.push(("labels", bytemuck::cast_slice(l)));
        }
        if let Some((codes, scales)) = v.codes {
            sections.push(("codes", bytemuck::cast_slice(codes)));
            sections.push(("scales", bytemuck::cast_slice(scales)));
        }
        if let Some(s) = v.signs {
            sections.push(("rotation", bytemuck::cast_slice(s.frame.flips)));
            sections.push(("mean", bytemuck::cast_slice(s.frame.mean)));
            sections.push(("signs", bytemuck::cast_slice(s.bits)));
            sections.push(("sign_factors", bytemuck::cast_slice(s.factors)));
        }
        write_container(path, KIND_BYTES, VERSION, &sections)
    }

    /// Hot: everything but the f32 rows (of which a query re-ranks `ef`), unless the index
    /// keeps no codes and walks on them.
    fn load_with(path: &Path, warmup: Warmup) -> Result<Self> {
        let c = Container::open(path, KIND_BYTES, 1..=VERSION)?;
        let mut w = [0u64; META_LEN];
        let words = match c.version() {
            1 => META_LEN - 2,
            2 => META_LEN - 1,
            _ => META_LEN,
        };
        w[..words].copy_from_slice(c.section_exact::<u64>("meta", words)?);
        let bad = |m: String| Error::format(path, m);
        let [
            dim,
            stride,
            len,
            m,
            m0,
            efc,
            ef,
            seed,
            space,
            entry,
            max_level,
            deleted,
            upper_len,
            has_labels,
            code_stride_w,
            sign_words,
        ] = w;
        let space =
            Space::from_code(space).ok_or_else(|| bad(format!("unknown space code {space}")))?;
        if dim == 0 || dim > 1 << 20 || stride != round_up(dim as usize) as u64 {
            return Err(bad(format!(
                "impossible dimension {dim} (row stride {stride})"
            )));
        }
        if len > u64::from(u32::MAX) || !(2..=10_000).contains(&m) || m0 < m || m0 > 20_000 {
            return Err(bad(format!(
                "impossible shape: {len} items, M = {m}, M0 = {m0}"
            )));
        }
        if upper_len > u64::from(u32::MAX) || has_labels > 1 || deleted > len || ef == 0 {
            return Err(bad("corrupt header".into()));
        }
        let max_level = match max_level {
            u64::MAX if len == 0 => None,
            l if l <= u64::from(MAX_LEVEL) && entry < len => Some(l as u8),
            _ => {
                return Err(bad(format!(
                    "bad entry point {entry} / top level {max_level}"
                )));
            }
        };
        let (dim, stride, len, m, m0) = (
            dim as usize,
            stride as usize,
            len as usize,
            m as usize,
            m0 as usize,
        );
        let vec_len = len.checked_mul(stride);
        let l0_len = len.checked_mul(m0 + 1);
        let (Some(vec_len), Some(l0_len)) = (vec_len, l0_len) else {
            return Err(bad("sizes overflow".into()));
        };
        c.section_exact::<f32>("vectors", vec_len)?;
        c.section_exact::<u32>("links0", l0_len)?;
        c.section_exact::<u32>("upper", upper_len as usize)?;
        c.section_exact::<u32>("upper_off", len)?;
        c.section_exact::<u8>("levels", len)?;
        let del = c.section_exact::<u8>("deleted", len)?;
        let counted = del.iter().filter(|&&d| d != 0).count();
        if counted as u64 != deleted {
            return Err(bad(format!(
                "header says {deleted} deleted items, the file marks {counted}"
            )));
        }
        if code_stride_w != 0 {
            if code_stride_w != code_stride(dim) as u64 || space != Space::Cosine {
                return Err(bad(format!("bad int8 row size {code_stride_w}")));
            }
            let code_len = len
                .checked_mul(code_stride_w as usize)
                .ok_or_else(|| bad("sizes overflow".into()))?;
            c.section_exact::<u8>("codes", code_len)?;
            c.section_exact::<f32>("scales", len)?;
        }
        if sign_words != 0 {
            if sign_words != signs::words(dim) as u64 || space != Space::Cosine {
                return Err(bad(format!("bad sign code row size {sign_words}")));
            }
            let bits = len
                .checked_mul(sign_words as usize)
                .ok_or_else(|| bad("sizes overflow".into()))?;
            c.section_exact::<u64>("rotation", signs::ROUNDS * sign_words as usize)?;
            c.section_exact::<f32>("mean", dim)?;
            c.section_exact::<u64>("signs", bits)?;
            c.section_exact::<f32>("sign_factors", 4 * len)?;
        }
        if has_labels == 1 {
            c.section_exact::<u32>("labels", len)?;
        } else if c.section("labels").is_ok() {
            return Err(bad(
                "has a labels section the header does not announce".into()
            ));
        }
        let meta = Meta {
            dim,
            stride,
            len,
            m,
            m0,
            ef_construction: efc as usize,
            ef: ef as usize,
            seed,
            space,
            entry: entry as u32,
            max_level,
            deleted: counted,
            code_stride: code_stride_w as usize,
            sign_words: sign_words as usize,
        };
        let mut hot = [
            "links0",
            "upper",
            "upper_off",
            "levels",
            "deleted",
            "labels",
            "codes",
            "scales",
            "rotation",
            "mean",
            "signs",
            "sign_factors",
        ]
        .map(|name| (name, Access::Random))
        .to_vec();
        if meta.code_stride == 0 {
            hot.push(("vectors", Access::Random));
        }
        c.warm(&hot, warmup);
        Ok(HnswIndex {
            meta,
            store: Store::Mapped(c),
            pool: Mutex::new(Vec::new()),
        })
    }

    fn dim(&self) -> usize {
        self.meta.dim
    }

    fn len(&self) -> usize {
        self.meta.len - self.meta.deleted
    }

    fn search_unchecked(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.search_ef(query, k, self.meta.ef)
    }

    /// The knob is `ef` (at least `k` is used).
    fn search_knob_unchecked(&self, query: &[f32], k: usize, knob: usize) -> Result<Vec<Hit>> {
        self.search_ef(query, k, knob.max(1))
    }

    fn add(
        &mut self,
        vectors: VectorView<'_>,
        ids: Option<&[u32]>,
        progress: &dyn Progress,
    ) -> Result<Vec<u32>> {
        self.add_labelled(vectors, ids, progress)
    }

    fn delete(&mut self, id: u32) -> Result<()> {
        HnswIndex::delete(self, id)
    }

    fn set_ids(&mut self, ids: &[u32]) -> Result<()> {
        if ids.len() != self.meta.len {
            return Err(Error::InvalidArgument(format!(
                "{} ids for {} rows",
                ids.len(),
                self.meta.len
            )));
        }
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        if let Some(dup) = ids.iter().find(|&&id| !seen.insert(id)) {
            return Err(Error::InvalidArgument(format!("id {dup} is given twice")));
        }
        let identity = ids.iter().enumerate().all(|(i, &id)| id as usize == i);
        self.owned().labels = (!identity).then(|| ids.to_vec());
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).clear();
        Ok(())
    }

    /// The stored row: scaled to unit length in a cosine index (as hnswlib's `get_items`).
    /// Deleted items have none.
    fn vector(&self, id: u32) -> Result<Vec<f32>> {
        let internal = self.internal_id(id)?;
        let v = self.view();
        if v.deleted[internal] != 0 {
            return Err(Error::InvalidArgument(format!("item {id} is deleted")));
        }
        Ok(v.row(internal as u32)[..v.meta.dim].to_vec())
    }

    /// hnswlib's file ([`HnswIndex::save_hnswlib`]).
    fn save_foreign(&self, path: &Path) -> Result<()> {
        self.save_hnswlib(path)
    }

    /// Row numbers up to the rows ever added (deleted ones keep theirs), or hnswlib labels.
    fn id_bound(&self) -> u64 {
        if self.view().labels.is_some() {
            u64::from(u32::MAX) + 1
        } else {
            self.meta.len as u64
        }
    }

    fn scores_are_cosines(&self) -> bool {
        self.meta.space == Space::Cosine
    }

    fn search_threshold_unchecked(&self, query: &[f32], tau: f32) -> Result<Vec<Hit>> {
        if self.meta.space == Space::L2 {
            return Err(Error::InvalidArgument(
                "threshold search is by cosine similarity; this index uses l2 distance".into(),
            ));
        }
        let q = self.prepare(query)?;
        let live = self.meta.len - self.meta.deleted;
        let mut ef = self.meta.ef.max(32);
        loop {
            let found = self.find(&q, ef);
            let exhausted = found.len() < ef || ef >= live;
            if exhausted || found.last().is_some_and(|c| -c.d <= tau) {
                let above: Vec<Cand> = found.into_iter().filter(|c| -c.d > tau).collect();
                return Ok(self.hits(&above));
            }
            ef = (ef * 2).min(live);
        }
    }

    fn knob(&self) -> Option<Knob> {
        Some(Knob {
            name: "ef",
            value: self.meta.ef,
        })
    }

    fn set_knob(&mut self, value: usize) -> Result<()> {
        if value == 0 {
            return Err(Error::InvalidArgument("ef must be at least 1".into()));
        }
        self.meta.ef = value;
        Ok(())
    }
}
