//! Compact int8 copies of the (unit) vectors, used to walk the graph; exact f32 dot products
//! re-rank the final candidates.
//!
//! Each row is coded by the quantizer every engine shares ([`search_kernels::quantize`]):
//! `code ≈ x / scale` with `scale = max|x| / 127`, so
//! `dot(a, b) ≈ scale_a · scale_b · Σ code_a · code_b`. On unit 512-d vectors the error of that
//! estimate is a few 1e-4 in cosine, far below the gaps the walk decides on. Rows are padded
//! with zero codes to a multiple of 64 bytes.
//!
//! The integer dot product is exact (i32), [`search_kernels::int8::DOT_I8`]'s variant for the
//! CPU: AVX-512 VNNI (`vpdpbusd`, 64 bytes per instruction), AVX2, NEON or portable Rust.

/// Bytes of codes per row for `dim` components.
pub(crate) fn code_stride(dim: usize) -> usize {
    dim.div_ceil(64) * 64
}

#[cfg(test)]
mod tests {
    use search_kernels::int8::DOT_I8;
    use search_kernels::quantize;

    #[test]
    fn quantised_dot_is_close() {
        let a: Vec<f32> = (0..512)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let b: Vec<f32> = (0..512)
            .map(|i| ((i * 53 % 89) as f32 - 44.0) / 44.0)
            .collect();
        let (mut ca, mut cb) = (vec![0i8; 512], vec![0i8; 512]);
        let (sa, sb) = (quantize(&a, &mut ca), quantize(&b, &mut cb));
        let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let approx = sa * sb * (DOT_I8.best().kernels)(&ca, &cb) as f32;
        let scale = a.iter().map(|x| x * x).sum::<f32>().sqrt()
            * b.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((exact - approx).abs() < 0.01 * scale, "{exact} vs {approx}");
    }
}
