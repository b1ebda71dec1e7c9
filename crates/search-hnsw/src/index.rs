//! [`HnswIndex`]: storage (owned or memory-mapped), queries, save/load, add and delete.

use std::path::Path;
use std::sync::Mutex;

use rayon::prelude::*;
use search_core::container::Container;
use search_core::{
    Error, Hit, Knob, Progress, Result, SearchIndex, VectorView, Warmup, check_vector,
};
use search_kernels::{Aligned, DotFn as DistFn, advise_huge_pages, normalise, quantize};

use crate::build::Graph;
use crate::quant::code_stride;
use crate::search::{Links, Scratch};
use crate::signs::{self, CodesRef, Frame, FrameRef};

mod file;
mod mutation;
mod query;
mod verify;

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
        let mut scales = Vec::with_capacity(n);
        advise_huge_pages(scales.spare_capacity_mut());
        codes
            .par_chunks_mut(cs)
            .zip(rows.par_chunks(stride))
            .map(|(out, row)| quantize(&row[..dim], out))
            .collect_into_vec(&mut scales);
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
}

impl SearchIndex for HnswIndex {
    type Params = HnswParams;
    const NAME: &'static str = "hnsw";

    fn build_unchecked(
        vectors: VectorView<'_>,
        params: &HnswParams,
        progress: &dyn Progress,
    ) -> Result<Self> {
        HnswIndex::build_new(vectors, params, progress)
    }

    fn save(&self, path: &Path) -> Result<()> {
        self.write_file(path)
    }

    /// Hot: everything but the f32 rows (of which a query re-ranks `ef`), unless the index
    /// keeps no codes and walks on them.
    fn load_with(path: &Path, warmup: Warmup) -> Result<Self> {
        HnswIndex::read_file(path, warmup)
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
        self.search_threshold_walk(query, tau)
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
