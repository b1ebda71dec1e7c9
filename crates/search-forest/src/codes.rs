//! The int8 copy of the gallery that the build works on.
//!
//! Building a tree is two kinds of arithmetic on the rows: two-means on sampled rows, and a
//! side of the split plane for every row of the node. Both read rows far more often than they
//! compute with them, so the build reads a copy that is a quarter the size: each unit row `x`
//! as `x̂ = s · c`, `s = max|xᵢ| / 127`, `cᵢ = round(xᵢ / s)` (an `i8`), padded with zeros to a
//! multiple of [`LANES`]. A plane's normal is coded in 8 bits too (`|pᵢ| ≤ 127`, kept as
//! `pᵢ + 128` in a `u8`: [`PlaneCode`]), so the side of a row is the sign of the exact integer
//! `Σ pᵢcᵢ` (plus the plane's offset for euclidean). Two-means keeps each centroid as the `i16`
//! sum of its rows' codes (see `build::Centroid`), so its dot products with a row are exact
//! integers too.
//!
//! The files keep the f32 rows; a split node's normal is its plane's codes times their scale,
//! the plane the build chose the sides with, so a search walks the planes the build split with.
//! A row whose margin is within the rows' coding error may land on the other side than exact
//! arithmetic would put it: a split a hair's breadth different, which searches explore the same
//! way (measured: recall@4 over a search_k sweep equal to the f32 build's within noise). Planes
//! get 16 bits: while the files kept the exact f32 normal instead, a plane turned by its coding
//! error moved every unit row's margin by as much (measured on 100k × 512 at search_k 1000:
//! recall@4 0.70 with `i16` planes, 0.65 with 8-bit and 0.61 with 7-bit ones). With the coded
//! plane in the file, 8-bit planes measured the same recall as 16-bit ones (mean of 4 seeds,
//! search_k 500 / 1000 / 2000 / 5000 / 10000: 0.558 / 0.681 / 0.808 / 0.929 / 0.976 against
//! 0.558 / 0.692 / 0.810 / 0.927 / 0.972). They halve what the side kernels read, and with
//! AVX-512 VNNI a row meets a plane in `vpdpbusd` (unsigned times signed bytes: hence the
//! plane's bias of 128, taken off with the row's code sum) without widening either.

use rayon::prelude::*;
use search_kernels::Aligned;
use search_kernels::planes::{LANES, SideDot4Fn, SideRow8Fn};

/// The int8 codes of every row, with their scales.
pub(crate) struct RowCodes {
    codes: Aligned<i8>,
    /// Each row's scale and `‖codes‖²`, side by side: two-means reads both for rows drawn at
    /// random, and one cache line brings them (measured with perf: kept in two arrays, the
    /// square's cache miss alone was ~15% of the two-means loop's own time).
    meta: Vec<RowMeta>,
    /// Codes per row: the dimension rounded up to [`LANES`].
    pub stride: usize,
}

#[derive(Clone, Copy, Default)]
struct RowMeta {
    square: u64,
    scale: f32,
    /// `Σ codes`: a biased plane's product with the row, less `128 · sum`, is the plane's.
    sum: i32,
}

impl RowCodes {
    /// Codes the unit rows `x / ‖x‖` of `rows` (`dim` wide), in one pass over them; also
    /// returns their norms `‖x‖` (summed in f64). A row that is not finite or is zero gets a
    /// norm that is not finite or is zero: the caller must check them before using the codes.
    pub fn new(rows: &[f32], dim: usize) -> (RowCodes, Vec<f64>) {
        let stride = dim.div_ceil(LANES) * LANES;
        let n = rows.len() / dim;
        let mut codes = Aligned::<i8>::zeroed(n * stride);
        let mut meta = vec![RowMeta::default(); n];
        let mut norms = vec![0f64; n];
        let code_unit = search_kernels::rows::kernels().code_unit;
        codes
            .par_chunks_mut(stride)
            .zip(&mut meta)
            .zip(rows.par_chunks(dim).zip(&mut norms))
            .for_each(|((codes, meta), (row, norm))| {
                let coded = code_unit(row, codes);
                *norm = coded.norm;
                *meta = RowMeta {
                    square: coded.square,
                    scale: coded.scale,
                    sum: coded.sum,
                };
            });
        let codes = RowCodes {
            codes,
            meta,
            stride,
        };
        (codes, norms)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// Row `i`'s codes.
    pub fn row(&self, i: u32) -> &[i8] {
        let i = i as usize;
        &self.codes[i * self.stride..(i + 1) * self.stride]
    }

    /// Row `i`'s scale: `x̂ = scale · codes`.
    pub fn scale(&self, i: u32) -> f32 {
        self.meta[i as usize].scale
    }

    /// Row `i`'s `‖codes‖²`.
    pub fn square(&self, i: u32) -> u64 {
        self.meta[i as usize].square
    }

    /// Hints the CPU to fetch row `i`'s codes, scale and square into cache (never faults).
    #[inline]
    pub fn prefetch(&self, i: u32) {
        let row = self.row(i);
        search_kernels::prefetch(row.as_ptr().cast(), row.len());
        let meta = &self.meta[i as usize];
        search_kernels::prefetch((meta as *const RowMeta).cast(), 1);
    }

    /// `Σ pᵢcᵢ` of row `i` with a plane, given the kernels' `Σ (pᵢ + 128) cᵢ`.
    fn unbias(&self, i: u32, biased: i32) -> i32 {
        biased - PLANE_BIAS * self.meta[i as usize].sum
    }

    /// Row `i` against eight planes: the margins `x̂ · n̂ₖ` (before any offset), or with
    /// `scaled` false the integer products `Σ pᵢcᵢ` (as f32). Those have the margins' signs
    /// (the scales are positive), which is all a plane through the origin (angular, offset 0)
    /// needs to place a row.
    pub fn margins8(
        &self,
        side_row8: SideRow8Fn,
        i: u32,
        planes: [&PlaneCode; 8],
        scaled: bool,
    ) -> [f32; 8] {
        let dots = side_row8(self.row(i), planes.map(|p| &p.codes[..]));
        let scale = self.scale(i);
        [0, 1, 2, 3, 4, 5, 6, 7].map(|j| {
            let dot = self.unbias(i, dots[j]) as f32;
            if scaled {
                scale * planes[j].scale * dot
            } else {
                dot
            }
        })
    }

    /// [`Self::margins8`] of four (row, plane) pairs.
    pub fn margins4(
        &self,
        side_dot4: SideDot4Fn,
        rows: [u32; 4],
        planes: [&PlaneCode; 4],
        scaled: bool,
    ) -> [f32; 4] {
        let dots = side_dot4(planes.map(|p| &p.codes[..]), rows.map(|i| self.row(i)));
        [0, 1, 2, 3].map(|j| {
            let dot = self.unbias(rows[j], dots[j]) as f32;
            if scaled {
                self.scale(rows[j]) * planes[j].scale * dot
            } else {
                dot
            }
        })
    }
}

/// What a plane code is stored with: code `p` (`|p| ≤ 127`) as the `u8` `p + PLANE_BIAS`
/// (the bias of [`search_kernels::rows::quantize_biased`]).
pub(crate) const PLANE_BIAS: i32 = search_kernels::rows::BIAS;

/// A split plane's normal in 8-bit codes `pᵢ` (`|pᵢ| ≤ 127`), each kept as the `u8`
/// `pᵢ + 128` ([`PLANE_BIAS`]; padding is 128, a zero code): the normal is `scale · p`.
pub(crate) struct PlaneCode {
    pub codes: Aligned<u8>,
    pub scale: f32,
}

impl PlaneCode {
    /// Codes `normal` (of the gallery's dimension) for rows of `stride` codes.
    #[cfg(test)]
    pub fn new(normal: &[f32], stride: usize) -> PlaneCode {
        let mut plane = PlaneCode::zero(stride);
        plane.encode(normal);
        plane
    }

    /// The zero normal, for rows of `stride` codes.
    pub fn zero(stride: usize) -> PlaneCode {
        let mut plane = PlaneCode {
            codes: Aligned::zeroed(stride),
            scale: 1.0,
        };
        plane.clear();
        plane
    }

    /// Codes `normal` (of the gallery's dimension) in place.
    pub fn encode(&mut self, normal: &[f32]) {
        self.codes.fill(PLANE_BIAS as u8);
        self.scale = search_kernels::rows::quantize_biased(normal, &mut self.codes);
    }

    /// Makes this the zero normal.
    pub fn clear(&mut self) {
        self.codes.fill(PLANE_BIAS as u8);
        self.scale = 1.0;
    }
}

/// Writes the normal `scale · codes` into `out` (the gallery's dimension; the codes may be
/// longer, padded with zeros). This is the normal a file gets: the plane the build chose the
/// sides with, within float rounding.
pub(crate) fn decode_plane(codes: &[u8], scale: f32, out: &mut [f32]) {
    for (v, &c) in out.iter_mut().zip(codes) {
        *v = scale * (i32::from(c) - PLANE_BIAS) as f32;
    }
}

/// The largest entry of a two-means centroid's code sum (`i16`) for rows of `stride` codes:
/// `127 · max · stride` stays below `i32::MAX`, so a row's integer dot product with the sum is
/// exact whatever the order of the sums. 32767 up to 512 dimensions; at least 1 up to
/// [`MAX_DIM`].
pub(crate) fn sum_code_max(stride: usize) -> i16 {
    let m = i32::MAX as usize / (127 * stride.max(1));
    m.clamp(1, i16::MAX as usize) as i16
}

/// The largest dimension the build takes: a row's products with a biased plane code (at most
/// `255 · 127` each) sum exactly in `i32`.
pub(crate) const MAX_DIM: usize = (i32::MAX as usize / (255 * 127)) / LANES * LANES;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins_are_exact_integer_dot_products_of_the_codes() {
        let dim = 70;
        let rows: Vec<f32> = (0..4 * dim)
            .map(|i| ((i * 7919 % 211) as f32 - 105.0) / 50.0)
            .collect();
        let (codes, _) = RowCodes::new(&rows, dim);
        assert_eq!(codes.stride, 96);
        let normal: Vec<f32> = (0..dim)
            .map(|i| ((i * 31 % 17) as f32 - 8.0) / 10.0)
            .collect();
        let plane = PlaneCode::new(&normal, codes.stride);
        let plane_codes: Vec<i32> = plane
            .codes
            .iter()
            .map(|&c| i32::from(c) - PLANE_BIAS)
            .collect();
        assert_eq!(plane_codes.iter().map(|c| c.abs()).max(), Some(127));
        assert!(
            plane_codes[dim..].iter().all(|&c| c == 0),
            "padding codes zero"
        );
        let side_dot4 = search_kernels::planes::kernels().side_dot4;
        let got = codes.margins4(side_dot4, [0, 1, 2, 3], [&plane; 4], true);
        let unscaled = codes.margins4(side_dot4, [0, 1, 2, 3], [&plane; 4], false);
        for (i, &m) in got.iter().enumerate() {
            let row = codes.row(i as u32);
            let exact: i32 = row
                .iter()
                .zip(&plane_codes)
                .map(|(&c, &p)| i32::from(c) * p)
                .sum();
            let want = codes.scale(i as u32) * plane.scale * exact as f32;
            assert_eq!(m, want);
            assert_eq!(unscaled[i], exact as f32);
            // And close to the true margin of the unit row.
            let x = &rows[i * dim..(i + 1) * dim];
            let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt();
            let true_m: f32 = x.iter().zip(&normal).map(|(a, b)| a * b / norm).sum();
            let n_norm = normal.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((m - true_m).abs() <= 0.01 * n_norm, "{m} vs {true_m}");
        }
    }
}

#[cfg(test)]
mod bounds {
    use super::*;

    #[test]
    fn codes_keep_the_sums_exact() {
        for stride in [32, 512, 544, 4096, 1 << 20, MAX_DIM] {
            let m = sum_code_max(stride) as i64;
            assert!(
                127 * m * stride as i64 <= i32::MAX as i64,
                "stride {stride}"
            );
        }
        assert_eq!(sum_code_max(512), 32767);
        // A row against a biased plane code: at most 255 · 127 a product.
        assert!(255 * 127 * MAX_DIM as i64 <= i32::MAX as i64);
        const { assert!(MAX_DIM >= 65536 - LANES) };
        let zero = PlaneCode::new(&[0.0; 5], 32);
        assert!(zero.codes.iter().all(|&c| i32::from(c) == PLANE_BIAS) && zero.scale == 1.0);
        let mut out = [1.0f32; 5];
        decode_plane(&zero.codes, zero.scale, &mut out);
        assert_eq!(out, [0.0; 5]);
    }

    #[test]
    fn a_plane_decodes_to_its_codes_times_its_scale() {
        let normal = [0.5f32, -1.0, 0.25, 0.0, -0.126];
        let plane = PlaneCode::new(&normal, 32);
        let mut out = [0f32; 5];
        decode_plane(&plane.codes, plane.scale, &mut out);
        for (&o, &x) in out.iter().zip(&normal) {
            assert!((o - x).abs() <= 0.5 * plane.scale * 1.0001, "{o} vs {x}");
        }
        assert_eq!(out[1], -1.0);
        assert!(plane.codes[5..].iter().all(|&c| i32::from(c) == PLANE_BIAS));
    }
}
