//! Graph construction: hnswlib's `addPoint` with `getNeighborsByHeuristic2`, run on every core.
//!
//! Nodes are inserted in id order from a shared counter (like hnswlib's `ParallelFor`), so a
//! build on one thread is reproducible from the seed; levels are drawn up front from the seed.
//! Neighbour lists are atomics guarded by one small lock per node; a thread never holds two
//! node locks at once, so there is no lock order to get wrong.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use embed_store::{Error, Progress, Result};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::quant::DotI8;
use crate::search::{Cand, Links, Scratch, greedy, search_layer};
use embed_store::kernels::{DotFn as DistFn, prefetch};

/// Highest level a node may get (levels are stored in a byte).
pub(crate) const MAX_LEVEL: u8 = 32;

/// The frozen result of a build: plain arrays, ready to be searched or saved.
pub(crate) struct Graph {
    pub links0: Vec<u32>,
    pub upper: Vec<u32>,
    pub upper_off: Vec<u32>,
    pub levels: Vec<u8>,
    pub entry: u32,
    /// `None` for an empty graph.
    pub max_level: Option<u8>,
}

/// Draws `count` levels with hnswlib's distribution `floor(-ln(U) / ln(M))`.
pub(crate) fn draw_levels(count: usize, m: usize, seed: u64) -> Vec<u8> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mult = 1.0 / (m as f64).ln();
    (0..count)
        .map(|_| {
            let u: f64 = 1.0 - rng.random::<f64>(); // in (0, 1]
            (-u.ln() * mult).min(f64::from(MAX_LEVEL)) as u8
        })
        .collect()
}

/// Distances between stored nodes (smaller is closer), as the build sees them.
pub(crate) trait NodeDist: Sync {
    fn between(&self, a: u32, b: u32) -> f32;
    /// Starts loading node `a`'s row into cache.
    fn prefetch(&self, a: u32);
}

/// Exact distances on the padded f32 rows.
pub(crate) struct F32Dist<'a> {
    pub vecs: &'a [f32],
    pub stride: usize,
    pub f: DistFn,
}

impl NodeDist for F32Dist<'_> {
    #[inline]
    fn between(&self, a: u32, b: u32) -> f32 {
        let row = |i: u32| &self.vecs[i as usize * self.stride..(i as usize + 1) * self.stride];
        (self.f)(row(a), row(b))
    }

    #[inline]
    fn prefetch(&self, a: u32) {
        let b = a as usize * self.stride;
        if let Some(row) = self.vecs.get(b..b + self.stride) {
            prefetch(row.as_ptr().cast(), self.stride * 4);
        }
    }
}

/// Approximate `-dot` on the int8 codes (see [`crate::quant`]).
pub(crate) struct I8Dist<'a> {
    pub codes: &'a [i8],
    pub stride: usize,
    pub scales: &'a [f32],
    pub f: DotI8,
}

impl NodeDist for I8Dist<'_> {
    #[inline]
    fn between(&self, a: u32, b: u32) -> f32 {
        let row = |i: u32| &self.codes[i as usize * self.stride..(i as usize + 1) * self.stride];
        -(self.scales[a as usize] * self.scales[b as usize] * (self.f)(row(a), row(b)) as f32)
    }

    #[inline]
    fn prefetch(&self, a: u32) {
        let b = a as usize * self.stride;
        if let Some(row) = self.codes.get(b..b + self.stride) {
            prefetch(row.as_ptr().cast(), self.stride);
        }
    }
}

struct Top {
    entry: u32,
    max_level: Option<u8>,
}

/// A graph under construction.
pub(crate) struct Builder<'a, D: NodeDist> {
    dist: D,
    n: usize,
    m: usize,
    m0: usize,
    efc: usize,
    deleted: &'a [u8],
    links0: Vec<AtomicU32>,
    upper: Vec<AtomicU32>,
    upper_off: Vec<u32>,
    levels: Vec<u8>,
    locks: Vec<Mutex<()>>,
    top: Mutex<Top>,
}

impl<D: NodeDist> Links for Builder<'_, D> {
    fn len(&self) -> usize {
        self.n
    }

    fn neighbours(&self, id: u32, level: usize, out: &mut Vec<u32>) {
        out.clear();
        let _g = self.lock(id);
        let list = self.list(id, level);
        let count = (list[0].load(Relaxed) as usize).min(list.len() - 1);
        out.extend(
            list[1..=count]
                .iter()
                .map(|a| a.load(Relaxed))
                .filter(|&x| (x as usize) < self.n),
        );
    }
}

impl<'a, D: NodeDist> Builder<'a, D> {
    /// A builder over `n` nodes whose distances `dist` knows. `old` is the frozen graph of the
    /// first nodes (empty for a fresh build); `new_levels` the levels of the nodes to insert.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dist: D,
        n: usize,
        m: usize,
        m0: usize,
        efc: usize,
        deleted: &'a [u8],
        old: Graph,
        new_levels: &[u8],
    ) -> Result<Self> {
        let old_n = old.levels.len();
        debug_assert_eq!(old_n + new_levels.len(), n);
        let block = m + 1;
        let mut upper_off = old.upper_off;
        let mut upper_len = old.upper.len();
        for &l in new_levels {
            upper_off.push(u32::try_from(upper_len).map_err(|_| too_big())?);
            upper_len += usize::from(l) * block;
        }
        u32::try_from(upper_len).map_err(|_| too_big())?;
        let mut links0: Vec<AtomicU32> = old.links0.into_iter().map(AtomicU32::new).collect();
        links0.resize_with(n * (m0 + 1), || AtomicU32::new(0));
        let mut upper: Vec<AtomicU32> = old.upper.into_iter().map(AtomicU32::new).collect();
        upper.resize_with(upper_len, || AtomicU32::new(0));
        let mut levels = old.levels;
        levels.extend_from_slice(new_levels);
        Ok(Builder {
            dist,
            n,
            m,
            m0,
            efc: efc.max(m),
            deleted,
            links0,
            upper,
            upper_off,
            levels,
            locks: (0..n).map(|_| Mutex::new(())).collect(),
            top: Mutex::new(Top {
                entry: old.entry,
                max_level: old.max_level,
            }),
        })
    }

    fn lock(&self, id: u32) -> MutexGuard<'_, ()> {
        // A poisoned lock only means another insertion panicked; the lists are still valid.
        self.locks[id as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn list(&self, id: u32, level: usize) -> &[AtomicU32] {
        if level == 0 {
            let b = id as usize * (self.m0 + 1);
            &self.links0[b..b + self.m0 + 1]
        } else {
            let b = self.upper_off[id as usize] as usize + (level - 1) * (self.m + 1);
            &self.upper[b..b + self.m + 1]
        }
    }

    fn d(&self, a: u32, b: u32) -> f32 {
        self.dist.between(a, b)
    }

    /// Inserts nodes `from..n` on every thread of the current rayon pool, in id order.
    pub fn insert_all(&self, from: usize, progress: &dyn Progress) {
        let mut from = from;
        if from < self.n
            && self
                .top
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .max_level
                .is_none()
        {
            // The very first node becomes the entry point.
            let mut s = Scratch::new(self.n);
            self.insert(from as u32, &mut s);
            progress.advance(1);
            from += 1;
        }
        let next = AtomicUsize::new(from);
        rayon::broadcast(|_| {
            let mut s = Scratch::new(self.n);
            let mut done = 0;
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= self.n {
                    break;
                }
                self.insert(i as u32, &mut s);
                done += 1;
                if done == 64 {
                    progress.advance(done);
                    done = 0;
                }
            }
            progress.advance(done);
        });
    }

    fn insert(&self, id: u32, s: &mut Scratch) {
        let level = self.levels[id as usize];
        let mut top = self.top.lock().unwrap_or_else(|e| e.into_inner());
        let Some(max_level) = top.max_level else {
            top.entry = id;
            top.max_level = Some(level);
            return;
        };
        let entry = top.entry;
        // Keep the global lock only when this node becomes the new top (as hnswlib does).
        let top = (level > max_level).then_some(top);

        let dist = |j: u32| self.dist.between(id, j);
        let mut cur = Cand {
            d: dist(entry),
            id: entry,
        };
        let mut buf = std::mem::take(&mut s.buf);
        for l in (usize::from(level) + 1..=usize::from(max_level)).rev() {
            cur = greedy(self, l, cur, &dist, &mut buf);
        }
        s.buf = buf;
        let keep = |j: u32| self.deleted.get(j as usize).is_none_or(|&x| x == 0);
        let mut found = Vec::new();
        let mut selected = Vec::new();
        for l in (0..=usize::from(level.min(max_level))).rev() {
            search_layer(
                self,
                l,
                cur,
                self.efc,
                false,
                &dist,
                &keep,
                &|j| self.dist.prefetch(j),
                s,
                &mut found,
            );
            found.retain(|c| c.id != id);
            if found.is_empty() {
                continue;
            }
            self.select(&found, self.m, &mut selected);
            self.connect(id, l, &selected);
            cur = selected[0];
        }
        if let Some(mut top) = top {
            top.entry = id;
            top.max_level = Some(level);
        }
    }

    /// hnswlib's `getNeighborsByHeuristic2`: from `cands` (closest first), keep a candidate
    /// only if it is closer to the query than to every candidate kept before it; at most `m`.
    fn select(&self, cands: &[Cand], m: usize, out: &mut Vec<Cand>) {
        out.clear();
        if cands.len() < m {
            out.extend_from_slice(cands);
            return;
        }
        for &c in cands {
            if out.len() >= m {
                break;
            }
            if out.iter().all(|s| self.d(s.id, c.id) >= c.d) {
                out.push(c);
            }
        }
    }

    /// Links `id` to `selected` at `level` and each of them back to `id`, pruning a full list
    /// with the heuristic (hnswlib's `mutuallyConnectNewElement`).
    fn connect(&self, id: u32, level: usize, selected: &[Cand]) {
        let cap = if level == 0 { self.m0 } else { self.m };
        let mut cands = Vec::with_capacity(cap + selected.len());
        let mut kept = Vec::with_capacity(cap);
        {
            let _g = self.lock(id);
            let list = self.list(id, level);
            let existing = (list[0].load(Relaxed) as usize).min(cap);
            // Another thread may already have linked itself here: it started its own layer
            // search from this node before this insertion reached the layer (hnswlib instead
            // holds the node's lock for the whole insertion). Keep those links too.
            let mine: &[Cand] = if existing == 0 {
                selected
            } else {
                cands.extend_from_slice(selected);
                for a in &list[1..=existing] {
                    let other = a.load(Relaxed);
                    if !cands.iter().any(|c| c.id == other) {
                        cands.push(Cand {
                            d: self.d(id, other),
                            id: other,
                        });
                    }
                }
                cands.sort_unstable();
                self.select(&cands, cap, &mut kept);
                &kept
            };
            let count = mine.len().min(list.len() - 1);
            for (slot, c) in list[1..].iter().zip(&mine[..count]) {
                slot.store(c.id, Relaxed);
            }
            list[0].store(count as u32, Relaxed);
        }
        for s in selected {
            let _g = self.lock(s.id);
            let list = self.list(s.id, level);
            let count = (list[0].load(Relaxed) as usize).min(cap);
            if list[1..=count].iter().any(|a| a.load(Relaxed) == id) {
                continue;
            }
            if count < cap {
                list[1 + count].store(id, Relaxed);
                list[0].store(count as u32 + 1, Relaxed);
                continue;
            }
            cands.clear();
            cands.push(Cand { d: s.d, id });
            for a in &list[1..=count] {
                let other = a.load(Relaxed);
                cands.push(Cand {
                    d: self.d(other, s.id),
                    id: other,
                });
            }
            cands.sort_unstable();
            self.select(&cands, cap, &mut kept);
            for (slot, c) in list[1..].iter().zip(&kept) {
                slot.store(c.id, Relaxed);
            }
            list[0].store(kept.len() as u32, Relaxed);
        }
    }

    /// Freezes the graph into plain arrays.
    pub fn finish(self) -> Graph {
        let top = self.top.into_inner().unwrap_or_else(|e| e.into_inner());
        Graph {
            links0: self.links0.into_iter().map(AtomicU32::into_inner).collect(),
            upper: self.upper.into_iter().map(AtomicU32::into_inner).collect(),
            upper_off: self.upper_off,
            levels: self.levels,
            entry: top.entry,
            max_level: top.max_level,
        }
    }
}

fn too_big() -> Error {
    Error::InvalidArgument("the graph's upper layers exceed 2^32 links".into())
}
