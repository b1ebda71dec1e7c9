//! The batch: queries in chunks against cache-sized gallery blocks through faer's matrix
//! product, a bounded selection per query, and the exact f32 re-check of every row within the
//! product's error bound of the floor. It does not know the file format or the int8 codes; it
//! reads only the f32 rows.

use rayon::prelude::*;
use search_core::{Error, Hit, Result, VectorView, check_k, check_tau, normalized_rows};
use search_kernels::dot_kernel;

use super::{LinearIndex, SharedFloor};
use crate::select::TopK;

impl LinearIndex {
    /// The top `k` of every query, best first: the same lists [`SearchIndex::search`] returns,
    /// computed with a blocked matrix product (faer) of the queries by the gallery.
    ///
    /// Memory stays bounded whatever the gallery or batch size: queries go in chunks of at most
    /// 256, the gallery in blocks of [`BATCH_BLOCK_ROWS`] rows per thread, and each query keeps
    /// a bounded selection of at most `max(2k, k + 8)` hits per run of blocks (two runs per thread).
    ///
    /// [`SearchIndex::search`]: search_core::SearchIndex::search
    pub fn search_batch(&self, queries: VectorView<'_>, k: usize) -> Result<Vec<Vec<Hit>>> {
        check_k(k)?;
        let qs = self.normalized_queries(queries)?;
        // Selections cost up to max(2k, k + 8) hits per query and run: keep them near 64 MiB a run.
        let chunk = (((64 << 20) / 8) / (2 * k + 8).max(1)).clamp(1, 256);
        let mut out = Vec::with_capacity(queries.len());
        for qchunk in qs.chunks(chunk * self.dim) {
            let tops = self.batch_chunk(
                qchunk,
                || TopK::new(k),
                |t| t.floor(),
                |t, h| t.push(h),
                TopK::merge,
            );
            out.extend(tops.into_iter().map(TopK::into_sorted));
        }
        Ok(out)
    }

    /// Every row with cosine similarity above `tau`, for every query, best first: the same
    /// lists [`SearchIndex::search_threshold`] returns, via the blocked matrix product.
    ///
    /// [`SearchIndex::search_threshold`]: search_core::SearchIndex::search_threshold
    pub fn search_batch_threshold(
        &self,
        queries: VectorView<'_>,
        tau: f32,
    ) -> Result<Vec<Vec<Hit>>> {
        check_tau(tau)?;
        let qs = self.normalized_queries(queries)?;
        let mut out = Vec::with_capacity(queries.len());
        for qchunk in qs.chunks(256 * self.dim) {
            let lists = self.batch_chunk(
                qchunk,
                Vec::new,
                |_| tau,
                |v: &mut Vec<Hit>, h| {
                    if h.score > tau {
                        v.push(h)
                    }
                },
                |mut a, b| {
                    a.extend(b);
                    a
                },
            );
            out.extend(lists.into_iter().map(|mut v| {
                v.sort_unstable_by(Hit::ranking);
                v
            }));
        }
        Ok(out)
    }

    fn normalized_queries(&self, queries: VectorView<'_>) -> Result<Vec<f32>> {
        if queries.dim() != self.dim {
            return Err(Error::Dimension {
                expected: self.dim,
                found: queries.dim(),
            });
        }
        Ok(normalized_rows(queries)
            .map_err(|e| match e {
                Error::BadVector { what, reason } => Error::BadVector {
                    what: what.replace("gallery row", "query"),
                    reason,
                },
                e => e,
            })?
            .into_inner())
    }

    /// One chunk of at most 256 queries against the whole gallery. Each block's scores `g`
    /// come from faer's f32 matrix product; `|g − f| ≤ 2·γ_d·N·‖q‖` where `f` is the plain
    /// scan's score (both are f32 sums of the same `d` products, see `codes`), so every row with
    /// `g + that ≥ floor` is re-scored with the plain kernel and offered with its exact score.
    fn batch_chunk<S: Send>(
        &self,
        qs: &[f32],
        init: impl Fn() -> S + Sync + Send,
        floor: impl Fn(&S) -> f32 + Sync + Send,
        offer: impl Fn(&mut S, Hit) + Sync + Send,
        merge: impl Fn(S, S) -> S + Sync + Send,
    ) -> Vec<S> {
        let dim = self.dim;
        let m = qs.len() / dim;
        let vectors = self.vectors();
        let dot = dot_kernel();
        let u = f64::from(f32::EPSILON) / 2.0;
        let gamma = dim as f64 * u / (1.0 - dim as f64 * u);
        let slack: Vec<f32> = qs
            .chunks_exact(dim)
            .map(|q| {
                let qn = q.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
                (2.0 * gamma * self.norm_max * qn * (1.0 + 1e-9) + 1e-6) as f32
            })
            .collect();
        let lhs = faer::MatRef::from_row_major_slice(qs, m, dim);
        let shared: Vec<SharedFloor> = (0..m).map(|_| SharedFloor::new()).collect();
        let blocks = self.len.div_ceil(BATCH_BLOCK_ROWS);
        let fresh = || {
            (
                (0..m).map(|_| init()).collect::<Vec<S>>(),
                vec![0f32; m * BATCH_BLOCK_ROWS],
            )
        };
        let run = |(mut states, mut scores): (Vec<S>, Vec<f32>), b: usize| {
            let start = b * BATCH_BLOCK_ROWS;
            let nb = BATCH_BLOCK_ROWS.min(self.len - start);
            let block = &vectors[start * dim..(start + nb) * dim];
            let rhs = faer::MatRef::from_row_major_slice(block, nb, dim).transpose();
            let dst = faer::MatMut::from_row_major_slice_mut(&mut scores[..m * nb], m, nb);
            faer::linalg::matmul::matmul(
                dst,
                faer::Accum::Replace,
                lhs,
                rhs,
                1.0f32,
                faer::Par::Seq,
            );
            for (qi, s) in states.iter_mut().enumerate() {
                let q = &qs[qi * dim..(qi + 1) * dim];
                let row_scores = &scores[qi * nb..(qi + 1) * nb];
                let shared = &shared[qi];
                let floor = |s: &S| floor(s).max(shared.get());
                let mut lim = floor(s) - slack[qi];
                for (c, chunk) in row_scores.chunks(16).enumerate() {
                    if chunk.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) < lim {
                        continue;
                    }
                    for (j, &g) in chunk.iter().enumerate() {
                        if g >= lim {
                            let id = start + c * 16 + j;
                            let score = dot(&vectors[id * dim..(id + 1) * dim], q);
                            offer(
                                s,
                                Hit {
                                    id: id as u32,
                                    score,
                                },
                            );
                            lim = floor(s) - slack[qi];
                        }
                    }
                }
                shared.raise(floor(s));
            }
            (states, scores)
        };
        let parallel = self.len >= 2 * BATCH_BLOCK_ROWS && rayon::current_num_threads() > 1;
        if parallel {
            // Contiguous runs of blocks, two per thread, each with one state per query, so
            // that each selection fills once; floors are shared per query across threads.
            let parts = (2 * rayon::current_num_threads()).min(blocks);
            (0..parts)
                .into_par_iter()
                .map(|p| {
                    (p * blocks / parts..(p + 1) * blocks / parts)
                        .fold(fresh(), &run)
                        .0
                })
                .reduce_with(|a, b| a.into_iter().zip(b).map(|(x, y)| merge(x, y)).collect())
                .unwrap_or_else(|| fresh().0)
        } else {
            (0..blocks).fold(fresh(), run).0
        }
    }
}

/// Gallery rows per block of the batched matrix product (1 MiB of f32 at d = 512).
pub const BATCH_BLOCK_ROWS: usize = 512;
