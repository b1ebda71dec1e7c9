//! One-bit codes of the rows (RaBitQ, Gao & Long, SIGMOD 2024), for a cheap estimate of each
//! neighbour's score while walking the graph.
//!
//! A row `x` is centred on the gallery mean `μ`, turned by a seeded random rotation `P` (see
//! [`Frame`]) and reduced to the signs of its components: `b = sign(P(x − μ))`, one bit per
//! component, 64 bytes for 512 dimensions, plus two floats.
//! For a query `q`, with `r = P(q − μ)`,
//!
//! ```text
//! q·x = (q − μ)·(x − μ) + (q − μ)·μ + μ·x  ≈  A_x · Σᵢ bᵢ rᵢ  +  C_q  +  B_x
//! A_x = |x − μ|² / Σᵢ |(P(x − μ))ᵢ|,   B_x = μ·x,   C_q = (q − μ)·μ
//! ```
//!
//! (RaBitQ's estimator `⟨r, x̄⟩ / ⟨x̄, o⟩` with `x̄ = b/√D`, `o` the unit rotated row). `r` is
//! quantised to 4 bits, `rᵢ ≈ lo + Δ·uᵢ`, so `Σ bᵢ rᵢ = 2 Σ_{bᵢ=1} rᵢ − Σ rᵢ` comes from
//! `Σ_{bᵢ=1} uᵢ = Σⱼ 2ʲ popcount(b ∧ planeⱼ)`: four ANDs and popcounts per 64 components. On
//! 512-d unit rows the estimate of a cosine is off by about 0.03 (one standard deviation);
//! the walk only orders its candidates by it, and scores every node it expands exactly.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use search_kernels::bits::{SumFn, sum_kernel};
use search_kernels::{advise_huge_pages, prefetch};

use crate::search::Screen;

/// Bits of query precision: the query's rotated components are rounded to `2^QUERY_BITS` levels.
const QUERY_BITS: usize = 4;

// The popcount kernels sum exactly this many planes.
const _: () = assert!(QUERY_BITS == search_kernels::bits::PLANES);

/// Components of the rotated space for `dim` components: a power of two, at least 64.
fn padded(dim: usize) -> usize {
    dim.next_power_of_two().max(64)
}

/// Number of u64 words of code per row for `dim` components.
pub(crate) fn words(dim: usize) -> usize {
    padded(dim) / 64
}

/// Rounds of random signs and Hadamard transform in the rotation.
pub(crate) const ROUNDS: usize = 3;

/// The mean that codes are centred on and the random rotation they are taken in:
/// `P = H·D₃·H·D₂·H·D₁` (normalised), `Dᵢ` diagonal random signs, `H` the Walsh–Hadamard
/// transform of `padded(dim)` components (RaBitQ's library rotates the same way). It costs
/// `O(D log D)` per vector instead of a dense matrix's `D²`, and three sign vectors to store.
pub(crate) struct Frame {
    pub dim: usize,
    /// `ROUNDS` sign vectors of `words(dim)` u64 each (bit set = flip).
    pub flips: Vec<u64>,
    pub mean: Vec<f32>,
}

/// A [`Frame`] borrowed from memory or from a mapped file.
#[derive(Clone, Copy)]
pub(crate) struct FrameRef<'a> {
    pub dim: usize,
    pub flips: &'a [u64],
    pub mean: &'a [f32],
}

impl Frame {
    /// Seeded random signs and the mean of `rows` (`dim` components each).
    pub fn new(rows: impl Iterator<Item = impl AsRef<[f32]>>, dim: usize, seed: u64) -> Frame {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let flips = (0..ROUNDS * words(dim)).map(|_| rng.random()).collect();
        let mut sum = vec![0f64; dim];
        let mut n = 0usize;
        for row in rows {
            for (s, &x) in sum.iter_mut().zip(row.as_ref()) {
                *s += f64::from(x);
            }
            n += 1;
        }
        let mean = sum.iter().map(|s| (s / n.max(1) as f64) as f32).collect();
        Frame { dim, flips, mean }
    }

    pub fn view(&self) -> FrameRef<'_> {
        FrameRef {
            dim: self.dim,
            flips: &self.flips,
            mean: &self.mean,
        }
    }
}

impl FrameRef<'_> {
    /// `P(x − μ)` of one row into `out` (`padded(dim)` long); returns `(x − μ)·μ`.
    fn rotate(&self, x: &[f32], out: &mut [f32]) -> f32 {
        let n = out.len();
        let mut centre = 0f32;
        for ((o, &a), &m) in out.iter_mut().zip(x).zip(self.mean) {
            *o = a - m;
            centre += *o * m;
        }
        out[self.dim..].fill(0.0);
        let w = n / 64;
        for flips in self.flips.chunks_exact(w) {
            // Flip the sign bit of every component whose bit is set: branch-free, so the
            // compiler vectorises it.
            for (block, &bits) in out.chunks_exact_mut(64).zip(flips) {
                for (k, o) in block.iter_mut().enumerate() {
                    let sign = ((bits >> k) as u32 & 1) << 31;
                    *o = f32::from_bits(o.to_bits() ^ sign);
                }
            }
            hadamard(out);
        }
        let scale = (n as f32).powf(-0.5 * ROUNDS as f32);
        out.iter_mut().for_each(|o| *o *= scale);
        centre
    }
}

/// The unnormalised Walsh–Hadamard transform, in place (`v.len()` a power of two).
fn hadamard(v: &mut [f32]) {
    let mut h = 1;
    while h < v.len() {
        for block in v.chunks_exact_mut(2 * h) {
            let (a, b) = block.split_at_mut(h);
            for (x, y) in a.iter_mut().zip(b) {
                let (s, d) = (*x + *y, *x - *y);
                *x = s;
                *y = d;
            }
        }
        h *= 2;
    }
}

/// The codes of a gallery: `words` u64 per row, and per row `[A_x, B_x, E_x, 0]`, where
/// `E_x = |x − μ| · √(1 − c²) / (c · √(D − 1))` with `c = ⟨x̄, o⟩` scales the estimate's
/// error bound (RaBitQ's Theorem 3.2).
pub(crate) struct Codes {
    pub bits: Vec<u64>,
    pub factors: Vec<[f32; 4]>,
}

impl Codes {
    /// Codes the rows of `rows`, `stride` floats each (the first `frame.dim` meaningful).
    pub fn of(frame: FrameRef<'_>, rows: &[f32], stride: usize) -> Codes {
        let dim = frame.dim;
        let w = words(dim);
        let n = rows.len() / stride;
        // Read at random by every walk: on large pages.
        let mut bits = vec![0u64; n * w];
        let mut factors = vec![[0f32; 4]; n];
        advise_huge_pages(&bits);
        advise_huge_pages(&factors);
        // μ·x = (x − μ)·μ + μ·μ
        let mean_sq: f32 = frame.mean.iter().map(|m| m * m).sum();
        let d = (64 * w) as f64;
        bits.par_chunks_mut(w)
            .zip(factors.par_iter_mut())
            .zip(rows.par_chunks_exact(stride))
            .for_each_init(
                || vec![0f32; 64 * w],
                |r, ((code, f), row)| {
                    let x = &row[..dim];
                    let centre = frame.rotate(x, r);
                    let mut abs = 0f64;
                    let mut norm2 = 0f64;
                    for (k, &v) in r.iter().enumerate() {
                        abs += f64::from(v.abs());
                        norm2 += f64::from(v) * f64::from(v);
                        if v >= 0.0 {
                            code[k / 64] |= 1 << (k % 64);
                        }
                    }
                    let (a, e) = if abs > 0.0 {
                        let norm = norm2.sqrt();
                        let c = abs / (norm * d.sqrt());
                        (
                            norm2 / abs,
                            norm * (1.0 - c * c).max(0.0).sqrt() / (c * (d - 1.0).sqrt()),
                        )
                    } else {
                        (0.0, 0.0)
                    };
                    *f = [a as f32, centre + mean_sq, e as f32, 0.0];
                },
            );
        Codes { bits, factors }
    }

    pub fn append(&mut self, other: Codes) {
        self.bits.extend_from_slice(&other.bits);
        self.factors.extend_from_slice(&other.factors);
    }
}

/// A query prepared for estimates: its rotated components as four bit planes.
pub(crate) struct Query {
    /// `QUERY_BITS` planes of `words` u64 each.
    planes: Vec<u64>,
    two_delta: f32,
    two_lo: f32,
    /// `Σ rᵢ` of the quantised components.
    sum: f32,
    /// `C_q = (q − μ)·μ`.
    centre: f32,
    /// `ε₀·|q − μ|`: times `E_x`, the bound on the code's error.
    eps_norm: f32,
    /// Times `A_x`, a bound on the error of rounding the query to 4 bits.
    rounding: f32,
}

/// RaBitQ's ε₀, in units of the estimate's error scale `E_x · |q − μ|` (the paper's bound uses
/// 1.9), for queries and construction alike. The screen only decides which neighbours get an
/// int8 distance: a walk needs only the neighbours that can enter its `ef` results, and one it
/// wrongly rules out costs recall, which a larger `ef` buys back. Against ε₀ = 1, recall@4 on
/// the face-like gallery (100k, 2000 queries) moved by at most 0.0005 from ef 100 to 400 for
/// queries (0.004 at ef 20, where it is 0.85), and by at most 0.0006 from ef 50 to 200 for a
/// graph built with it; queries were 7% faster at 100k and 18% at 1M, builds 1.06–1.26× as
/// fast on the notebook's gallery at 200k and 0.90–1.14× on the face-like one (the
/// measurements log, sixth and seventh sessions).
pub(crate) const EPS0: f32 = 0.5;

impl Query {
    /// Prepares query `q` (at least `frame.dim` components; unit length for cosine).
    pub fn new(frame: FrameRef<'_>, q: &[f32], eps0: f32) -> Query {
        let w = words(frame.dim);
        let mut r = vec![0f32; 64 * w];
        let centre = frame.rotate(&q[..frame.dim], &mut r);
        let (lo, hi) = r
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        let levels = ((1 << QUERY_BITS) - 1) as f32;
        let delta = if hi > lo { (hi - lo) / levels } else { 1.0 };
        let inv = 1.0 / delta;
        let mut planes = vec![0u64; QUERY_BITS * w];
        let mut units = 0u32;
        for (k, chunk) in r.chunks_exact(64).enumerate() {
            let mut bits = [0u64; QUERY_BITS];
            for (i, &x) in chunk.iter().enumerate() {
                // Round half up; the clamp only guards against rounding at the top.
                let u = (((x - lo) * inv + 0.5) as u32).min(levels as u32);
                units += u;
                for (j, b) in bits.iter_mut().enumerate() {
                    *b |= u64::from(u >> j & 1) << i;
                }
            }
            for (j, b) in bits.into_iter().enumerate() {
                planes[j * w + k] = b;
            }
        }
        let norm = r.iter().map(|x| x * x).sum::<f32>().sqrt();
        Query {
            planes,
            two_delta: 2.0 * delta,
            two_lo: 2.0 * lo,
            sum: r.len() as f32 * lo + delta * units as f32,
            centre,
            eps_norm: eps0 * norm,
            // Each component is off by at most Δ/2, uniformly: 3σ of their signed sum.
            rounding: 3.0 * delta * (r.len() as f32 / 12.0).sqrt(),
        }
    }

    /// The estimated inner product of the query with the row coded `code`, factors `f`, and
    /// a bound on the estimate's error.
    #[inline]
    pub fn estimate(&self, kernel: SumFn, code: &[u64], f: [f32; 4]) -> (f32, f32) {
        let (weighted, ones) = kernel(code, &self.planes);
        let signed = self.two_delta * weighted as f32 + self.two_lo * ones as f32 - self.sum;
        (
            f[0] * signed + self.centre + f[1],
            f[2] * self.eps_norm + f[0] * self.rounding,
        )
    }
}

/// A gallery's codes borrowed from memory or a mapped file, with their frame.
#[derive(Clone, Copy)]
pub(crate) struct CodesRef<'a> {
    pub frame: FrameRef<'a>,
    pub bits: &'a [u64],
    pub factors: &'a [[f32; 4]],
}

/// Rules a walk's neighbours out by their codes' estimates and error bounds.
pub(crate) struct SignScreen<'a> {
    codes: CodesRef<'a>,
    words: usize,
    sum: SumFn,
    query: Query,
}

impl<'a> SignScreen<'a> {
    /// A screen for query `q` (unit length for cosine) over `codes`, ruling out a neighbour
    /// when its estimate is more than `eps0` error scales beyond the bound.
    pub fn new(codes: CodesRef<'a>, q: &[f32], eps0: f32) -> Self {
        SignScreen {
            codes,
            words: words(codes.frame.dim),
            sum: sum_kernel(),
            query: Query::new(codes.frame, q, eps0),
        }
    }
}

impl Screen for SignScreen<'_> {
    #[inline]
    fn may_pass(&self, j: u32, bound: f32) -> bool {
        let w = self.words;
        let bits = &self.codes.bits[j as usize * w..(j as usize + 1) * w];
        let (ip, err) = self
            .query
            .estimate(self.sum, bits, self.codes.factors[j as usize]);
        -ip - err <= bound
    }

    #[inline]
    fn prefetch(&self, j: u32) {
        let w = self.words;
        if let Some(bits) = self.codes.bits.get(j as usize * w..) {
            prefetch(bits.as_ptr().cast(), w * 8);
        }
        if let Some(f) = self.codes.factors.get(j as usize) {
            prefetch((f as *const [f32; 4]).cast(), 16);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    fn unit_rows(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut rows: Vec<f32> = (0..n * dim).map(|_| rng.random::<f32>() - 0.3).collect();
        for r in rows.chunks_exact_mut(dim) {
            let norm = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            r.iter_mut().for_each(|x| *x /= norm);
        }
        rows
    }

    #[test]
    fn the_rotation_keeps_lengths_and_angles() {
        for dim in [3, 64, 100, 512] {
            let frame = Frame {
                dim,
                flips: (0..(ROUNDS * words(dim)) as u64)
                    .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                    .collect(),
                mean: vec![0.0; dim],
            };
            let rows = unit_rows(2, dim, 3);
            let mut a = vec![0f32; 64 * words(dim)];
            let mut b = a.clone();
            frame.view().rotate(&rows[..dim], &mut a);
            frame.view().rotate(&rows[dim..], &mut b);
            let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
            assert!((dot(&a, &a) - 1.0).abs() < 1e-4, "dim {dim}");
            assert!(
                (dot(&a, &b) - dot(&rows[..dim], &rows[dim..])).abs() < 1e-4,
                "dim {dim}"
            );
        }
    }

    #[test]
    fn estimates_are_unbiased_and_within_their_bounds() {
        let (n, dim) = (2000, 512);
        let rows = unit_rows(n + 50, dim, 11);
        let (gallery, queries) = rows.split_at(n * dim);
        let frame = Frame::new(gallery.chunks_exact(dim), dim, 5);
        let codes = Codes::of(frame.view(), gallery, dim);
        let sum = sum_kernel();
        let (mut errors, mut outside, mut total) = (0f64, 0, 0);
        for q in queries.chunks_exact(dim) {
            let query = Query::new(frame.view(), q, 1.0);
            for (i, x) in gallery.chunks_exact(dim).enumerate() {
                let exact: f32 = q.iter().zip(x).map(|(a, b)| a * b).sum();
                let w = words(dim);
                let (est, err) =
                    query.estimate(sum, &codes.bits[i * w..(i + 1) * w], codes.factors[i]);
                errors += f64::from(est - exact);
                // ε₀ = 1 covers most pairs; three times it, nearly all.
                if (est - exact).abs() > 3.0 * err {
                    outside += 1;
                }
                total += 1;
            }
        }
        let bias = errors / f64::from(total);
        assert!(bias.abs() < 2e-3, "mean error {bias}");
        assert!(
            outside * 1000 < total,
            "{outside} of {total} outside 3x the bound"
        );
    }
}
