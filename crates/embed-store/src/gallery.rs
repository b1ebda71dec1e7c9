//! A gallery: vectors with one label per row.

use search_core::Vectors;
use search_core::{Error, Result};

/// Labelled embeddings: row `i` of [`Gallery::vectors`] is the face called `labels[i]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gallery {
    vectors: Vectors,
    labels: Vec<String>,
}

impl Gallery {
    /// Pairs `vectors` with `labels`; there must be exactly one label per row.
    ///
    /// ```
    /// use embed_store::{Gallery, Vectors};
    /// let g = Gallery::new(Vectors::new(2, vec![1.0, 0.0, 0.0, 1.0])?, vec!["ann_1".into(), "bob_1".into()])?;
    /// assert_eq!(g.label(1), "bob_1");
    /// # Ok::<(), embed_store::Error>(())
    /// ```
    pub fn new(vectors: Vectors, labels: Vec<String>) -> Result<Self> {
        if vectors.len() != labels.len() {
            return Err(Error::InvalidArgument(format!(
                "{} vectors but {} labels: a gallery needs one label per vector",
                vectors.len(),
                labels.len()
            )));
        }
        Ok(Gallery { vectors, labels })
    }

    /// The vectors, one row per face.
    pub fn vectors(&self) -> &Vectors {
        &self.vectors
    }

    /// The labels, one per row.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The label of row `i`.
    pub fn label(&self, i: usize) -> &str {
        &self.labels[i]
    }

    /// Number of components per vector.
    pub fn dim(&self) -> usize {
        self.vectors.dim()
    }

    /// Number of faces.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the gallery holds no face.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Splits the gallery into its vectors and labels.
    pub fn into_parts(self) -> (Vectors, Vec<String>) {
        (self.vectors, self.labels)
    }
}

/// The person a label names, by the notebook's convention: a label is the person's name, `_`
/// and the image's number, so the person is everything before the last `_`
/// (`Eduardo_Eiras2` has no such `_` after the name: see below). A label without `_` is its own
/// person. The one place this rule lives.
///
/// The notebook's own labels (`Eduardo_Eiras1`) end in digits without a separator; those
/// digits are taken off as the image number.
///
/// ```
/// use embed_store::person_of;
/// assert_eq!(person_of("id042_3"), "id042");
/// assert_eq!(person_of("id042_q"), "id042");
/// assert_eq!(person_of("Eduardo_Eiras2"), "Eduardo_Eiras");
/// assert_eq!(person_of("random_17"), "random");
/// assert_eq!(person_of("alice"), "alice");
/// ```
pub fn person_of(label: &str) -> &str {
    let without_digits = label.trim_end_matches(|c: char| c.is_ascii_digit());
    if without_digits.len() < label.len()
        && !without_digits.ends_with('_')
        && !without_digits.is_empty()
    {
        // `Eduardo_Eiras2`: the image number follows the name directly.
        return without_digits;
    }
    label.rsplit_once('_').map_or(label, |(person, _)| person)
}
