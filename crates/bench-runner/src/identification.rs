//! Identification error rates of one engine on a workload whose probes are people: closed-set
//! rank-1 / rank-5, open-set FNIR at fixed FPIR, the DET curve, and the latency of probes of
//! people who are not enrolled. Through `face_identify`, the same code path for every engine.

use std::time::Instant;

use face_identify::metrics::{self, Outcome};
use face_identify::{Aggregation, Identities, Watchlist, identify_top, search_within};
use search_core::{Engine, Error, Result, SearchIndex};
use search_linear::LinearIndex;
use serde::{Deserialize, Serialize};

use crate::run::median_seconds;
use crate::workload::Workload;

/// What to measure: who the gallery's rows and the probes are.
#[derive(Clone, Debug)]
pub struct IdentificationSpec {
    /// Each gallery row's person.
    pub identities: Identities,
    /// Each probe's person in the gallery, or `None` for a probe of someone not enrolled.
    pub mates: Vec<Option<u32>>,
    /// Candidates asked for per probe (rank-n rates are counted up to it).
    pub candidates: usize,
    /// The FPIRs FNIR is reported at.
    pub fpir_targets: Vec<f64>,
    /// Knob values at which to measure again (the sweep's), after the engine's default.
    pub knob_values: Vec<usize>,
    /// A watchlist (every tenth person) to measure restricted search on: recall@k of
    /// [`search_within`] against exact search over the listed rows, for the first
    /// [`WATCHLIST_PROBES`] probes.
    pub watchlist: Option<Watchlist>,
}

/// Probes a watchlist search is measured with.
pub const WATCHLIST_PROBES: usize = 200;

impl IdentificationSpec {
    /// Identities from the gallery's labels and each probe's person from its label (both by
    /// `embed_store::person_of`); a probe whose person is not in the gallery is non-mated.
    /// FNIR at FPIR 0.01, 0.003 (NIST FRVT's operating point) and 0.001; five candidates.
    pub fn from_labels(workload: &Workload) -> Self {
        let identities = Identities::from_labels(workload.gallery.labels());
        let mates = workload
            .queries
            .labels()
            .iter()
            .map(|l| identities.find(embed_store::person_of(l)))
            .collect();
        let tenth: Vec<String> = (0..identities.persons() as u32)
            .step_by(10)
            .map(|p| identities.name(p).to_owned())
            .collect();
        let watchlist = identities.watchlist(&tenth).ok();
        IdentificationSpec {
            identities,
            mates,
            candidates: 5,
            fpir_targets: vec![0.01, 0.003, 0.001],
            knob_values: Vec::new(),
            watchlist,
        }
    }
}

/// Identification figures of one engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdentificationReport {
    /// Probes of enrolled people.
    pub mated: usize,
    /// Probes of people not enrolled.
    pub non_mated: usize,
    /// At the engine's own knob setting.
    pub at_default: IdentificationPoint,
    /// At each knob value of the sweep (empty without one).
    pub sweep: Vec<IdentificationPoint>,
}

/// Identification figures at one knob setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdentificationPoint {
    /// The knob, e.g. `"ef=100"` (`None` for an exact engine).
    pub knob: Option<String>,
    /// Fraction of mated probes whose person is the first candidate.
    pub rank1: f64,
    /// Fraction of mated probes whose person is among the first five candidates.
    pub rank5: f64,
    /// FNIR at each FPIR target, with the threshold set on the non-mated probes.
    pub operating_points: Vec<OperatingPoint>,
    /// FPIR and FNIR at the notebook's threshold τ.
    pub at_tau: OperatingPoint,
    /// The DET curve: `[fpir, fnir]` at each threshold where FPIR changes.
    pub det: Vec<[f64; 2]>,
    /// Recall@k of a search restricted to a watchlist of every tenth person, against exact
    /// search over the listed rows (`None` without a watchlist).
    #[serde(default)]
    pub watchlist_recall_at_k: Option<f64>,
    /// Median seconds of a threshold search (τ) for a mated probe.
    pub mated_threshold_median_s: f64,
    /// Median seconds of a threshold search (τ) for a non-mated probe: nothing is above τ,
    /// the worst case of a graph, which must rule everything out.
    pub non_mated_threshold_median_s: f64,
}

/// FNIR at one FPIR.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    /// The FPIR asked for (at τ: the FPIR measured).
    pub target_fpir: f64,
    /// The threshold.
    pub threshold: f32,
    /// FPIR at the threshold.
    pub fpir: f64,
    /// FNIR at the threshold.
    pub fnir: f64,
}

impl From<metrics::OperatingPoint> for OperatingPoint {
    fn from(p: metrics::OperatingPoint) -> Self {
        OperatingPoint {
            target_fpir: p.target_fpir,
            threshold: p.threshold,
            fpir: p.fpir,
            fnir: p.fnir,
        }
    }
}

/// Measures `index` on `workload`'s probes: at its current knob, then at each of
/// `spec.knob_values`, and sets the knob back.
pub fn identification(
    index: &mut dyn Engine,
    workload: &Workload,
    spec: &IdentificationSpec,
) -> Result<IdentificationReport> {
    if spec.mates.len() != workload.queries.len() {
        return Err(Error::InvalidArgument(format!(
            "{} probe identities for {} probes",
            spec.mates.len(),
            workload.queries.len()
        )));
    }
    spec.identities.check(index.len())?;
    // Exact answers within the watchlist, once: the linear engine's search_within is exact.
    let within = match &spec.watchlist {
        Some(list) => {
            let exact =
                LinearIndex::build(workload.gallery.vectors().view(), &Default::default(), &())?;
            let answers = workload
                .queries
                .vectors()
                .view()
                .rows()
                .take(WATCHLIST_PROBES)
                .map(|q| search_within(&exact, list, q, workload.k))
                .collect::<Result<Vec<_>>>()?;
            Some((list, answers))
        }
        None => None,
    };
    let within = within.as_ref().map(|(l, a)| (*l, a.as_slice()));
    let at_default = point(index, workload, spec, within)?;
    let mut sweep = Vec::new();
    if let Some(knob) = index.knob() {
        for &value in &spec.knob_values {
            index.set_knob(value)?;
            sweep.push(point(index, workload, spec, within)?);
        }
        index.set_knob(knob.value)?;
    }
    let mated = spec.mates.iter().filter(|m| m.is_some()).count();
    Ok(IdentificationReport {
        mated,
        non_mated: spec.mates.len() - mated,
        at_default,
        sweep,
    })
}

fn point(
    index: &dyn Engine,
    workload: &Workload,
    spec: &IdentificationSpec,
    within: Option<(&Watchlist, &[Vec<search_core::Hit>])>,
) -> Result<IdentificationPoint> {
    let watchlist_recall_at_k = match within {
        Some((list, exact)) => {
            let (mut found, mut wanted) = (0usize, 0usize);
            for (q, want) in workload.queries.vectors().view().rows().zip(exact) {
                let got = search_within(index, list, q, workload.k)?;
                found += want
                    .iter()
                    .filter(|w| got.iter().any(|g| g.id == w.id))
                    .count();
                wanted += want.len();
            }
            Some(if wanted == 0 {
                1.0
            } else {
                found as f64 / wanted as f64
            })
        }
        None => None,
    };
    let mut outcomes = Vec::with_capacity(spec.mates.len());
    let (mut mated_times, mut non_mated_times) = (Vec::new(), Vec::new());
    for (q, &mate) in workload.queries.vectors().view().rows().zip(&spec.mates) {
        let top = identify_top(
            index,
            &spec.identities,
            q,
            spec.candidates,
            Aggregation::Max,
        )?;
        outcomes.push(Outcome {
            mate,
            candidates: top.iter().map(|c| (c.person, c.score)).collect(),
        });
        let start = Instant::now();
        index.search_threshold(q, workload.tau)?;
        let took = start.elapsed();
        if mate.is_some() {
            mated_times.push(took);
        } else {
            non_mated_times.push(took);
        }
    }
    Ok(IdentificationPoint {
        knob: index.knob().map(|k| format!("{}={}", k.name, k.value)),
        rank1: metrics::rank_rate(&outcomes, 1),
        rank5: metrics::rank_rate(&outcomes, 5),
        operating_points: metrics::operating_points(&outcomes, &spec.fpir_targets)
            .into_iter()
            .map(Into::into)
            .collect(),
        at_tau: OperatingPoint {
            target_fpir: metrics::fpir(&outcomes, workload.tau),
            threshold: workload.tau,
            fpir: metrics::fpir(&outcomes, workload.tau),
            fnir: metrics::fnir(&outcomes, workload.tau),
        },
        det: metrics::det_curve(&outcomes)
            .into_iter()
            .map(|d| [d.fpir, d.fnir])
            .collect(),
        watchlist_recall_at_k,
        mated_threshold_median_s: median_seconds(&mut mated_times).unwrap_or(f64::NAN),
        non_mated_threshold_median_s: median_seconds(&mut non_mated_times).unwrap_or(f64::NAN),
    })
}
