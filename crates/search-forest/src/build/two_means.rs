//! Two-means on the rows' int8 codes: the sampled iterations (Annoy's `two_means`) and the
//! plane between the two centroids (`create_split`), with the exact integer [`Centroid`]. It
//! does not know trees or nodes: it leaves one plane in the builder and returns its offset.

use rand::RngExt;
use search_kernels::Aligned;
use search_kernels::planes::{AddFn, Kernels};

use super::{SAMPLES_PER_ITEM, TreeBuilder};
use crate::codes::{RowCodes, sum_code_max};
use crate::layout::Metric;

impl TreeBuilder<'_> {
    /// Two-means samples for a node of `count` items: the configured number, but at most
    /// [`SAMPLES_PER_ITEM`]` × count` (deep nodes converge with fewer).
    fn samples(&self, count: usize) -> usize {
        self.iterations.min(SAMPLES_PER_ITEM.saturating_mul(count))
    }

    /// Annoy's `two_means` + `create_split`, computed on the rows' codes: leaves the plane
    /// between the two centroids in `self.plane` (its unit normal, coded) and returns its
    /// offset (0 for angular).
    pub(super) fn two_means_plane(&mut self, idx: &[u32]) -> f32 {
        let Kernels { dot2, add, .. } = self.kernels;
        let cosine = self.layout.metric == Metric::Angular;
        let count = idx.len();
        let i = self.rng.random_range(0..count);
        let mut j = self.rng.random_range(0..count - 1);
        j += (j >= i) as usize;
        let [p_sum, q_sum] = std::mem::take(&mut self.sums);
        let mut p = Centroid::new(p_sum, self.data, idx[i]);
        let mut q = Centroid::new(q_sum, self.data, idx[j]);
        let samples = self.samples(count);
        // Draw the samples AHEAD iterations early and prefetch their rows (random rows of a
        // node are scattered in memory). Same draws, same order.
        const AHEAD: usize = 4;
        let mut ring = [0u32; AHEAD];
        for (s, slot) in ring.iter_mut().enumerate().take(samples) {
            *slot = idx[self.rng.random_range(0..count)];
            if s > 0 {
                self.data.prefetch(*slot);
            }
        }
        for s in 0..samples {
            let x = ring[s % AHEAD];
            if s + AHEAD < samples {
                let next = idx[self.rng.random_range(0..count)];
                ring[s % AHEAD] = next;
                self.data.prefetch(next);
            }
            let (codes, scale) = (self.data.row(x), self.data.scale(x));
            let (px, qx) = dot2(&p.sum, &q.sum, codes);
            // Annoy's distances, weighted by the centroids' counts.
            let (di, dj) = if cosine {
                (
                    p.count * p.cosine_distance(px, scale),
                    q.count * q.cosine_distance(qx, scale),
                )
            } else {
                (
                    p.count * p.squared_distance(px, scale),
                    q.count * q.squared_distance(qx, scale),
                )
            };
            if di < dj {
                p.add(add, self.data, x, px);
            } else if dj < di {
                q.add(add, self.data, x, qx);
            }
        }
        // The unit normal of the plane between the means, and for euclidean the plane's
        // offset (through the midpoint of the means).
        let (up, uq) = (p.unit(), q.unit());
        let dim = self.layout.dim;
        self.normal.clear();
        self.normal.extend(
            p.sum[..dim]
                .iter()
                .zip(&q.sum[..dim])
                .map(|(&a, &b)| (up * f64::from(a) - uq * f64::from(b)) as f32),
        );
        search_kernels::normalise(&mut self.normal);
        let offset = if cosine {
            0.0
        } else {
            -self
                .normal
                .iter()
                .zip(p.sum.iter().zip(&q.sum))
                .map(|(&n, (&a, &b))| f64::from(n) * (up * f64::from(a) + uq * f64::from(b)) / 2.0)
                .sum::<f64>() as f32
        };
        self.plane.encode(&self.normal);
        self.sums = [p.sum, q.sum];
        offset
    }
}
/// A two-means centroid: the mean of the unit rows assigned to it, kept as the sum of their
/// codes (`i16`, halved whenever it could outgrow [`sum_code_max`]) so that each step is an
/// exact integer dot product and an integer add. With each row `x ≈ s · c`, the mean is
/// `Σ x / count ≈ (Σ s / count) · (Σ c / count)`: rows' scales differ by a few percent, which
/// weights the rows of a centroid unevenly by as much, and no more.
struct Centroid {
    /// `Σ c / 2^shift`.
    sum: Aligned<i16>,
    /// `‖sum‖²`.
    sq: f64,
    /// `1 / ‖sum‖` (0 for a zero sum).
    inv_norm: f64,
    /// At least the largest `|sumᵢ|`; `sum` is halved when the next row could take an entry
    /// over `limit` (the [`sum_code_max`], which keeps the dot products exact).
    bound: i32,
    limit: i32,
    /// Rows in the mean (Annoy's `ic`, `jc`).
    count: f32,
    /// `Σ s` over the rows in the mean.
    weight: f64,
    /// Times `sum` was halved.
    shift: u32,
}

impl Centroid {
    /// The centroid of row `i` alone, its sum kept in `sum` (whatever it held).
    fn new(mut sum: Aligned<i16>, data: &RowCodes, i: u32) -> Centroid {
        for (s, &c) in sum.iter_mut().zip(data.row(i)) {
            *s = i16::from(c);
        }
        // The row's `‖codes‖²` is kept with its codes, and no code exceeds 127.
        let mut c = Centroid {
            sum,
            sq: data.square(i) as f64,
            inv_norm: 0.0,
            bound: 127,
            limit: i32::from(sum_code_max(data.stride)),
            count: 1.0,
            weight: f64::from(data.scale(i)),
            shift: 0,
        };
        c.set_inv_norm();
        c.make_room();
        c
    }

    /// Recomputes `sq` and `bound` from `sum`.
    fn measure(&mut self) {
        let (mut sq, mut top) = (0i64, 0i32);
        for &v in &self.sum {
            sq += i64::from(v) * i64::from(v);
            top = top.max(i32::from(v).abs());
        }
        (self.sq, self.bound) = (sq as f64, top);
        self.set_inv_norm();
    }

    fn set_inv_norm(&mut self) {
        self.inv_norm = if self.sq > 0.0 {
            1.0 / self.sq.sqrt()
        } else {
            0.0
        };
    }

    /// `mean = unit · sum`.
    fn unit(&self) -> f64 {
        let count = f64::from(self.count);
        self.weight * f64::from(1u32 << self.shift) / (count * count)
    }

    /// Annoy's angular distance `2 − 2 cos` to the row `x = scale · codes` (a unit row, so
    /// `‖codes‖ ≈ 1 / scale`), given `dot = sum · codes`.
    fn cosine_distance(&self, dot: i32, scale: f32) -> f32 {
        (2.0 - 2.0 * f64::from(dot) * f64::from(scale) * self.inv_norm) as f32
    }

    /// `‖mean − x‖²` to the unit row `x = scale · codes`, given `dot = sum · codes`.
    fn squared_distance(&self, dot: i32, scale: f32) -> f32 {
        let u = self.unit();
        (u * u * self.sq - 2.0 * u * f64::from(scale) * f64::from(dot) + 1.0) as f32
    }

    /// Adds row `x` of `data` to the mean, given `dot = sum · codes`.
    fn add(&mut self, add: AddFn, data: &RowCodes, x: u32, dot: i32) {
        let (codes, scale) = (data.row(x), data.scale(x));
        self.count += 1.0;
        self.weight += f64::from(scale);
        if self.bound + (127 >> self.shift) > self.limit {
            // `bound` grows by the largest code at each row: find the true largest entry
            // before halving the sum (rows much alike, e.g. duplicates, make it large).
            self.measure();
            self.make_room();
        }
        if self.shift == 0 {
            add(&mut self.sum, codes);
            // ‖sum + c‖² = ‖sum‖² + 2 sum · c + ‖c‖², exactly.
            self.sq += 2.0 * f64::from(dot) + data.square(x) as f64;
            self.set_inv_norm();
            self.bound += 127;
        } else {
            let m = 1i16 << self.shift;
            for (v, &c) in self.sum.iter_mut().zip(codes) {
                *v += i16::from(c) / m;
            }
            self.measure();
        }
    }

    /// Halves `sum` until one more row (adding at most `127 >> shift` to an entry) keeps every
    /// entry within `limit`; it stops at shift 7, where a row's codes divided by 128 add
    /// nothing. Every entry stays within `limit` throughout.
    fn make_room(&mut self) {
        while self.bound + (127 >> self.shift) > self.limit && self.shift < 7 {
            self.sum.iter_mut().for_each(|v| *v /= 2);
            self.shift += 1;
            self.measure();
        }
    }

    /// The mean, `dim` wide.
    #[cfg(test)]
    fn mean(&self, dim: usize) -> Vec<f64> {
        let u = self.unit();
        self.sum[..dim].iter().map(|&v| u * f64::from(v)).collect()
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use search_kernels::planes::kernels;

    /// Rows coded like the gallery's: `n` unit rows of `dim`, row `r` with entries `f(r, i)`.
    fn codes(n: usize, dim: usize, f: impl Fn(usize, usize) -> f32) -> RowCodes {
        let rows: Vec<f32> = (0..n * dim).map(|k| f(k / dim, k % dim)).collect();
        RowCodes::new(&rows, dim).0
    }

    #[test]
    fn a_centroid_of_one_row_many_times_stays_exact_and_points_at_it() {
        // Duplicates make the code sum grow by 127 a row: it must halve, not overflow.
        let dim = 512;
        let data = codes(1, dim, |_, i| ((i * 7919 % 211) as f32 - 105.0) / 50.0);
        let limit = i32::from(sum_code_max(data.stride));
        let mut c = Centroid::new(Aligned::zeroed(data.stride), &data, 0);
        let add = kernels().add;
        for _ in 0..2000 {
            let dot = (kernels().dot2)(&c.sum, &c.sum, data.row(0)).0;
            c.add(add, &data, 0, dot);
            assert!(c.sum.iter().all(|&v| i32::from(v).abs() <= limit));
        }
        assert!(c.shift > 0, "the sum was halved");
        assert_eq!(c.count, 2001.0);
        // The mean is the row itself (a unit row), and its cosine distance to it is 0.
        let mean = c.mean(dim);
        let x: Vec<f64> = data.row(0)[..dim]
            .iter()
            .map(|&v| f64::from(data.scale(0)) * f64::from(v))
            .collect();
        for (m, x) in mean.iter().zip(&x) {
            assert!((m - x).abs() < 0.01, "{m} vs {x}");
        }
        let dot = (kernels().dot2)(&c.sum, &c.sum, data.row(0)).0;
        assert!(c.cosine_distance(dot, data.scale(0)).abs() < 1e-3);
        assert!(c.squared_distance(dot, data.scale(0)).abs() < 1e-2);
    }

    #[test]
    fn a_centroid_tracks_its_norm_and_mean_incrementally() {
        let dim = 100;
        let data = codes(50, dim, |r, i| {
            (((r * 131 + i * 17) % 97) as f32 - 48.0) / 7.0
        });
        let mut c = Centroid::new(Aligned::zeroed(data.stride), &data, 0);
        let dot2 = kernels().dot2;
        for r in 1..50 {
            let dot = dot2(&c.sum, &c.sum, data.row(r)).0;
            c.add(kernels().add, &data, r, dot);
        }
        let exact: i64 = c.sum.iter().map(|&v| i64::from(v) * i64::from(v)).sum();
        assert_eq!(c.sq, exact as f64);
        // The mean of the 50 unit rows, within the codes' error.
        let mean = c.mean(dim);
        for (i, &m) in mean.iter().enumerate() {
            let want: f64 = (0..50u32)
                .map(|r| f64::from(data.scale(r)) * f64::from(data.row(r)[i]))
                .sum::<f64>()
                / 50.0;
            assert!((m - want).abs() < 0.01, "{i}: {m} vs {want}");
        }
    }
}
