//! Row-major matrices of `f32` vectors and the checks that make cosine similarity defined.

use crate::error::{Error, Result};

/// An owned, row-major `n × dim` matrix of `f32`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Vectors {
    dim: usize,
    data: Vec<f32>,
}

impl Vectors {
    /// Wraps `data` as rows of `dim` components.
    ///
    /// ```
    /// let v = search_core::Vectors::new(2, vec![1.0, 0.0, 0.0, 1.0])?;
    /// assert_eq!(v.len(), 2);
    /// assert_eq!(v.row(1), &[0.0, 1.0]);
    /// # Ok::<(), search_core::Error>(())
    /// ```
    pub fn new(dim: usize, data: Vec<f32>) -> Result<Self> {
        VectorView::new(dim, &data)?;
        Ok(Vectors { dim, data })
    }

    /// An empty matrix whose rows will have `dim` components.
    pub fn with_dim(dim: usize) -> Self {
        Vectors {
            dim,
            data: Vec::new(),
        }
    }

    /// Appends one row; fails when its length is not `dim`.
    pub fn push(&mut self, row: &[f32]) -> Result<()> {
        if row.len() != self.dim {
            return Err(Error::Dimension {
                expected: self.dim,
                found: row.len(),
            });
        }
        self.data.extend_from_slice(row);
        Ok(())
    }

    /// Number of components per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Row `i`. Panics when `i >= len()`, like slice indexing.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// All components, row after row.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// Consumes the matrix, returning its components.
    pub fn into_inner(self) -> Vec<f32> {
        self.data
    }

    /// A borrowed view of the whole matrix.
    pub fn view(&self) -> VectorView<'_> {
        VectorView {
            dim: self.dim,
            data: &self.data,
        }
    }
}

/// A borrowed, row-major `n × dim` matrix of `f32`: what engines build from.
#[derive(Clone, Copy, Debug)]
pub struct VectorView<'a> {
    dim: usize,
    data: &'a [f32],
}

impl<'a> VectorView<'a> {
    /// Views `data` as rows of `dim` components; `data.len()` must be a multiple of `dim > 0`.
    pub fn new(dim: usize, data: &'a [f32]) -> Result<Self> {
        if dim == 0 {
            return Err(Error::InvalidArgument(
                "dimension must be at least 1".into(),
            ));
        }
        if !data.len().is_multiple_of(dim) {
            return Err(Error::InvalidArgument(format!(
                "{} components do not divide into rows of {dim}",
                data.len()
            )));
        }
        Ok(VectorView { dim, data })
    }

    /// Number of components per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Row `i`. Panics when `i >= len()`, like slice indexing.
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// All components, row after row.
    pub fn as_slice(&self) -> &'a [f32] {
        self.data
    }

    /// Iterates over the rows.
    pub fn rows(&self) -> std::slice::ChunksExact<'a, f32> {
        self.data.chunks_exact(self.dim)
    }

    /// Checks every row with [`check_vector`], on all cores; the error names the first bad row.
    pub fn check_all(&self) -> Result<()> {
        use rayon::prelude::*;
        let bad = self
            .data
            .par_chunks_exact(self.dim)
            .position_first(|row| check_vector(row, self.dim, String::new).is_err());
        match bad {
            Some(i) => check_vector(self.row(i), self.dim, || format!("gallery row {i}")),
            None => Ok(()),
        }
    }
}

/// Checks that `v` has `dim` finite components and a non-zero norm, so that cosine similarity
/// with it is defined. `what` names the vector in the error ("query", "gallery row 3", ...).
///
/// ```
/// use search_core::{check_vector, Error};
/// assert!(check_vector(&[1.0, 2.0], 2, || "query".into()).is_ok());
/// assert!(matches!(check_vector(&[0.0, 0.0], 2, || "query".into()), Err(Error::BadVector { .. })));
/// assert!(matches!(check_vector(&[1.0], 2, || "query".into()), Err(Error::Dimension { .. })));
/// ```
pub fn check_vector(v: &[f32], dim: usize, what: impl FnOnce() -> String) -> Result<()> {
    if v.len() != dim {
        return Err(Error::Dimension {
            expected: dim,
            found: v.len(),
        });
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(Error::BadVector {
            what: what(),
            reason: "has a NaN or infinite component",
        });
    }
    let norm2: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    if norm2 == 0.0 || !norm2.is_finite() {
        return Err(Error::BadVector {
            what: what(),
            reason: "has zero (or overflowing) norm, so cosine similarity is undefined",
        });
    }
    Ok(())
}

/// Checks `v` like [`check_vector`] and returns it scaled to unit length
/// ([`search_kernels::normalise`]'s rule).
///
/// ```
/// let u = search_core::normalized(&[3.0, 4.0], 2, || "query".into())?;
/// assert!((u[0] - 0.6).abs() < 1e-6 && (u[1] - 0.8).abs() < 1e-6);
/// # Ok::<(), search_core::Error>(())
/// ```
pub fn normalized(v: &[f32], dim: usize, what: impl FnOnce() -> String) -> Result<Vec<f32>> {
    check_vector(v, dim, what)?;
    let mut out = vec![0.0; v.len()];
    search_kernels::normalise_into(v, &mut out);
    Ok(out)
}

/// Normalises every row of `view` to unit length into a new matrix, checking each row first.
pub fn normalized_rows(view: VectorView<'_>) -> Result<Vectors> {
    let mut data = Vec::with_capacity(view.as_slice().len());
    for (i, row) in view.rows().enumerate() {
        data.extend(normalized(row, view.dim(), || format!("gallery row {i}"))?);
    }
    Ok(Vectors {
        dim: view.dim(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_all_names_the_first_bad_row() {
        let dim = 3;
        let mut data: Vec<f32> = (0..5000 * dim).map(|i| 1.0 + (i % 7) as f32).collect();
        let view = VectorView::new(dim, &data).unwrap();
        assert!(view.check_all().is_ok());
        data[4321 * dim + 1] = f32::NAN;
        data[4999 * dim..].fill(0.0);
        data[777 * dim..778 * dim].fill(0.0);
        let err = VectorView::new(dim, &data)
            .unwrap()
            .check_all()
            .unwrap_err();
        assert!(
            matches!(&err, Error::BadVector { what, .. } if what == "gallery row 777"),
            "{err}"
        );
    }
}
