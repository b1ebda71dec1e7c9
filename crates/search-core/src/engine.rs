//! The search trait every engine implements, and the hit type it returns.

use std::cmp::Ordering;
use std::path::Path;

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::vectors::VectorView;
use crate::vectors::check_vector;
use crate::warm::Warmup;

/// One search result: a gallery row and its cosine similarity to the query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    /// Row of the gallery the index was built from (0-based).
    pub id: u32,
    /// Cosine similarity to the query, in [-1, 1] up to rounding.
    pub score: f32,
}

impl Hit {
    /// The order every engine returns hits in: higher score first, then lower id.
    ///
    /// ```
    /// use search_core::Hit;
    /// let mut hits = vec![Hit { id: 2, score: 0.5 }, Hit { id: 1, score: 0.9 }, Hit { id: 0, score: 0.5 }];
    /// hits.sort_by(Hit::ranking);
    /// assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), [1, 0, 2]);
    /// ```
    pub fn ranking(a: &Hit, b: &Hit) -> Ordering {
        b.score.total_cmp(&a.score).then(a.id.cmp(&b.id))
    }
}

/// The speed/accuracy knob of an approximate engine, for sweeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Knob {
    /// The knob's name as users know it: `"ef"` for HNSW, `"search_k"` for a forest.
    pub name: &'static str,
    /// Its current value.
    pub value: usize,
}

/// A cosine-similarity search index over a gallery of vectors: the one interface through which
/// `bench-runner` builds, saves, loads and queries every engine.
///
/// Engines know rows by number only: labels stay with the gallery. The checks live here, not
/// in each engine: the provided [`build`](SearchIndex::build), [`search`](SearchIndex::search)
/// and [`search_threshold`](SearchIndex::search_threshold) validate their inputs (empty
/// gallery, dimension, NaN, infinite or zero vectors, k = 0, τ outside [-1, 1]) and return an
/// [`Error`], then call the engine's `*_unchecked` method, then check its answer (real rows,
/// similarities in [-1, 1], best first, above τ) so that a damaged index fails with
/// [`Error::Damaged`] rather than answering wrongly. Engines implement the `*_unchecked`
/// methods and may assume valid input.
pub trait SearchIndex: Send + Sync + Sized {
    /// Build parameters; `Default` gives the notebook's settings.
    type Params: Clone + Default + std::fmt::Debug + Send + Sync;

    /// Short engine name: `"linear"`, `"hnsw"` or `"forest"`.
    const NAME: &'static str;

    /// Builds the index from `vectors`, reporting progress in rows. Fails with
    /// [`Error::InvalidArgument`] on an empty gallery ([`check_gallery_len`]) and with
    /// [`Error::BadVector`] naming the first row that is NaN, infinite or zero.
    fn build(
        vectors: VectorView<'_>,
        params: &Self::Params,
        progress: &dyn Progress,
    ) -> Result<Self> {
        check_gallery_len(vectors.len())?;
        vectors.check_all()?;
        let index = Self::build_unchecked(vectors, params, progress)?;
        if progress.cancelled() {
            return Err(Error::Cancelled);
        }
        Ok(index)
    }

    /// [`SearchIndex::build`] on a gallery already checked: not empty, ids fit in `u32`,
    /// every row finite and non-zero.
    fn build_unchecked(
        vectors: VectorView<'_>,
        params: &Self::Params,
        progress: &dyn Progress,
    ) -> Result<Self>;

    /// Writes the index to `path` atomically: a failed write leaves any previous file intact.
    fn save(&self, path: &Path) -> Result<()>;

    /// Opens an index written by [`SearchIndex::save`], validating it first, with the
    /// default [`Warmup`] (the kernel reads the parts every search reads in the background).
    fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, Warmup::default())
    }

    /// Opens an index written by [`SearchIndex::save`], validating it first, bringing the
    /// parts every search reads into memory as `warmup` says.
    fn load_with(path: &Path, warmup: Warmup) -> Result<Self>;

    /// Number of components per vector.
    fn dim(&self) -> usize;

    /// Number of vectors indexed.
    fn len(&self) -> usize;

    /// True when the index holds no vectors.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `k` rows most similar to `query`, best first (see [`Hit::ranking`]); fewer when the
    /// index holds fewer than `k`. Fails when `k == 0` or the query is unusable.
    fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.search_with(query, k, None)
    }

    /// [`SearchIndex::search`] with the knob set to `knob` for this query alone (`None`: the
    /// index's own setting; engines without a knob ignore it).
    fn search_with(&self, query: &[f32], k: usize, knob: Option<usize>) -> Result<Vec<Hit>> {
        check_k(k)?;
        check_vector(query, self.dim(), || "query".into())?;
        let hits = match knob {
            None => self.search_unchecked(query, k)?,
            Some(knob) => self.search_knob_unchecked(query, k, knob)?,
        };
        if hits.len() > k {
            return Err(damaged::<Self>(format!("{} hits for k = {k}", hits.len())));
        }
        check_hits(self, &hits, -1.0)?;
        Ok(hits)
    }

    /// [`SearchIndex::search`] with `k ≥ 1` and a query of the index's dimension, finite and
    /// non-zero (not necessarily of unit length).
    fn search_unchecked(&self, query: &[f32], k: usize) -> Result<Vec<Hit>>;

    /// [`SearchIndex::search_unchecked`] with the knob at `knob` for this query alone. The
    /// default ignores the knob: right for engines that have none.
    fn search_knob_unchecked(&self, query: &[f32], k: usize, knob: usize) -> Result<Vec<Hit>> {
        let _ = knob;
        self.search_unchecked(query, k)
    }

    /// [`SearchIndex::search_with`] for every row of `queries`, on all cores (rayon's current
    /// pool); the answers in the rows' order. A bad row fails the batch, naming the row.
    fn search_batch(
        &self,
        queries: VectorView<'_>,
        k: usize,
        knob: Option<usize>,
    ) -> Result<Vec<Vec<Hit>>> {
        use rayon::prelude::*;
        check_k(k)?;
        if queries.dim() != self.dim() {
            return Err(Error::Dimension {
                expected: self.dim(),
                found: queries.dim(),
            });
        }
        for (i, q) in queries.rows().enumerate() {
            check_vector(q, self.dim(), || format!("query row {i}"))?;
        }
        queries
            .as_slice()
            .par_chunks_exact(queries.dim())
            .map(|q| self.search_with(q, k, knob))
            .collect()
    }

    /// Adds `vectors` after the build and returns the ids they got: `ids` when given (one per
    /// row, none already live in the index), else the next row numbers. Engines that cannot
    /// grow refuse with [`Error::Unsupported`].
    fn add(
        &mut self,
        vectors: VectorView<'_>,
        ids: Option<&[u32]>,
        progress: &dyn Progress,
    ) -> Result<Vec<u32>> {
        let _ = (vectors, ids, progress);
        Err(Error::Unsupported {
            engine: Self::NAME,
            what: "add items after the build",
        })
    }

    /// Gives the items new ids: `ids[row]` for each row in the order they were built and
    /// added (one per row, distinct), as hnswlib's labels. Engines whose ids are row numbers
    /// refuse with [`Error::Unsupported`].
    fn set_ids(&mut self, ids: &[u32]) -> Result<()> {
        let _ = ids;
        Err(Error::Unsupported {
            engine: Self::NAME,
            what: "give items ids other than their row numbers",
        })
    }

    /// Marks item `id` deleted: never returned again. Engines that cannot delete refuse with
    /// [`Error::Unsupported`].
    fn delete(&mut self, id: u32) -> Result<()> {
        let _ = id;
        Err(Error::Unsupported {
            engine: Self::NAME,
            what: "delete items",
        })
    }

    /// The vector the index stores for item `id` (cosine engines store it scaled to unit
    /// length). Fails with [`Error::InvalidArgument`] when there is no such item.
    fn vector(&self, id: u32) -> Result<Vec<f32>> {
        let _ = id;
        Err(Error::Unsupported {
            engine: Self::NAME,
            what: "return stored vectors",
        })
    }

    /// Writes the index in the file format of the library the engine mirrors (hnswlib's for
    /// HNSW, Annoy's for the forest), atomically. Others refuse with [`Error::Unsupported`].
    fn save_foreign(&self, path: &Path) -> Result<()> {
        let _ = path;
        Err(Error::Unsupported {
            engine: Self::NAME,
            what: "write another library's file format",
        })
    }

    /// Every row whose cosine similarity to `query` is greater than `tau`, best first.
    /// Approximate engines may miss some. Fails when `tau` is outside [-1, 1] or NaN.
    fn search_threshold(&self, query: &[f32], tau: f32) -> Result<Vec<Hit>> {
        check_tau(tau)?;
        check_vector(query, self.dim(), || "query".into())?;
        let hits = self.search_threshold_unchecked(query, tau)?;
        check_hits(self, &hits, tau)?;
        Ok(hits)
    }

    /// [`SearchIndex::search_threshold`] with `tau` in [-1, 1] and a query checked as for
    /// [`SearchIndex::search_unchecked`].
    fn search_threshold_unchecked(&self, query: &[f32], tau: f32) -> Result<Vec<Hit>>;

    /// One past the largest id a hit may carry: [`SearchIndex::len`] where ids are row
    /// numbers; an engine with labels of the user's or deleted rows says its own.
    fn id_bound(&self) -> u64 {
        self.len() as u64
    }

    /// True when scores are cosine similarities (checked to lie in [-1, 1]); an engine that
    /// answers in another space (an HNSW index over hnswlib's `ip` or `l2`) says false.
    fn scores_are_cosines(&self) -> bool {
        true
    }

    /// The engine's speed/accuracy knob, if it has one.
    fn knob(&self) -> Option<Knob> {
        None
    }

    /// Sets the knob returned by [`SearchIndex::knob`]. Exact engines have none and refuse.
    fn set_knob(&mut self, value: usize) -> Result<()> {
        Err(Error::InvalidArgument(format!(
            "the {} engine has no speed/accuracy knob (asked to set it to {value})",
            Self::NAME
        )))
    }
}

/// Similarities may exceed ±1 by rounding (f32 sums, int8 codes), never by more than this.
const SCORE_SLACK: f32 = 1e-3;

fn damaged<E: SearchIndex>(message: String) -> Error {
    Error::Damaged {
        engine: E::NAME,
        message,
    }
}

/// Checks an engine's answer: every hit an id the index holds, a similarity in [-1, 1] (up to
/// rounding; any number but NaN when scores are not cosines) and above `floor`, best first.
fn check_hits<E: SearchIndex>(index: &E, hits: &[Hit], floor: f32) -> Result<()> {
    let (bound, cosines) = (index.id_bound(), index.scores_are_cosines());
    for h in hits {
        if u64::from(h.id) >= bound {
            return Err(damaged::<E>(format!(
                "it answered row {} but holds ids below {bound}",
                h.id
            )));
        }
        let in_range = if cosines {
            h.score.abs() <= 1.0 + SCORE_SLACK // false for NaN
        } else {
            !h.score.is_nan()
        };
        if !in_range || (floor > -1.0 && h.score <= floor) {
            return Err(damaged::<E>(format!(
                "it answered row {} with similarity {} (expected {}{})",
                h.id,
                h.score,
                if cosines {
                    "a number in [-1, 1]"
                } else {
                    "a number"
                },
                if floor > -1.0 {
                    format!(" above {floor}")
                } else {
                    String::new()
                }
            )));
        }
    }
    if let Some(w) = hits.windows(2).find(|w| Hit::ranking(&w[0], &w[1]).is_gt()) {
        return Err(damaged::<E>(format!(
            "its hits are out of order: row {} ({}) before row {} ({})",
            w[0].id, w[0].score, w[1].id, w[1].score
        )));
    }
    Ok(())
}

/// Checks that a gallery of `rows` rows can be indexed: it must not be empty, and every row
/// needs an id that fits in [`Hit::id`] (`u32`).
///
/// ```
/// assert!(search_core::check_gallery_len(10).is_ok());
/// assert!(search_core::check_gallery_len(0).is_err());
/// ```
pub fn check_gallery_len(rows: usize) -> Result<()> {
    if rows == 0 {
        return Err(Error::InvalidArgument(
            "the gallery is empty: there is nothing to index".into(),
        ));
    }
    if u32::try_from(rows).is_err() {
        return Err(Error::InvalidArgument(format!(
            "{rows} rows exceed the u32 id space"
        )));
    }
    Ok(())
}

/// Checks a `k` argument: it must be at least 1.
pub fn check_k(k: usize) -> Result<()> {
    if k == 0 {
        return Err(Error::InvalidArgument("k must be at least 1".into()));
    }
    Ok(())
}

/// Checks a cosine threshold: it must be a number in [-1, 1].
///
/// ```
/// assert!(search_core::check_tau(0.35).is_ok());
/// assert!(search_core::check_tau(1.5).is_err());
/// assert!(search_core::check_tau(f32::NAN).is_err());
/// ```
pub fn check_tau(tau: f32) -> Result<()> {
    if !(-1.0..=1.0).contains(&tau) {
        return Err(Error::InvalidArgument(format!(
            "cosine threshold must be in [-1, 1], got {tau}"
        )));
    }
    Ok(())
}
