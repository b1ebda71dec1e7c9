//! The single-query scan: f32 rows or int8 codes in blocks of `BLOCK_ROWS`, split over threads
//! that share a rising floor, with the exact f32 re-check of every row the compact score cannot
//! rule out. It does not know the file format or the batched matrix product; it reads the rows
//! and codes through `LinearIndex::vectors` and `LinearIndex::codes`.

use rayon::prelude::*;
use search_core::{Hit, Result, check_k, check_tau, normalized};
use search_kernels::{DotFn, dot_kernel};

use super::{BLOCK_ROWS, Codes, LinearIndex, ScanStats, SharedFloor};
use crate::codes::{Bound, QueryCode, query_code_max};
use crate::select::TopK;

impl LinearIndex {
    /// [`SearchIndex::search`], also returning what the scan read.
    ///
    /// [`SearchIndex::search`]: search_core::SearchIndex::search
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
    ///
    /// [`SearchIndex::search_threshold`]: search_core::SearchIndex::search_threshold
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
}

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
