//! A seeded synthetic face dataset shaped like the notebook's: a few identities with several
//! images each, buried among N(0,1) random distractors, plus held-out queries.
//!
//! Each person has a centre `c ~ N(0, I)`; each image is `c + σ·e` with `e ~ N(0, I)` and
//! `σ² ~ U[0.45, 0.95]`, so two images of one person have cosine `1/√((1+σa²)(1+σb²))`, between
//! about 0.5 and 0.7 as real ArcFace embeddings do, while different people (and distractors) are
//! near-orthogonal. Generation runs in parallel in fixed-size chunks, each with its own
//! seeded RNG, so the same [`SynthSpec`] gives the same bytes on any number of threads.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use crate::gallery::Gallery;
use search_core::Progress;
use search_core::Vectors;

/// What to generate. `Default` is the notebook-scale set: 200 people × 5 images among
/// 100,000 distractors, 512-d.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SynthSpec {
    /// Number of people.
    pub identities: usize,
    /// Images of each person kept in the gallery (person 0 loses one to the headline query).
    pub images_per_identity: usize,
    /// Number of N(0,1) distractor vectors, labelled `random_{i}`.
    pub distractors: usize,
    /// Dimension of every vector.
    pub dim: usize,
    /// Seed of every random draw.
    pub seed: u64,
}

impl Default for SynthSpec {
    fn default() -> Self {
        SynthSpec {
            identities: 200,
            images_per_identity: 5,
            distractors: 100_000,
            dim: 512,
            seed: 42,
        }
    }
}

/// The notebook's single query: image 1 of person 0, taken out of the gallery.
#[derive(Clone, Debug, PartialEq)]
pub struct Headline {
    /// Its label, e.g. `id000_1`.
    pub label: String,
    /// Its vector.
    pub vector: Vec<f32>,
    /// Labels of the same person's images that stayed in the gallery: the right answer.
    pub truth: Vec<String>,
}

/// A generated dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The gallery: identity images first, then distractors.
    pub gallery: Gallery,
    /// One extra, held-out image per person (not in the gallery), labelled `id042_q`.
    pub queries: Gallery,
    /// The notebook's headline query.
    pub headline: Headline,
}

const CHUNK_ROWS: usize = 1024;

/// Generates the dataset described by `spec`, reporting progress in rows.
///
/// Needs `identities ≥ 1`, `images_per_identity ≥ 2` (the headline query leaves at least one
/// image behind) and `dim ≥ 1`; smaller values are raised to those minimums.
pub fn generate(spec: &SynthSpec, progress: &dyn Progress) -> Dataset {
    let identities = spec.identities.max(1);
    let per = spec.images_per_identity.max(2);
    let dim = spec.dim.max(1);
    let width = (identities - 1).to_string().len().max(3);
    let id_label = |p: usize, image: &str| format!("id{p:0width$}_{image}");
    progress.set_total((identities * (per + 1) + spec.distractors) as u64);

    // Identities: one RNG per person, so each person is the same whatever the thread count.
    let people: Vec<(Vec<f32>, Vec<f32>)> = (0..identities)
        .into_par_iter()
        .map(|p| {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(spec.seed, 1, p as u64));
            let centre: Vec<f32> = (0..dim).map(|_| StandardNormal.sample(&mut rng)).collect();
            let mut images = Vec::with_capacity((per + 1) * dim);
            for _ in 0..=per {
                let sigma = rng.random_range(0.45f32..0.95).sqrt();
                images.extend(centre.iter().map(|&c| {
                    let e: f32 = StandardNormal.sample(&mut rng);
                    c + sigma * e
                }));
            }
            progress.advance((per + 1) as u64);
            let query = images.split_off(per * dim);
            (images, query)
        })
        .collect();

    let distractor_rows: Vec<f32> = (0..spec.distractors.div_ceil(CHUNK_ROWS))
        .into_par_iter()
        .flat_map_iter(|chunk| {
            let rows = CHUNK_ROWS.min(spec.distractors - chunk * CHUNK_ROWS);
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(spec.seed, 2, chunk as u64));
            let v: Vec<f32> = (0..rows * dim)
                .map(|_| StandardNormal.sample(&mut rng))
                .collect();
            progress.advance(rows as u64);
            v
        })
        .collect();

    let mut data = Vec::with_capacity((identities * per - 1 + spec.distractors) * dim);
    let mut labels = Vec::with_capacity(identities * per - 1 + spec.distractors);
    let mut query_data = Vec::with_capacity(identities * dim);
    let mut query_labels = Vec::with_capacity(identities);
    let mut headline = None;
    for (p, (images, query)) in people.into_iter().enumerate() {
        for (j, image) in images.chunks_exact(dim).enumerate() {
            if p == 0 && j == 0 {
                headline = Some(image.to_vec());
                continue;
            }
            data.extend_from_slice(image);
            labels.push(id_label(p, &(j + 1).to_string()));
        }
        query_data.extend(query);
        query_labels.push(id_label(p, "q"));
    }
    data.extend(distractor_rows);
    labels.extend((0..spec.distractors).map(|i| format!("random_{i}")));

    let headline = Headline {
        label: id_label(0, "1"),
        vector: headline.expect("identities >= 1"),
        truth: (2..=per).map(|j| id_label(0, &j.to_string())).collect(),
    };
    let gallery = Gallery::new(Vectors::new(dim, data).expect("whole rows"), labels)
        .expect("one label per row");
    let queries = Gallery::new(
        Vectors::new(dim, query_data).expect("whole rows"),
        query_labels,
    )
    .expect("one label per query");
    Dataset {
        gallery,
        queries,
        headline,
    }
}

/// Derives an independent seed for stream `(kind, index)` from the user's seed (SplitMix64).
pub(crate) fn mix(seed: u64, kind: u64, index: u64) -> u64 {
    let mut z =
        seed ^ kind.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f64 {
        let d: f64 = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum();
        let na: f64 = a.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
        d / (na * nb)
    }

    #[test]
    fn same_person_is_similar_and_others_are_not() {
        let spec = SynthSpec {
            identities: 20,
            images_per_identity: 5,
            distractors: 300,
            dim: 512,
            seed: 1,
        };
        let d = generate(&spec, &());
        let g = &d.gallery;
        assert_eq!(g.len(), 20 * 5 - 1 + 300);
        assert_eq!(g.label(0), "id000_2");
        assert_eq!(g.label(g.len() - 1), "random_299");
        assert_eq!(
            d.headline.truth,
            ["id000_2", "id000_3", "id000_4", "id000_5"]
        );
        for t in 0..4 {
            let c = cos(&d.headline.vector, g.vectors().row(t));
            assert!((0.45..0.75).contains(&c), "same person cosine {c}");
        }
        // Person 1's images are rows 4..9; person 2's 9..14.
        let cross = cos(g.vectors().row(4), g.vectors().row(9));
        assert!(cross.abs() < 0.2, "different people cosine {cross}");
        let distractor = cos(g.vectors().row(4), g.vectors().row(150));
        assert!(distractor.abs() < 0.2, "distractor cosine {distractor}");
        let q = cos(d.queries.vectors().row(1), g.vectors().row(4));
        assert!((0.45..0.75).contains(&q), "held-out query cosine {q}");
    }

    #[test]
    fn seeded_and_independent_of_thread_count() {
        let spec = SynthSpec {
            identities: 5,
            images_per_identity: 3,
            distractors: 3000,
            dim: 8,
            seed: 9,
        };
        let a = generate(&spec, &());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let b = pool.install(|| generate(&spec, &()));
        assert_eq!(a, b);
        let c = generate(&SynthSpec { seed: 10, ..spec }, &());
        assert_ne!(a.gallery, c.gallery);
    }
}
