//! The graph walk shared by construction and queries: hnswlib's `searchBaseLayer(ST)` and the
//! greedy descent through the upper layers, over any source of neighbour lists and any distance.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// A node and its distance to the query (smaller is closer).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cand {
    pub d: f32,
    pub id: u32,
}

impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        self.d.total_cmp(&o.d).then(self.id.cmp(&o.id))
    }
}

/// Where a walk reads neighbour lists from: the frozen graph (plain slices) or the graph under
/// construction (atomics behind per-node locks).
pub(crate) trait Links {
    /// Number of nodes; every id handed out by [`Links::neighbours`] is below it.
    fn len(&self) -> usize;
    /// Replaces `out` with the neighbours of `id` at `level` (empty when it has none there).
    /// Ids outside the graph are dropped, so a corrupt file can never index out of bounds.
    fn neighbours(&self, id: u32, level: usize, out: &mut Vec<u32>);
}

/// Per-thread working memory of a walk: what it visited, the distances it computed (for
/// construction) and the two heaps.
///
/// Construction keeps a stamp and a distance per node ([`Scratch::new`]): its walks reuse the
/// distances to prune, and the stamps are never cleared between walks. A query keeps one bit
/// per node ([`Scratch::for_queries`]), cleared before each walk: at a million nodes that is
/// 128 KB, which stays in the core's cache where two bytes a node would not, and every
/// neighbour the walk meets is checked against it.
pub(crate) struct Scratch {
    /// Construction: the epoch of the last walk that visited each node.
    visited: Vec<u16>,
    /// Queries: one bit per node, set when visited by the current walk.
    seen: Vec<u64>,
    /// Construction: the distance computed for each node visited by the current walk.
    dists: Vec<f32>,
    /// Whether this scratch is construction's (stamps and distances) or a query's (bits).
    record: bool,
    epoch: u16,
    candidates: BinaryHeap<Reverse<Cand>>,
    results: BinaryHeap<Cand>,
    pub buf: Vec<u32>,
}

impl Scratch {
    /// Working memory for walks over `n` nodes that keep their distances (construction).
    pub fn new(n: usize) -> Self {
        Scratch {
            visited: vec![0; n],
            seen: Vec::new(),
            dists: vec![0.0; n],
            record: true,
            epoch: 0,
            candidates: BinaryHeap::new(),
            results: BinaryHeap::new(),
            buf: Vec::new(),
        }
    }

    /// Working memory for query walks over `n` nodes: visited bits, no distances.
    pub fn for_queries(n: usize) -> Self {
        Scratch {
            visited: Vec::new(),
            seen: vec![0; n.div_ceil(64)],
            dists: Vec::new(),
            record: false,
            epoch: 0,
            candidates: BinaryHeap::new(),
            results: BinaryHeap::new(),
            buf: Vec::new(),
        }
    }

    /// Starts a new walk over a graph of `n` nodes.
    fn reset(&mut self, n: usize) {
        if self.record {
            if self.visited.len() < n {
                self.visited.resize(n, 0);
                self.dists.resize(n, 0.0);
            }
            self.epoch = self.epoch.wrapping_add(1);
            if self.epoch == 0 {
                self.visited.iter_mut().for_each(|v| *v = 0);
                self.epoch = 1;
            }
        } else {
            let words = n.div_ceil(64);
            self.seen.truncate(words);
            self.seen.fill(0);
            self.seen.resize(words, 0);
        }
        self.candidates.clear();
        self.results.clear();
    }

    /// The distance the last walk computed for node `id`, if it visited it and computed it
    /// (construction only).
    #[inline]
    pub fn known(&self, id: u32) -> Option<f32> {
        (self.record && self.visited.get(id as usize) == Some(&self.epoch))
            .then(|| self.dists[id as usize])
            .filter(|d| d.is_finite())
    }

    /// Keeps the distance of node `id` when this scratch records them.
    #[inline]
    fn note(&mut self, id: u32, d: f32) {
        if self.record {
            self.dists[id as usize] = d;
        }
    }

    /// Marks `id` visited; true when it was not yet.
    #[inline]
    fn visit(&mut self, id: u32) -> bool {
        if self.record {
            let v = &mut self.visited[id as usize];
            if *v == self.epoch {
                false
            } else {
                *v = self.epoch;
                true
            }
        } else {
            let (w, bit) = (id as usize / 64, 1u64 << (id % 64));
            let word = &mut self.seen[w];
            let fresh = *word & bit == 0;
            *word |= bit;
            fresh
        }
    }
}

/// Greedy descent: from `start` (at distance `d`), move to the closest neighbour at `level`
/// until none is closer. Returns the local minimum.
///
pub(crate) fn greedy<L: Links>(
    links: &L,
    level: usize,
    mut cur: Cand,
    dist: &impl Fn(u32) -> f32,
    buf: &mut Vec<u32>,
) -> Cand {
    loop {
        let mut changed = false;
        links.neighbours(cur.id, level, buf);
        for &n in buf.iter() {
            let d = dist(n);
            if d < cur.d {
                cur = Cand { d, id: n };
                changed = true;
            }
        }
        if !changed {
            return cur;
        }
    }
}

/// How far ahead the screen's codes are prefetched.
const S_AHEAD: usize = 8;

/// A cheap test that rules out nodes surely farther than a bound.
pub(crate) trait Screen {
    /// False when node `j` is surely farther from the query than `bound`.
    fn may_pass(&self, j: u32, bound: f32) -> bool;
    /// Starts loading what [`Screen::may_pass`] reads of node `j`.
    fn prefetch(&self, j: u32);
    /// Whether to screen at all.
    fn active(&self) -> bool {
        true
    }
}

/// No screening: every neighbour's distance is computed.
pub(crate) struct NoScreen;

impl Screen for NoScreen {
    fn may_pass(&self, _: u32, _: f32) -> bool {
        true
    }
    fn prefetch(&self, _: u32) {}
    fn active(&self) -> bool {
        false
    }
}

/// Best-first search of one layer from `entry`, keeping the `ef` closest nodes found that
/// `keep` accepts (others are walked through but not returned, like hnswlib's deleted nodes).
/// Returns them in `out`, closest first. `prefetch` starts loading what `dist` reads of a
/// node, `ahead` nodes before it is needed.
///
/// `screen` may rule neighbours out before their distances are computed: all the new
/// neighbours of a node are screened first (their cheap codes prefetched `S::AHEAD` ahead),
/// then the distances of those left are computed.
///
/// With `bare` (queries on a graph without deleted nodes) the walk stops as soon as the closest
/// candidate is farther than the worst result, as hnswlib's `searchBaseLayerST<true>` does;
/// otherwise only once `ef` results are held, as its construction search does.
#[allow(clippy::too_many_arguments)]
pub(crate) fn search_layer<L: Links>(
    links: &L,
    level: usize,
    entry: Cand,
    ef: usize,
    bare: bool,
    dist: &impl Fn(u32) -> f32,
    keep: &impl Fn(u32) -> bool,
    prefetch: &impl Fn(u32),
    ahead: usize,
    screen: &impl Screen,
    s: &mut Scratch,
    out: &mut Vec<Cand>,
) {
    let ef = ef.max(1);
    s.reset(links.len());
    let mut buf = std::mem::take(&mut s.buf);
    s.visit(entry.id);
    s.note(entry.id, entry.d);
    let mut bound = f32::INFINITY;
    if keep(entry.id) {
        s.results.push(entry);
        bound = entry.d;
    }
    s.candidates.push(Reverse(entry));
    while let Some(&Reverse(c)) = s.candidates.peek() {
        if c.d > bound && (bare || s.results.len() >= ef) {
            break;
        }
        s.candidates.pop();
        links.neighbours(c.id, level, &mut buf);
        // Mark the new neighbours visited, then compute their distances while the next
        // `ahead` rows load (too many prefetches in flight stall the core).
        buf.retain(|&n| s.visit(n));
        if screen.active() {
            let admit = if s.results.len() < ef {
                f32::INFINITY
            } else {
                bound
            };
            for &n in buf.iter().take(S_AHEAD) {
                screen.prefetch(n);
            }
            let mut kept = 0;
            for j in 0..buf.len() {
                if let Some(&next) = buf.get(j + S_AHEAD) {
                    screen.prefetch(next);
                }
                let n = buf[j];
                if screen.may_pass(n, admit) {
                    buf[kept] = n;
                    kept += 1;
                } else {
                    s.note(n, f32::INFINITY);
                }
            }
            buf.truncate(kept);
        }
        for &n in buf.iter().take(ahead) {
            prefetch(n);
        }
        for (j, &n) in buf.iter().enumerate() {
            if let Some(&next) = buf.get(j + ahead) {
                prefetch(next);
            }
            let d = dist(n);
            s.note(n, d);
            if s.results.len() < ef || d < bound {
                s.candidates.push(Reverse(Cand { d, id: n }));
                if keep(n) {
                    s.results.push(Cand { d, id: n });
                    if s.results.len() > ef {
                        s.results.pop();
                    }
                }
                if let Some(w) = s.results.peek() {
                    bound = w.d;
                }
            }
        }
    }
    s.buf = buf;
    out.clear();
    out.extend(s.results.drain());
    out.sort_unstable();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_scratches_forget_each_walk_and_follow_the_graph_size() {
        for mut s in [Scratch::new(10), Scratch::for_queries(10)] {
            for n in [10, 130, 3, 200, 64] {
                for _ in 0..3 {
                    s.reset(n);
                    for id in (0..n as u32).step_by(3) {
                        assert!(s.visit(id), "{id} of {n} fresh");
                        assert!(!s.visit(id), "{id} of {n} seen");
                    }
                    for id in (1..n as u32).step_by(3) {
                        assert!(s.visit(id), "{id} of {n} untouched this walk");
                    }
                }
            }
        }
    }

    #[test]
    fn only_construction_remembers_distances() {
        let mut build = Scratch::new(8);
        let mut query = Scratch::for_queries(8);
        for s in [&mut build, &mut query] {
            s.reset(8);
            s.visit(5);
            s.note(5, 0.25);
        }
        assert_eq!(build.known(5), Some(0.25));
        assert_eq!(build.known(4), None);
        assert_eq!(query.known(5), None);
    }
}
