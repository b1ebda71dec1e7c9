//! What every engine is measured on: gallery, queries, and the exact answers.

use embed_store::Gallery;
use embed_store::synth::{Dataset, Headline};
use rayon::prelude::*;
use search_core::{Hit, Result, SearchIndex};
use search_linear::LinearIndex;

/// A gallery with its queries and the exact answers every engine is scored against.
pub struct Workload {
    /// The searched gallery.
    pub gallery: Gallery,
    /// Held-out queries (not in the gallery), for recall.
    pub queries: Gallery,
    /// The notebook's single query, with the labels it should find.
    pub headline: Headline,
    /// Neighbours asked for (the notebook's k = 4).
    pub k: usize,
    /// Cosine threshold of threshold search (the notebook's 0.35).
    pub tau: f32,
    /// Identifies the gallery in cache keys: the same key must mean the same vectors.
    pub key: String,
    /// Exact top-k rows for each query.
    pub exact_top_k: Vec<Vec<u32>>,
    /// Exact rows above `tau` for each query.
    pub exact_threshold: Vec<Vec<u32>>,
}

impl Workload {
    /// Builds a workload from a generated dataset; `key` must change whenever the data does.
    pub fn from_dataset(data: Dataset, key: impl Into<String>, k: usize, tau: f32) -> Result<Self> {
        Self::new(data.gallery, data.queries, data.headline, key, k, tau)
    }

    /// Builds a workload and computes the exact answers with the linear engine.
    pub fn new(
        gallery: Gallery,
        queries: Gallery,
        headline: Headline,
        key: impl Into<String>,
        k: usize,
        tau: f32,
    ) -> Result<Self> {
        search_core::check_k(k)?;
        search_core::check_tau(tau)?;
        let exact = LinearIndex::build(gallery.vectors().view(), &Default::default(), &())?;
        let ids = |hits: Vec<Hit>| hits.into_iter().map(|h| h.id).collect::<Vec<_>>();
        let rows: Vec<&[f32]> = queries.vectors().view().rows().collect();
        let exact_top_k = rows
            .par_iter()
            .map(|q| exact.search(q, k).map(ids))
            .collect::<Result<Vec<_>>>()?;
        let exact_threshold = rows
            .par_iter()
            .map(|q| exact.search_threshold(q, tau).map(ids))
            .collect::<Result<Vec<_>>>()?;
        Ok(Workload {
            gallery,
            queries,
            headline,
            k,
            tau,
            key: key.into(),
            exact_top_k,
            exact_threshold,
        })
    }

    /// Labels of the rows in `hits`.
    pub fn labels_of(&self, hits: &[Hit]) -> Vec<String> {
        hits.iter()
            .map(|h| self.gallery.label(h.id as usize).to_owned())
            .collect()
    }
}
