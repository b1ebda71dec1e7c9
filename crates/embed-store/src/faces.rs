//! A seeded synthetic gallery that looks like faces to a search engine: every distractor is
//! another person, embeddings are unit vectors in a shared cone, and there are probes of people
//! who are not enrolled.
//!
//! The model, chosen to match the published statistics of ArcFace-style embeddings (512-d,
//! unit length; genuine pairs mostly at cosine 0.4–0.8, impostor pairs centred near 0.05–0.1
//! with a tail of look-alikes: Deng et al., *ArcFace*, CVPR 2019, fig. 7, and the IJB-C
//! score distributions in NIST FRVT 1:N reports):
//!
//! - a common direction `μ` (all faces share it: the cone) and `K` = 24 attribute directions;
//! - person `p` has an identity vector `z_p`, unit, `attribute_share` of its variance along the
//!   attribute directions (so some people are closer to each other than chance) and the rest
//!   in a direction of its own; a fraction `lookalike_fraction` of people are mixed with an
//!   earlier person (`ρ² ~ U[0.15, 0.45]`): look-alikes;
//! - an image is `normalise(α μ + β z_p + γ e)` with `e` noise of unit expected norm,
//!   `α² = cone`, `β² = 0.8`, and `γ² ~ U[0.25, 0.9]` (a hard probe, `hard_probe_fraction` of
//!   the probes: `γ² ~ U[2, 5]`, a poor photo). Two images of one person then have cosine
//!   `(α² + β²) / √(N_a N_b)` with `N = α² + β² + γ²`: 0.5–0.8; two people about
//!   `(α² + β² z_p·z_q) / √(N_a N_b)`: mean ≈ 0.07, standard deviation ≈ 0.06.
//!
//! Labels: gallery image `i` of person `p` is `p00042_3`; a mated probe `p00042_q`; a
//! non-mated probe (someone never enrolled) `x00007_q`. [`crate::person_of`] gives the person.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use search_core::{Progress, Vectors};

use crate::gallery::Gallery;
use crate::synth::{Dataset, Headline, mix};

/// What to generate. `Default`: 20,000 people × 5 images (100,000 faces), 1,000 mated and
/// 1,000 non-mated probes, 512-d.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FacesSpec {
    /// Enrolled people.
    pub people: usize,
    /// Gallery images of each person.
    pub images_per_person: usize,
    /// Probes of enrolled people (one each, spread over the gallery's people).
    pub mated_probes: usize,
    /// Probes of people who are not enrolled.
    pub non_mated_probes: usize,
    /// Dimension.
    pub dim: usize,
    /// `α²`: the weight of the direction all faces share.
    pub cone: f32,
    /// Fraction of an identity's variance along the shared attribute directions.
    pub attribute_share: f32,
    /// Fraction of people who look like someone else.
    pub lookalike_fraction: f32,
    /// Fraction of probes that are poor photos.
    pub hard_probe_fraction: f32,
    /// Seed of every draw.
    pub seed: u64,
}

impl Default for FacesSpec {
    fn default() -> Self {
        FacesSpec {
            people: 20_000,
            images_per_person: 5,
            mated_probes: 1_000,
            non_mated_probes: 1_000,
            dim: 512,
            cone: 0.1,
            attribute_share: 0.6,
            lookalike_fraction: 0.05,
            hard_probe_fraction: 0.1,
            seed: 42,
        }
    }
}

const ATTRIBUTES: usize = 24;
const IDENTITY_WEIGHT: f32 = 0.8;

/// A generated faces dataset: the gallery, the probes (mated first, then non-mated) and, as
/// the headline, the first mated probe with its person's gallery images as the truth.
pub fn generate_faces(spec: &FacesSpec, progress: &dyn Progress) -> Dataset {
    let people = spec.people.max(1);
    let per = spec.images_per_person.max(1);
    let dim = spec.dim.max(2);
    let mated = spec.mated_probes.min(people);
    progress.set_total((people * per + mated + spec.non_mated_probes) as u64);

    let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(spec.seed, 10, 0));
    let mu = unit(gaussian(&mut rng, dim));
    let attributes: Vec<Vec<f32>> = (0..ATTRIBUTES)
        .map(|_| unit(gaussian(&mut rng, dim)))
        .collect();
    let model = Model {
        spec,
        dim,
        mu,
        attributes,
    };

    // Enrolled people are 0..people; non-mated probes show people people..people+non_mated.
    let gallery_rows: Vec<f32> = (0..people)
        .into_par_iter()
        .flat_map_iter(|p| {
            let z = model.identity(p);
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(spec.seed, 11, p as u64));
            let rows: Vec<f32> = (0..per)
                .flat_map(|_| model.image(&z, false, &mut rng))
                .collect();
            progress.advance(per as u64);
            rows
        })
        .collect();
    let labels = (0..people)
        .flat_map(|p| (1..=per).map(move |i| format!("p{p:05}_{i}")))
        .collect();

    // Mated probes spread over the people: person j * people / mated.
    let mated_people: Vec<usize> = (0..mated).map(|j| j * people / mated.max(1)).collect();
    let probe_people: Vec<(usize, String)> = mated_people
        .iter()
        .map(|&p| (p, format!("p{p:05}_q")))
        .chain((0..spec.non_mated_probes).map(|j| (people + j, format!("x{j:05}_q"))))
        .collect();
    let probe_rows: Vec<f32> = probe_people
        .par_iter()
        .enumerate()
        .flat_map_iter(|(j, (p, _))| {
            let z = model.identity(*p);
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(spec.seed, 12, j as u64));
            let hard = rng.random_range(0.0f32..1.0) < spec.hard_probe_fraction;
            progress.advance(1);
            model.image(&z, hard, &mut rng)
        })
        .collect();

    let gallery = Gallery::new(Vectors::new(dim, gallery_rows).expect("whole rows"), labels)
        .expect("one label per row");
    let queries = Gallery::new(
        Vectors::new(dim, probe_rows).expect("whole rows"),
        probe_people.into_iter().map(|(_, l)| l).collect(),
    )
    .expect("one label per probe");
    let first = mated_people.first().copied().unwrap_or(0);
    let headline = Headline {
        label: format!("p{first:05}_q"),
        vector: if mated > 0 {
            queries.vectors().row(0).to_vec()
        } else {
            gallery.vectors().row(0).to_vec()
        },
        truth: (1..=per).map(|i| format!("p{first:05}_{i}")).collect(),
    };
    Dataset {
        gallery,
        queries,
        headline,
    }
}

struct Model<'a> {
    spec: &'a FacesSpec,
    dim: usize,
    mu: Vec<f32>,
    attributes: Vec<Vec<f32>>,
}

impl Model<'_> {
    /// Person `p`'s identity vector, before any look-alike mixing.
    fn own_identity(&self, p: usize) -> Vec<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(self.spec.seed, 13, p as u64));
        let share = self.spec.attribute_share.clamp(0.0, 1.0);
        let w = unit(gaussian(&mut rng, ATTRIBUTES));
        let own = unit(gaussian(&mut rng, self.dim));
        let mut z: Vec<f32> = own.iter().map(|x| x * (1.0 - share).sqrt()).collect();
        for (a, wa) in self.attributes.iter().zip(&w) {
            for (zi, ai) in z.iter_mut().zip(a) {
                *zi += share.sqrt() * wa * ai;
            }
        }
        unit(z)
    }

    /// Person `p`'s identity vector: a look-alike of an earlier person for some.
    fn identity(&self, p: usize) -> Vec<f32> {
        let z = self.own_identity(p);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(self.spec.seed, 14, p as u64));
        if p == 0 || rng.random_range(0.0f32..1.0) >= self.spec.lookalike_fraction {
            return z;
        }
        let twin = self.own_identity(rng.random_range(0..p.min(self.spec.people)));
        let rho2: f32 = rng.random_range(0.15..0.45);
        unit(
            z.iter()
                .zip(&twin)
                .map(|(a, b)| (1.0 - rho2).sqrt() * a + rho2.sqrt() * b)
                .collect(),
        )
    }

    /// One image of identity `z`.
    fn image(&self, z: &[f32], hard: bool, rng: &mut Xoshiro256PlusPlus) -> Vec<f32> {
        let gamma2: f32 = if hard {
            rng.random_range(2.0..5.0)
        } else {
            rng.random_range(0.25..0.9)
        };
        let (alpha, beta, gamma) = (
            self.spec.cone.max(0.0).sqrt(),
            IDENTITY_WEIGHT.sqrt(),
            gamma2.sqrt(),
        );
        let noise = gaussian(rng, self.dim);
        let scale = gamma / (self.dim as f32).sqrt();
        unit(
            (0..self.dim)
                .map(|i| alpha * self.mu[i] + beta * z[i] + scale * noise[i])
                .collect(),
        )
    }
}

fn gaussian(rng: &mut Xoshiro256PlusPlus, n: usize) -> Vec<f32> {
    (0..n).map(|_| StandardNormal.sample(rng)).collect()
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn quantile(v: &mut [f32], q: f64) -> f32 {
        v.sort_by(|a, b| a.total_cmp(b));
        v[((v.len() - 1) as f64 * q).round() as usize]
    }

    /// The statistics the model promises, measured: genuine and impostor cosine quantiles,
    /// labels, probe counts, determinism.
    #[test]
    fn scores_look_like_arcface() {
        let spec = FacesSpec {
            people: 400,
            images_per_person: 4,
            mated_probes: 100,
            non_mated_probes: 100,
            ..FacesSpec::default()
        };
        let d = generate_faces(&spec, &());
        let g = &d.gallery;
        assert_eq!(g.len(), 1600);
        assert_eq!(d.queries.len(), 200);
        assert_eq!(g.label(5), "p00001_2");
        assert_eq!(d.queries.label(0), "p00000_q");
        assert_eq!(d.queries.label(100), "x00000_q");
        assert_eq!(
            d.headline.truth,
            ["p00000_1", "p00000_2", "p00000_3", "p00000_4"]
        );
        for row in g.vectors().view().rows() {
            assert!((cos(row, row) - 1.0).abs() < 1e-4, "unit vectors");
        }
        let row = |i: usize| g.vectors().row(i);
        let mut genuine: Vec<f32> = (0..400)
            .flat_map(|p| [(4 * p, 4 * p + 1), (4 * p + 2, 4 * p + 3)])
            .map(|(a, b)| cos(row(a), row(b)))
            .collect();
        let mut impostor: Vec<f32> = (0..1599)
            .flat_map(|i| [(i, (i * 7 + 13) % 1600)])
            .filter(|(a, b)| a / 4 != b / 4)
            .map(|(a, b)| cos(row(a), row(b)))
            .collect();
        let (g05, g50, g95) = (
            quantile(&mut genuine, 0.05),
            quantile(&mut genuine, 0.5),
            quantile(&mut genuine, 0.95),
        );
        eprintln!("genuine q05 {g05:.3} q50 {g50:.3} q95 {g95:.3}");
        assert!(
            g05 > 0.4 && g95 < 0.85 && (0.5..0.75).contains(&g50),
            "genuine {g05} {g50} {g95}"
        );
        let (i50, i99) = (quantile(&mut impostor, 0.5), quantile(&mut impostor, 0.99));
        eprintln!("impostor q50 {i50:.3} q99 {i99:.3}");
        assert!((0.03..0.12).contains(&i50), "impostor median {i50}");
        assert!(
            (0.15..0.45).contains(&i99),
            "impostor 99th percentile {i99}"
        );
        // Hard probes exist: some mated probes score low against their own person.
        let lows = (0..100)
            .filter(|&j| {
                let p = j * 400 / 100;
                cos(d.queries.vectors().row(j), row(4 * p)) < 0.4
            })
            .count();
        eprintln!("{lows} of 100 mated probes below 0.4");
        assert!((2..30).contains(&lows), "{lows} hard probes of 100");
        assert_eq!(generate_faces(&spec, &()), d, "seeded");
    }
}
