//! The search trait every engine implements, and the hit type it returns.

use std::cmp::Ordering;
use std::path::Path;

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::vectors::VectorView;
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
/// Engines know rows by number only: labels stay with the gallery. Every method checks its
/// inputs (dimension, NaN, zero vectors, k = 0, τ outside [-1, 1]) and returns an [`Error`]
/// rather than panicking.
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
    fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>>;

    /// Every row whose cosine similarity to `query` is greater than `tau`, best first.
    /// Approximate engines may miss some. Fails when `tau` is outside [-1, 1] or NaN.
    fn search_threshold(&self, query: &[f32], tau: f32) -> Result<Vec<Hit>>;

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
