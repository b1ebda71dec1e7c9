//! The query path: a query checked and padded into the index's space (`prepare`), the greedy
//! descent and the level-0 walk on the most compact distances the index keeps, re-ranked in
//! f32 (`find` -> `walk`), the threshold search's growing `ef`, and the hits in the caller's
//! ids (`hits`). It reads the graph only through [`View`]; it does not know the
//! file format and never changes the index.

use search_core::{Error, Hit, Result, check_k, check_vector};
use search_kernels::int8::DOT_I8;
use search_kernels::{normalise, prefetch, quantize};

use super::{HnswIndex, Space, View};
use crate::search::{Cand, NoScreen, Scratch, Screen, greedy, search_layer};
use crate::signs::{EPS0, SignScreen};

impl HnswIndex {
    /// Checks a query and turns it into a padded row in the index's space.
    pub(super) fn prepare(&self, query: &[f32]) -> Result<Vec<f32>> {
        let dim = self.meta.dim;
        check_vector(query, dim, || "query".into())?;
        let mut q = vec![0.0; self.meta.stride];
        q[..dim].copy_from_slice(query);
        if self.meta.space == Space::Cosine {
            normalise(&mut q[..dim]);
        }
        Ok(q)
    }

    /// The closest live nodes to the padded query `q` among the `ef` its walk finds, closest
    /// first, with exact distances: at least the `need` closest of them (all when `need ≥ ef`).
    /// The walk uses the most compact distances the index keeps: one-bit codes to skip the
    /// neighbours that are surely too far, int8 codes for the rest; f32 rows when it keeps
    /// neither. The int8 results are re-ranked with exact f32 distances, but only those whose
    /// int8 distance, less its error bound, could still place them among the `need` closest.
    pub(super) fn find(&self, q: &[f32], ef: usize, need: usize) -> Vec<Cand> {
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
        // A row's scale lives apart from it: load both ahead.
        let pre = |j: u32| {
            prefetch(code(j).as_ptr().cast(), cs);
            if let Some(s) = scales.get(j as usize) {
                prefetch((s as *const f32).cast(), 4);
            }
        };
        let out = match v.signs {
            None => self.walk(&v, ef, &int8, &pre, 1, &NoScreen),
            Some(signs) => self.walk(&v, ef, &int8, &pre, 2, &SignScreen::new(signs, q, EPS0)),
        };
        // With `need` ≥ the candidates found, the heap is full only after the last of them, so
        // all are re-ranked (a threshold search).
        let slack = Int8Slack::new(&q[..v.meta.dim], qs);
        // The `need` closest exact distances so far (a max-heap). `need` may come from a file's
        // ef: never size memory from it beyond what was found.
        let mut best: std::collections::BinaryHeap<Cand> =
            std::collections::BinaryHeap::with_capacity(need.min(out.len()) + 1);
        let mut kept = Vec::with_capacity(out.len());
        for c in out {
            if best.len() == need
                && best
                    .peek()
                    .is_some_and(|w| c.d - slack.of(scales[c.id as usize]) > w.d)
            {
                continue; // its exact distance is surely larger than the need-th's
            }
            let e = Cand {
                d: exact(q, v.row(c.id)),
                id: c.id,
            };
            kept.push(e);
            best.push(e);
            if best.len() > need {
                best.pop();
            }
        }
        kept.sort_unstable();
        kept
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
            .unwrap_or_else(|| Scratch::for_queries(v.meta.len));
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
        // Without deletions every node is live: no lookup (a cache miss on a large graph).
        let keep = |j: u32| bare || v.is_live(j);
        search_layer(
            v, 0, cur, ef, bare, dist, &keep, pre, ahead, screen, &mut s, &mut out,
        );
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).push(s);
        out
    }

    pub(super) fn hits(&self, cands: &[Cand]) -> Vec<Hit> {
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
    ///
    /// [`SearchIndex::search`]: search_core::SearchIndex::search
    pub fn search_ef(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<Hit>> {
        check_k(k)?;
        let q = self.prepare(query)?;
        let mut found = self.find(&q, ef.max(k), k);
        found.truncate(k);
        Ok(self.hits(&found))
    }

    /// The body of `SearchIndex::search_threshold`: walks with `ef` doubling until the list
    /// reaches a score at or below `tau` or holds every live item.
    pub(super) fn search_threshold_walk(&self, query: &[f32], tau: f32) -> Result<Vec<Hit>> {
        if self.meta.space == Space::L2 {
            return Err(Error::InvalidArgument(
                "threshold search is by cosine similarity; this index uses l2 distance".into(),
            ));
        }
        let q = self.prepare(query)?;
        let live = self.meta.len - self.meta.deleted;
        let mut ef = self.meta.ef.max(32);
        loop {
            let found = self.find(&q, ef, ef);
            let exhausted = found.len() < ef || ef >= live;
            if exhausted || found.last().is_some_and(|c| -c.d <= tau) {
                let above: Vec<Cand> = found.into_iter().filter(|c| -c.d > tau).collect();
                return Ok(self.hits(&above));
            }
            ef = (ef * 2).min(live);
        }
    }
}

/// How far an int8 inner product `s_q·s_x·(c_q·c_x)` can be from the exact `q·x` of a query
/// and a unit row, each rounded to codes with steps `s_q` and `s_x`: with `q = s_q·c_q + e`,
/// `x = s_x·c_x + f`, `|eᵢ| ≤ s_q/2`, `|fᵢ| ≤ s_x/2`, the error `q·f + e·x − e·f` is at most
/// `s_x/2·‖q‖₁ + s_q/2·‖x‖₁ + D·s_q·s_x/4`, and `‖x‖₁ ≤ √D` for a unit row.
struct Int8Slack {
    /// `‖q‖₁ / 2 + D·s_q / 4`: times `s_x`.
    per_row_step: f32,
    /// `s_q·√D / 2`, plus room for the f32 rounding of both sides.
    fixed: f32,
}

impl Int8Slack {
    fn new(q: &[f32], qs: f32) -> Self {
        let d = q.len() as f32;
        let l1: f32 = q.iter().map(|x| x.abs()).sum();
        Int8Slack {
            per_row_step: l1 / 2.0 + d * qs / 4.0,
            fixed: qs * d.sqrt() / 2.0 + 1e-4,
        }
    }

    /// The bound for a row quantised with step `s_x`.
    #[inline]
    fn of(&self, s_x: f32) -> f32 {
        s_x * self.per_row_step + self.fixed
    }
}
