//! Growing and changing the graph: the first build (`build_new`), insertions (`add`,
//! `add_labelled`) that first copy a mapped index into memory (`make_owned`), deletions, the
//! id checks, and `grow`, which runs the builder on int8 or f32 distances in a pool of the
//! requested threads. It does not know the file format and does not answer queries.

use search_core::{Error, Progress, Result, VectorView};
use search_kernels::Aligned;
use search_kernels::int8::DOT_I8;

use super::{
    Codes, HnswIndex, HnswParams, Meta, Owned, Signs, Space, Store, padded_rows, round_up,
};
use crate::build::{Builder, F32Dist, Graph, I8Dist, NodeDist, draw_levels};
use crate::quant::code_stride;
use crate::signs::{self, CodesRef, Frame};

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
    /// The body of `SearchIndex::build`: checks the parameters, pads (and quantises) the
    /// rows, draws the levels and grows the graph from nothing.
    pub(super) fn build_new(
        vectors: VectorView<'_>,
        params: &HnswParams,
        progress: &dyn Progress,
    ) -> Result<HnswIndex> {
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

    pub(super) fn owned(&mut self) -> &mut Owned {
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

    pub(super) fn internal_id(&self, id: u32) -> Result<usize> {
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
}
