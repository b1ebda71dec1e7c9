//! Serving queries from a validated Annoy file: Annoy's `_get_all_nns`, with the same
//! candidates for the same `search_k`, but no sorting of candidate ids (a stamp array dedups
//! them), no allocation per query (scratch buffers per thread) and SIMD dot products.

use std::cell::RefCell;
use std::collections::BinaryHeap;

use search_core::Hit;
use search_kernels::DotFn;

use crate::layout::{Layout, Metric, check_node};

/// A validated forest, borrowed from its storage.
#[derive(Clone, Copy)]
pub(crate) struct Forest<'a> {
    pub words: &'a [u32],
    pub layout: Layout,
    pub n_items: usize,
    pub n_nodes: usize,
    pub roots: &'a [u32],
}

/// Per-thread buffers reused by every query.
#[derive(Default)]
pub(crate) struct Scratch {
    heap: BinaryHeap<u64>,
    /// `seen[i] == epoch` when item `i` is already a candidate of the current query.
    seen: Vec<u32>,
    epoch: u32,
    /// Unique candidate items of the current query.
    pub cands: Vec<u32>,
    /// Scored candidates.
    pub hits: Vec<Hit>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch buffers.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        // Re-entered from inside a query (cannot happen today): use fresh buffers.
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Heap key ordered like Annoy's `std::priority_queue<pair<T, S>>`: larger priority first, then
/// larger node index.
#[inline]
fn key(prio: f32, node: u32) -> u64 {
    // C++ compares -0.0 equal to 0.0: make them one key.
    let b = (prio + 0.0).to_bits();
    let ordered = if b >> 31 == 1 { !b } else { b | 0x8000_0000 };
    (u64::from(ordered) << 32) | u64::from(node)
}

#[inline]
fn unkey(key: u64) -> (f32, u32) {
    let o = (key >> 32) as u32;
    let b = if o >> 31 == 1 { o & 0x7FFF_FFFF } else { !o };
    (f32::from_bits(b), key as u32)
}

impl<'a> Forest<'a> {
    #[inline]
    fn node(&self, i: usize) -> &'a [u32] {
        &self.words[i * self.layout.words..(i + 1) * self.layout.words]
    }

    /// The vector of item `i` (which must be below `n_items`).
    #[inline]
    pub fn vector(&self, i: usize) -> &'a [f32] {
        bytemuck::cast_slice(&self.node(i)[self.layout.v..])
    }

    /// True when node `i` is a usable item.
    #[inline]
    pub fn is_item(&self, i: usize) -> bool {
        i < self.n_items && self.words[i * self.layout.words] == 1
    }

    /// Annoy's candidate gathering: pops nodes best-first until `search_k` items (counting
    /// repeats, as Annoy does) were collected; leaves the distinct items in `s.cands`.
    ///
    /// Every tree node it reads is checked first ([`check_node`]: opening checks only the
    /// roots); a damaged one fails the query with the problem found.
    pub fn gather(
        &self,
        q: &[f32],
        search_k: usize,
        dot: DotFn,
        s: &mut Scratch,
    ) -> Result<(), String> {
        let l = self.layout;
        if s.seen.len() < self.n_items {
            s.seen.clear();
            s.seen.resize(self.n_items, 0);
            s.epoch = 0;
        }
        s.epoch = s.epoch.wrapping_add(1);
        if s.epoch == 0 {
            s.seen.iter_mut().for_each(|x| *x = 0);
            s.epoch = 1;
        }
        let epoch = s.epoch;
        s.cands.clear();
        s.heap.clear();
        for &r in self.roots {
            s.heap.push(key(f32::INFINITY, r));
        }
        let mut found = 0usize;
        // A valid file pops every node at most once per root list; a damaged one (two parents
        // sharing a child) still stops.
        let mut budget = 2 * self.n_nodes + self.roots.len();
        while found < search_k && budget > 0 {
            let Some(top) = s.heap.pop() else { break };
            budget -= 1;
            let (d, i) = unkey(top);
            let i = i as usize;
            let node = self.node(i);
            let nd = node[0] as usize;
            if i < self.n_items {
                // Item nodes reached directly (single-item subtrees). Anything else there is
                // damage that validation did not look at: skip it.
                if nd == 1 {
                    found += 1;
                    if s.seen[i] != epoch {
                        s.seen[i] = epoch;
                        s.cands.push(i as u32);
                    }
                }
            } else if let Err(msg) = check_node(self.words, &l, self.n_items, i) {
                return Err(msg);
            } else if nd <= l.max_bucket {
                found += nd;
                for &id in &node[l.children..l.children + nd] {
                    // In range: `check_node` checked the ids.
                    let seen = &mut s.seen[id as usize];
                    if *seen != epoch {
                        *seen = epoch;
                        s.cands.push(id);
                    }
                }
            } else {
                let v: &[f32] = bytemuck::cast_slice(&node[l.v..]);
                let mut margin = dot(v, q);
                if l.metric == Metric::Euclidean {
                    margin += f32::from_bits(node[1]);
                }
                let (c0, c1) = (node[l.children], node[l.children + 1]);
                s.heap.push(key(d.min(margin), c1));
                s.heap.push(key(d.min(-margin), c0));
            }
        }
        Ok(())
    }

    /// Cosine similarity of a unit query to item `i`, or `None` when undefined.
    #[inline]
    pub fn cosine(&self, unit_q: &[f32], i: usize, dot: DotFn) -> Option<f32> {
        let v = self.vector(i);
        let pp = match self.layout.metric {
            Metric::Angular => {
                let stored = f32::from_bits(self.words[i * self.layout.words + 1]);
                if stored != 0.0 { stored } else { dot(v, v) }
            }
            Metric::Euclidean => dot(v, v),
        };
        let c = if pp > 0.0 {
            dot(unit_q, v) / pp.sqrt()
        } else {
            0.0
        };
        c.is_finite().then_some(c)
    }

    /// Annoy's distance from a raw query to item `i` (before the final square root), as
    /// `_get_all_nns` computes it.
    pub fn annoy_distance(&self, q: &[f32], qq: f32, i: usize, dot: DotFn) -> f32 {
        let v = self.vector(i);
        match self.layout.metric {
            Metric::Angular => {
                let stored = f32::from_bits(self.words[i * self.layout.words + 1]);
                let pp = if stored != 0.0 { stored } else { dot(v, v) };
                let ppqq = pp * qq;
                if ppqq > 0.0 {
                    2.0 - 2.0 * dot(q, v) / ppqq.sqrt()
                } else {
                    2.0
                }
            }
            Metric::Euclidean => v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum(),
        }
    }

    /// Prefetches the start of item `i`'s node (a hint; never faults).
    #[inline]
    pub fn prefetch(&self, i: usize) {
        let start = i * self.layout.words;
        if let Some(node) = self.words.get(start..) {
            // The first eight cache lines of the node: its header and the start of its vector.
            search_kernels::prefetch(node.as_ptr().cast(), (self.layout.words * 4).min(8 * 64));
        }
    }
}

/// Keeps the best `k` of `hits` in ranking order.
pub(crate) fn top_k(hits: &mut Vec<Hit>, k: usize) {
    if hits.len() > k {
        hits.select_nth_unstable_by(k - 1, Hit::ranking);
        hits.truncate(k);
    }
    hits.sort_unstable_by(Hit::ranking);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_like_annoys_pairs() {
        let vals = [
            f32::NEG_INFINITY,
            -3.5,
            -0.0,
            0.0,
            1e-30,
            2.0,
            f32::INFINITY,
        ];
        for (a, &x) in vals.iter().enumerate() {
            for &y in &vals[a..] {
                for (n1, n2) in [(1u32, 2u32), (2, 1), (7, 7)] {
                    let want = x.partial_cmp(&y).unwrap().then(n1.cmp(&n2));
                    assert_eq!(key(x, n1).cmp(&key(y, n2)), want, "{x} {n1} vs {y} {n2}");
                }
                assert_eq!(unkey(key(x, 9)), (x + 0.0, 9));
            }
        }
    }
}
