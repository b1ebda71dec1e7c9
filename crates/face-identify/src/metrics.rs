//! Open-set identification error rates, as face recognition is judged (NIST FRVT 1:N, IJB-C).
//!
//! A *mated* probe shows an enrolled person; a *non-mated* probe shows someone who is not
//! enrolled. For a threshold `t`:
//! - **FPIR** (false positive identification rate): the fraction of non-mated probes whose best
//!   candidate scores above `t` (the system names someone who is not there);
//! - **FNIR** (false negative identification rate): the fraction of mated probes whose mate is
//!   not the rank-1 candidate with a score above `t`; TPIR = 1 − FNIR.
//!
//! FNIR is reported at a fixed FPIR: `t` is set on the non-mated probes so that FPIR does not
//! exceed the target (0.01, 0.003 as NIST, 0.001), then FNIR is counted on the mated ones.
//!
//! ```
//! use face_identify::metrics::{fnir, fpir, rank_rate, threshold_for_fpir, Outcome};
//! let mated = |mate, c: &[(u32, f32)]| Outcome { mate: Some(mate), candidates: c.to_vec() };
//! let stranger = |c: &[(u32, f32)]| Outcome { mate: None, candidates: c.to_vec() };
//! let probes = [
//!     mated(1, &[(1, 0.8)]),
//!     mated(2, &[(3, 0.6), (2, 0.5)]),
//!     stranger(&[(1, 0.5)]),
//!     stranger(&[]),
//! ];
//! assert_eq!(rank_rate(&probes, 1), 0.5);
//! assert_eq!(rank_rate(&probes, 2), 1.0);
//! let t = threshold_for_fpir(&probes, 0.5).unwrap(); // one stranger of two may pass
//! assert_eq!(fpir(&probes, t), 0.5);
//! assert_eq!(fnir(&probes, t), 0.5);
//! ```

/// One probe's answer: its true person when enrolled, and the candidates named (person,
/// score), best first.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The person the probe shows, when enrolled (`None`: a non-mated probe).
    pub mate: Option<u32>,
    /// The people named, best first, with their scores.
    pub candidates: Vec<(u32, f32)>,
}

impl Outcome {
    fn top_score(&self) -> f32 {
        self.candidates.first().map_or(f32::NEG_INFINITY, |c| c.1)
    }

    fn rank1_mate_score(&self) -> Option<f32> {
        let (person, score) = *self.candidates.first()?;
        (Some(person) == self.mate).then_some(score)
    }
}

fn mated(outcomes: &[Outcome]) -> impl Iterator<Item = &Outcome> {
    outcomes.iter().filter(|o| o.mate.is_some())
}

fn non_mated(outcomes: &[Outcome]) -> impl Iterator<Item = &Outcome> {
    outcomes.iter().filter(|o| o.mate.is_none())
}

fn fraction(hits: usize, of: usize) -> f64 {
    if of == 0 {
        f64::NAN
    } else {
        hits as f64 / of as f64
    }
}

/// Closed-set rank-`n` identification rate: the fraction of mated probes whose mate is among
/// the first `n` candidates (NaN without mated probes).
pub fn rank_rate(outcomes: &[Outcome], n: usize) -> f64 {
    let total = mated(outcomes).count();
    let found = mated(outcomes)
        .filter(|o| o.candidates.iter().take(n).any(|c| Some(c.0) == o.mate))
        .count();
    fraction(found, total)
}

/// FPIR at threshold `t`: non-mated probes whose best candidate scores above `t`.
pub fn fpir(outcomes: &[Outcome], t: f32) -> f64 {
    let total = non_mated(outcomes).count();
    fraction(
        non_mated(outcomes).filter(|o| o.top_score() > t).count(),
        total,
    )
}

/// FNIR at threshold `t`: mated probes whose mate is not rank 1 with a score above `t`.
pub fn fnir(outcomes: &[Outcome], t: f32) -> f64 {
    let total = mated(outcomes).count();
    let found = mated(outcomes)
        .filter(|o| o.rank1_mate_score().is_some_and(|s| s > t))
        .count();
    fraction(total - found, total)
}

/// The lowest threshold (among the non-mated probes' best scores) at which FPIR is at most
/// `target`; `None` without non-mated probes. With `M` non-mated probes, FPIR can only be set
/// in steps of `1/M`: a target below `1/M` asks that no non-mated probe passes.
pub fn threshold_for_fpir(outcomes: &[Outcome], target: f64) -> Option<f32> {
    let mut tops: Vec<f32> = non_mated(outcomes).map(Outcome::top_score).collect();
    if tops.is_empty() {
        return None;
    }
    tops.sort_by(|a, b| b.total_cmp(a));
    let allowed = (target * tops.len() as f64 + 1e-9).floor() as usize;
    Some(match tops.get(allowed) {
        // Scores above tops[allowed] pass: at most `allowed` probes (ties at it fail).
        Some(&t) => t.max(-1.0),
        None => -1.0,
    })
}

/// One operating point: the threshold set for an FPIR target, and the rates there.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OperatingPoint {
    /// The FPIR asked for.
    pub target_fpir: f64,
    /// The threshold that meets it.
    pub threshold: f32,
    /// FPIR at that threshold (at most the target).
    pub fpir: f64,
    /// FNIR at that threshold.
    pub fnir: f64,
}

/// FNIR at each FPIR target (NaN rates when the probes of one kind are missing).
pub fn operating_points(outcomes: &[Outcome], targets: &[f64]) -> Vec<OperatingPoint> {
    targets
        .iter()
        .filter_map(|&target| {
            let threshold = threshold_for_fpir(outcomes, target)?;
            Some(OperatingPoint {
                target_fpir: target,
                threshold,
                fpir: fpir(outcomes, threshold),
                fnir: fnir(outcomes, threshold),
            })
        })
        .collect()
}

/// One point of a DET curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Det {
    /// The threshold.
    pub threshold: f32,
    /// FPIR there.
    pub fpir: f64,
    /// FNIR there.
    pub fnir: f64,
}

/// The DET curve: (FPIR, FNIR) at every threshold where FPIR changes, highest threshold first.
pub fn det_curve(outcomes: &[Outcome]) -> Vec<Det> {
    let mut tops: Vec<f32> = non_mated(outcomes).map(Outcome::top_score).collect();
    tops.sort_by(|a, b| b.total_cmp(a));
    tops.dedup();
    tops.iter()
        .filter(|t| t.is_finite())
        .map(|&t| Det {
            threshold: t,
            fpir: fpir(outcomes, t),
            fnir: fnir(outcomes, t),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probes() -> Vec<Outcome> {
        let m = |mate, c: &[(u32, f32)]| Outcome {
            mate: Some(mate),
            candidates: c.to_vec(),
        };
        let n = |c: &[(u32, f32)]| Outcome {
            mate: None,
            candidates: c.to_vec(),
        };
        vec![
            m(1, &[(1, 0.8)]),
            m(2, &[(3, 0.6), (2, 0.5)]),
            m(4, &[(4, 0.3)]),
            n(&[(1, 0.5)]),
            n(&[(2, 0.2)]),
            n(&[]),
            n(&[(5, 0.4)]),
        ]
    }

    #[test]
    fn hand_computed_rates() {
        let p = probes();
        assert!((rank_rate(&p, 1) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(rank_rate(&p, 5), 1.0);
        // FPIR 0.25 of 4 strangers: one may pass; their best scores 0.5, 0.4, 0.2, none.
        let t = threshold_for_fpir(&p, 0.25).unwrap();
        assert_eq!(t, 0.4);
        assert_eq!(fpir(&p, t), 0.25);
        // Probe 1 passes (0.8); probe 2's rank 1 is someone else; probe 3 scores 0.3 <= 0.4.
        assert!((fnir(&p, t) - 2.0 / 3.0).abs() < 1e-12);
        let t = threshold_for_fpir(&p, 0.5).unwrap();
        assert_eq!((t, fpir(&p, t)), (0.2, 0.5));
        assert!((fnir(&p, t) - 1.0 / 3.0).abs() < 1e-12);
        // Nobody may pass: the threshold is the best stranger's score.
        assert_eq!(threshold_for_fpir(&p, 0.001), Some(0.5));
        assert_eq!(fpir(&p, 0.5), 0.0);
        // Everyone may pass.
        assert_eq!(threshold_for_fpir(&p, 1.0), Some(-1.0));
    }

    #[test]
    fn det_curve_is_monotone() {
        let p = probes();
        let det = det_curve(&p);
        assert_eq!(det.len(), 3);
        for w in det.windows(2) {
            assert!(w[0].threshold > w[1].threshold);
            assert!(w[0].fpir <= w[1].fpir && w[0].fnir >= w[1].fnir);
        }
        let points = operating_points(&p, &[0.25, 0.5]);
        assert_eq!(points.len(), 2);
        assert!(points.iter().all(|o| o.fpir <= o.target_fpir));
    }
}
