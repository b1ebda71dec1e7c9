//! Graph construction: hnswlib's `addPoint` with `getNeighborsByHeuristic2`, run on every core.
//!
//! Nodes are inserted in id order from a shared counter (like hnswlib's `ParallelFor`), so a
//! build on one thread is reproducible from the seed; levels are drawn up front from the seed.
//! Neighbour lists are atomics guarded by one small lock per node; a thread never holds two
//! node locks at once, so there is no lock order to get wrong.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use search_core::{Error, Progress, Result};

use crate::search::{Cand, Links, NoScreen, Scratch, greedy, search_layer};
use crate::signs::{CodesRef, EPS0, SignScreen};
use search_kernels::int8::DotI8Fn as DotI8;
use search_kernels::{DotFn as DistFn, advise_huge_pages, prefetch, resize_on_large_pages};

/// Mixed into the level seed to seed the insertion order.
const ORDER_SEED: u64 = 0x6f72_6465_7273_6565;

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
    /// One-bit codes to screen each insertion's walk with, and the f32 rows (`stride` floats)
    /// the inserted nodes' queries are made from.
    screen: Option<(CodesRef<'a>, &'a [f32], usize)>,
    links0: Vec<AtomicU32>,
    upper: Vec<AtomicU32>,
    /// Beside every link slot, the distance (f32 bits) from the list's node to the linked
    /// node, so that pruning a full list needs no distances to its node recomputed; `NaN`
    /// for links of a graph loaded from a file.
    dists0: Vec<AtomicU32>,
    dists_upper: Vec<AtomicU32>,
    upper_off: Vec<u32>,
    levels: Vec<u8>,
    locks: Vec<Mutex<()>>,
    top: Mutex<Top>,
}

/// Set in a list's count word while the list is *pruned*: sorted by distance to its node,
/// and every link kept by the heuristic against the links before it. Every list the build
/// writes is pruned, except a first list chosen from fewer candidates than its capacity
/// (all taken, as in hnswlib) and the lists of a graph read from a file.
const PRUNED: u32 = 1 << 31;

/// A list's length from its count word.
fn count_of(word: u32, cap: usize) -> usize {
    ((word & !PRUNED) as usize).min(cap)
}

/// One list under construction: its link ids and their distances, behind its node's lock.
struct List<'a> {
    ids: &'a [AtomicU32],
    dists: &'a [AtomicU32],
}

impl List<'_> {
    fn cap(&self) -> usize {
        self.ids.len() - 1
    }

    fn count(&self) -> usize {
        count_of(self.ids[0].load(Relaxed), self.cap())
    }

    fn is_pruned(&self) -> bool {
        self.ids[0].load(Relaxed) & PRUNED != 0
    }

    fn get(&self, j: usize) -> Cand {
        Cand {
            id: self.ids[1 + j].load(Relaxed),
            d: f32::from_bits(self.dists[1 + j].load(Relaxed)),
        }
    }

    fn contains(&self, id: u32) -> bool {
        self.ids[1..=self.count()]
            .iter()
            .any(|a| a.load(Relaxed) == id)
    }

    /// Replaces the list with `cands` (at most its capacity).
    fn write(&self, cands: &[Cand], pruned: bool) {
        let count = cands.len().min(self.cap());
        for (j, c) in cands[..count].iter().enumerate() {
            self.ids[1 + j].store(c.id, Relaxed);
            self.dists[1 + j].store(c.d.to_bits(), Relaxed);
        }
        self.ids[0].store(count as u32 | if pruned { PRUNED } else { 0 }, Relaxed);
    }
}

impl<D: NodeDist> Links for Builder<'_, D> {
    fn len(&self) -> usize {
        self.n
    }

    fn neighbours(&self, id: u32, level: usize, out: &mut Vec<u32>) {
        out.clear();
        let _g = self.lock(id);
        let list = self.list(id, level);
        let count = list.count();
        out.extend(
            list.ids[1..=count]
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
        screen: Option<(CodesRef<'a>, &'a [f32], usize)>,
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
        let links0 = shared_words(old.links0, n * (m0 + 1), 0);
        let upper = shared_words(old.upper, upper_len, 0);
        let nan = f32::NAN.to_bits();
        let dists0 = shared_words(Vec::new(), links0.len(), nan);
        let dists_upper = shared_words(Vec::new(), upper.len(), nan);
        let mut locks = Vec::new();
        resize_on_large_pages(&mut locks, n, || Mutex::new(()));
        let mut levels = old.levels;
        levels.extend_from_slice(new_levels);
        Ok(Builder {
            dist,
            n,
            m,
            m0,
            efc: efc.max(m),
            deleted,
            screen,
            links0,
            upper,
            dists0,
            dists_upper,
            upper_off,
            levels,
            locks,
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

    /// Node `id`'s list at `level`; read or written only under the node's lock.
    fn list(&self, id: u32, level: usize) -> List<'_> {
        let (ids, dists, b, len) = if level == 0 {
            (
                &self.links0,
                &self.dists0,
                id as usize * (self.m0 + 1),
                self.m0 + 1,
            )
        } else {
            let b = self.upper_off[id as usize] as usize + (level - 1) * (self.m + 1);
            (&self.upper, &self.dists_upper, b, self.m + 1)
        };
        List {
            ids: &ids[b..b + len],
            dists: &dists[b..b + len],
        }
    }

    fn d(&self, a: u32, b: u32) -> f32 {
        self.dist.between(a, b)
    }

    /// Inserts nodes `from..n` on every thread of the current rayon pool: highest level first,
    /// in a seeded random order within a level (faiss's order). Inserting in id order puts
    /// near-duplicates that sit next to each other in the input (a person's images) into the
    /// graph at the same moment on different threads, where neither sees the other: on the
    /// notebook's gallery 6.7% of an identity's images then had no link from any other image
    /// of the same person, and a query that found the person missed some of their images.
    pub fn insert_all(&self, from: usize, seed: u64, progress: &dyn Progress) {
        let mut order: Vec<u32> = (from as u32..self.n as u32).collect();
        order.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(seed ^ ORDER_SEED));
        order.sort_by_key(|&i| std::cmp::Reverse(self.levels[i as usize]));
        let mut order = &order[..];
        if let Some((&first, rest)) = order.split_first()
            && self
                .top
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .max_level
                .is_none()
        {
            // The very first node becomes the entry point.
            let mut s = Scratch::new(self.n);
            self.insert(first, &mut s);
            progress.advance(1);
            order = rest;
        }
        let next = AtomicUsize::new(0);
        rayon::broadcast(|_| {
            let mut s = Scratch::new(self.n);
            let mut done = 0;
            while let Some(&i) = order.get(next.fetch_add(1, Relaxed)) {
                self.insert(i, &mut s);
                done += 1;
                if done == 64 {
                    progress.advance(done);
                    done = 0;
                    if progress.cancelled() {
                        // The caller discards the graph (SearchIndex::build fails).
                        break;
                    }
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
        let screen = self.screen.map(|(codes, rows, stride)| {
            let at = id as usize * stride;
            SignScreen::new(codes, &rows[at..at + stride], EPS0)
        });
        let mut found = Vec::new();
        let mut selected = Vec::new();
        for l in (0..=usize::from(level.min(max_level))).rev() {
            let prefetch = |j| self.dist.prefetch(j);
            match &screen {
                Some(screen) => search_layer(
                    self, l, cur, self.efc, false, &dist, &keep, &prefetch, 2, screen, s,
                    &mut found,
                ),
                None => search_layer(
                    self, l, cur, self.efc, false, &dist, &keep, &prefetch, 1, &NoScreen, s,
                    &mut found,
                ),
            }
            found.retain(|c| c.id != id);
            if found.is_empty() {
                continue;
            }
            // Up to 2M links on level 0, as faiss (hnswlib takes M and leaves the rest to
            // back-links): more ways into each node, fewer queries that miss a person.
            let pruned = self.select(&found, if l == 0 { self.m0 } else { self.m }, &mut selected);
            self.connect(id, l, &selected, pruned, s);
            cur = selected[0];
        }
        if let Some(mut top) = top {
            top.entry = id;
            top.max_level = Some(level);
        }
    }

    /// hnswlib's `getNeighborsByHeuristic2`: from `cands` (closest first), keep a candidate
    /// only if it is closer to the query than to every candidate kept before it; at most `m`.
    /// Fewer than `m` candidates are all kept, unpruned: returns whether the heuristic ran.
    fn select(&self, cands: &[Cand], m: usize, out: &mut Vec<Cand>) -> bool {
        out.clear();
        if cands.len() < m {
            out.extend_from_slice(cands);
            return false;
        }
        self.heuristic(cands, m, out, &|a, b| self.d(a, b));
        true
    }

    /// The heuristic itself, whatever the number of candidates.
    /// `pair` gives the distance between two candidates.
    fn heuristic(
        &self,
        cands: &[Cand],
        m: usize,
        out: &mut Vec<Cand>,
        pair: &impl Fn(u32, u32) -> f32,
    ) {
        out.clear();
        for &c in cands {
            if out.len() >= m {
                break;
            }
            if out.iter().all(|s| pair(s.id, c.id) >= c.d) {
                out.push(c);
            }
        }
    }

    /// Links `id` to `selected` at `level` and each of them back to `id`
    /// (hnswlib's `mutuallyConnectNewElement`). hnswlib appends a back-link unpruned while a
    /// list has room and runs the heuristic over a full list; here a list whose node was
    /// linked by the heuristic stays pruned (a back-link enters by [`Self::prune_into`]: on the
    /// notebook's gallery, the same recall per ef for a fraction of the distances), and a
    /// list linked without it (fewer than M candidates) takes back-links as hnswlib does.
    ///
    /// `known` holds the distances from `id` that its layer search computed: most of those
    /// the pruning needs.
    fn connect(&self, id: u32, level: usize, selected: &[Cand], pruned: bool, known: &Scratch) {
        let from_new = |j: u32| known.known(j).unwrap_or_else(|| self.d(id, j));
        let mut cands = Vec::with_capacity(selected.len() + self.m0 + 1);
        let mut kept = Vec::with_capacity(self.m0);
        {
            let _g = self.lock(id);
            let list = self.list(id, level);
            // Another thread may already have linked itself here: it started its own layer
            // search from this node before this insertion reached the layer (hnswlib instead
            // holds the node's lock for the whole insertion). Keep those links too.
            if list.count() == 0 {
                list.write(selected, pruned);
            } else {
                cands.extend_from_slice(selected);
                for j in 0..list.count() {
                    let other = list.get(j);
                    if !cands.iter().any(|c| c.id == other.id) {
                        cands.push(Cand {
                            d: from_new(other.id),
                            id: other.id,
                        });
                    }
                }
                cands.sort_unstable();
                let pruned = self.select(&cands, list.cap(), &mut kept);
                list.write(&kept, pruned);
            }
        }
        for s in selected {
            let _g = self.lock(s.id);
            let list = self.list(s.id, level);
            let new = Cand { d: s.d, id };
            if list.contains(id) {
                continue;
            }
            if list.is_pruned() {
                self.prune_into(&list, new, &mut kept, &from_new);
            } else if list.count() < list.cap() {
                // Room left in a list the heuristic never ran on (its node found fewer than
                // M candidates: a small graph, or an early node): append, as hnswlib does.
                // Running the heuristic here drops links, and in a small graph built on
                // several threads some node then had no in-link at all.
                cands.clear();
                cands.extend((0..list.count()).map(|j| list.get(j)));
                cands.push(new);
                list.write(&cands, false);
            } else {
                cands.clear();
                cands.push(new);
                cands.extend((0..list.count()).map(|j| {
                    let c = list.get(j);
                    Cand {
                        d: if c.d.is_nan() {
                            self.d(c.id, s.id)
                        } else {
                            c.d
                        },
                        id: c.id,
                    }
                }));
                cands.sort_unstable();
                let pair = |a: u32, b: u32| match (a == id, b == id) {
                    (true, _) => from_new(b),
                    (_, true) => from_new(a),
                    _ => self.d(a, b),
                };
                self.heuristic(&cands, list.cap(), &mut kept, &pair);
                list.write(&kept, true);
            }
        }
    }

    /// Adds `new` to the pruned `list` exactly as the heuristic over the list and `new`
    /// together would, from far fewer distances (`from_new` gives those from `new`). The links
    /// closer than `new` stay: their predecessors are unchanged. `new` stays if it passes
    /// them. Each link after it passed its predecessors before, so it now needs only the
    /// check against `new`. Then the list is cut to its capacity.
    fn prune_into(
        &self,
        list: &List<'_>,
        new: Cand,
        kept: &mut Vec<Cand>,
        from_new: &impl Fn(u32) -> f32,
    ) {
        kept.clear();
        kept.extend((0..list.count()).map(|j| list.get(j)));
        let at = kept.partition_point(|c| *c < new);
        if kept[..at].iter().any(|s| from_new(s.id) < new.d) {
            return; // the heuristic drops `new`; the others keep their places
        }
        let mut len = at;
        kept.insert(at, new);
        for j in at..kept.len() {
            if len == list.cap() {
                break;
            }
            let c = kept[j];
            if j == at || from_new(c.id) >= c.d {
                kept[len] = c;
                len += 1;
            }
        }
        list.write(&kept[..len], true);
    }

    /// Freezes the graph into plain arrays.
    pub fn finish(self) -> Graph {
        let top = self.top.into_inner().unwrap_or_else(|e| e.into_inner());
        Graph {
            links0: strip_flags(self.links0, self.m0 + 1),
            upper: strip_flags(self.upper, self.m + 1),
            upper_off: self.upper_off,
            levels: self.levels,
            entry: top.entry,
            max_level: top.max_level,
        }
    }
}

/// `words` followed by copies of `fill` up to `len`, as atomics, on large pages (every
/// insertion reads and writes lists all over them).
fn shared_words(words: Vec<u32>, len: usize, fill: u32) -> Vec<AtomicU32> {
    let mut out = Vec::with_capacity(len.max(words.len()));
    advise_huge_pages(out.spare_capacity_mut());
    out.extend(words.into_iter().map(AtomicU32::new));
    out.resize_with(len, || AtomicU32::new(fill));
    out
}

/// The lists as plain words, the [`PRUNED`] marks taken off their count words.
fn strip_flags(lists: Vec<AtomicU32>, block: usize) -> Vec<u32> {
    let mut words: Vec<u32> = lists.into_iter().map(AtomicU32::into_inner).collect();
    for list in words.chunks_exact_mut(block) {
        list[0] &= !PRUNED;
    }
    words
}

fn too_big() -> Error {
    Error::InvalidArgument("the graph's upper layers exceed 2^32 links".into())
}
