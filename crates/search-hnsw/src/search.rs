//! The graph walk shared by construction and queries: hnswlib's `searchBaseLayer(ST)` and the
//! greedy descent through the upper layers, over any source of neighbour lists and any distance.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use search_kernels::resize_on_large_pages;

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
/// The visited list is one bit per node: at a million nodes 128 KB, which stays in the core's
/// cache where a stamp per node would not, and every neighbour a walk meets is checked against
/// it. It is cleared whole before each walk: a few microseconds at a million nodes, less than
/// keeping track of the words a walk touched cost at 100k. Construction
/// ([`Scratch::new`]) also keeps the distances its walk computed, with a second bit per node
/// saying which, for the pruning that follows; a query ([`Scratch::for_queries`]) keeps none.
pub(crate) struct Scratch {
    /// One bit per node, set when the current walk visited it.
    seen: Vec<u64>,
    /// Construction: one bit per node, set when the current walk computed its distance.
    computed: Vec<u64>,
    /// Construction: the distance computed for each node whose `computed` bit is set.
    dists: Vec<f32>,
    /// Whether this scratch is construction's (distances kept) or a query's.
    record: bool,
    candidates: BinaryHeap<Reverse<Cand>>,
    results: BinaryHeap<Cand>,
    pub buf: Vec<u32>,
}

impl Scratch {
    /// Working memory for walks over `n` nodes that keep their distances (construction).
    pub fn new(n: usize) -> Self {
        Self::with(n, true)
    }

    /// Working memory for query walks over `n` nodes: no distances kept.
    pub fn for_queries(n: usize) -> Self {
        Self::with(n, false)
    }

    fn with(n: usize, record: bool) -> Self {
        let words = n.div_ceil(64);
        let mut dists = Vec::new();
        if record {
            resize_on_large_pages(&mut dists, n, || 0.0);
        }
        Scratch {
            seen: vec![0; words],
            computed: if record { vec![0; words] } else { Vec::new() },
            dists,
            record,
            candidates: BinaryHeap::new(),
            results: BinaryHeap::new(),
            buf: Vec::new(),
        }
    }

    /// Starts a new walk over a graph of `n` nodes.
    fn reset(&mut self, n: usize) {
        let words = n.div_ceil(64);
        self.seen.clear();
        self.seen.resize(words, 0);
        if self.record {
            self.computed.clear();
            self.computed.resize(words, 0);
            if self.dists.len() < n {
                resize_on_large_pages(&mut self.dists, n, || 0.0);
            }
        }
        self.candidates.clear();
        self.results.clear();
    }

    /// The word of a bit list that holds node `id`'s bit, and that bit.
    #[inline]
    fn bit(id: u32) -> (usize, u64) {
        (id as usize / 64, 1 << (id % 64))
    }

    /// The distance the last walk computed for node `id`, if it computed one (construction
    /// only).
    #[inline]
    pub fn known(&self, id: u32) -> Option<f32> {
        let (w, bit) = Self::bit(id);
        (self.record && self.computed.get(w).is_some_and(|c| c & bit != 0))
            .then(|| self.dists[id as usize])
    }

    /// Keeps the distance of node `id`, visited by this walk, when this scratch records them.
    #[inline]
    fn note(&mut self, id: u32, d: f32) {
        if self.record {
            let (w, bit) = Self::bit(id);
            self.dists[id as usize] = d;
            self.computed[w] |= bit;
        }
    }

    /// Marks `id` visited; true when it was not yet.
    #[inline]
    fn visit(&mut self, id: u32) -> bool {
        let (w, bit) = Self::bit(id);
        let word = &mut self.seen[w];
        let fresh = *word & bit == 0;
        *word |= bit;
        fresh
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
            // Sizes that change the number of words, and one (130 -> 140) that does not.
            for n in [10, 130, 140, 3, 200, 64, 5000] {
                for walk in 0..3 {
                    s.reset(n);
                    // The first walks touch few words, the last most of them.
                    let step = if walk == 2 { 1 } else { 3 };
                    for id in (0..n as u32).step_by(step) {
                        assert!(s.visit(id), "{id} of {n} fresh");
                        assert!(!s.visit(id), "{id} of {n} seen");
                        assert_eq!(s.known(id), None, "{id} of {n} not computed yet");
                        s.note(id, id as f32);
                    }
                    for id in (0..n as u32).step_by(step) {
                        let want = s.record.then_some(id as f32);
                        assert_eq!(s.known(id), want, "{id} of {n}");
                    }
                    if step == 3 {
                        for id in (1..n as u32).step_by(3) {
                            assert!(s.visit(id), "{id} of {n} untouched this walk");
                            assert_eq!(s.known(id), None, "{id} of {n} not computed");
                        }
                    }
                }
            }
        }
    }
}
