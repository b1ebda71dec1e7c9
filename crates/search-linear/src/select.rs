//! Bounded top-k selection: a buffer of at most `max(2k, k + 8)` hits, cut back to the best `k` (by
//! [`Hit::ranking`]) with a linear-time partial selection whenever it fills. No full sort until
//! the end, and the cut-off (`floor`) only ever rises.

use search_core::Hit;

/// The best `k` hits pushed so far (plus up to `k` more awaiting the next cut).
#[derive(Clone, Debug)]
pub(crate) struct TopK {
    k: usize,
    cap: usize,
    buf: Vec<Hit>,
    floor: f32,
}

impl TopK {
    /// An empty selection of the best `k` (`k >= 1`).
    pub(crate) fn new(k: usize) -> TopK {
        let cap = k.saturating_mul(2).max(k + 8);
        TopK {
            k,
            cap,
            buf: Vec::new(),
            floor: f32::NEG_INFINITY,
        }
    }

    /// A score that every hit of the final top-k reaches: the k-th best score after the last
    /// cut, or −∞ before the first. A hit scoring below it can be dropped unseen.
    #[inline]
    pub(crate) fn floor(&self) -> f32 {
        self.floor
    }

    /// Offers a hit; it is kept when it scores at least [`TopK::floor`] (NaN never is).
    #[inline]
    pub(crate) fn push(&mut self, hit: Hit) {
        if hit.score >= self.floor {
            self.buf.push(hit);
            if self.buf.len() >= self.cap {
                self.cut();
            }
        }
    }

    fn cut(&mut self) {
        if self.buf.len() > self.k {
            self.buf.select_nth_unstable_by(self.k - 1, Hit::ranking);
            self.buf.truncate(self.k);
            self.floor = self.buf[self.k - 1].score;
        }
    }

    /// Merges another selection of the same `k` into this one.
    pub(crate) fn merge(mut self, other: TopK) -> TopK {
        let (mut big, small) = if self.buf.len() >= other.buf.len() {
            (std::mem::take(&mut self.buf), other.buf)
        } else {
            (other.buf, std::mem::take(&mut self.buf))
        };
        big.extend(small);
        let mut t = TopK {
            floor: self.floor.max(other.floor),
            buf: big,
            ..self
        };
        t.cut();
        t
    }

    /// The best `k` hits in ranking order.
    pub(crate) fn into_sorted(mut self) -> Vec<Hit> {
        self.cut();
        self.buf.sort_unstable_by(Hit::ranking);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn equals_sort_and_truncate(scores in proptest::collection::vec(0u8..20, 0..500), k in 1usize..40, split in 0usize..500) {
            let hits: Vec<Hit> = scores.iter().enumerate().map(|(i, &s)| Hit { id: i as u32, score: f32::from(s) / 19.0 }).collect();
            let mut want = hits.clone();
            want.sort_by(Hit::ranking);
            want.truncate(k);
            let split = split.min(hits.len());
            let (mut a, mut b) = (TopK::new(k), TopK::new(k));
            hits[..split].iter().for_each(|&h| a.push(h));
            hits[split..].iter().for_each(|&h| b.push(h));
            prop_assert_eq!(a.merge(b).into_sorted(), want);
        }
    }
}
