//! A growable buffer of plain values that starts on a cache line.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use bytemuck::{Pod, Zeroable};

/// One cache line.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// A buffer of `T` that starts on a 64-byte boundary, zero-filled up to the end of its last
/// line: the kernels' vector loads never straddle two cache lines where a row starts on one
/// (rows of a multiple of 64 bytes), and it can be written as one aligned file section.
///
/// ```
/// use search_kernels::Aligned;
/// let mut rows = Aligned::<f32>::zeroed(16);
/// rows[3] = 1.0;
/// rows.extend_from_slice(&[2.0; 16]);
/// assert_eq!(rows.len(), 32);
/// assert_eq!(rows.as_ptr() as usize % 64, 0);
/// assert_eq!((rows[3], rows[20]), (1.0, 2.0));
/// ```
#[derive(Clone)]
pub struct Aligned<T> {
    lines: Vec<Line>,
    len: usize,
    _values: PhantomData<T>,
}

impl<T: Pod> Aligned<T> {
    /// `len` zeros; a large buffer on 2 MB pages where the kernel allows
    /// ([`crate::advise_huge_pages`]).
    pub fn zeroed(len: usize) -> Self {
        // A zeroed allocation this large is fresh mapped memory, not yet faulted in.
        let lines = vec![Line([0; 64]); Self::lines_for(len)];
        crate::advise_huge_pages(&lines);
        Aligned {
            lines,
            len,
            _values: PhantomData,
        }
    }

    /// A copy of `values`.
    pub fn from_slice(values: &[T]) -> Self {
        let mut out = Self::zeroed(values.len());
        out.copy_from_slice(values);
        out
    }

    /// Appends `values`.
    pub fn extend_from_slice(&mut self, values: &[T]) {
        let old = self.len;
        self.len += values.len();
        crate::resize_on_large_pages(&mut self.lines, Self::lines_for(self.len), || Line([0; 64]));
        self[old..].copy_from_slice(values);
    }

    /// Lines that hold `len` values.
    fn lines_for(len: usize) -> usize {
        len.checked_mul(size_of::<T>())
            .expect("buffer size overflows")
            .div_ceil(64)
    }
}

impl<T> Default for Aligned<T> {
    fn default() -> Self {
        Aligned {
            lines: Vec::new(),
            len: 0,
            _values: PhantomData,
        }
    }
}

impl<T: Pod> Deref for Aligned<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &bytemuck::cast_slice(&self.lines)[..self.len]
    }
}

impl<T: Pod> DerefMut for Aligned<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut bytemuck::cast_slice_mut(&mut self.lines)[..self.len]
    }
}

impl<'a, T: Pod> IntoIterator for &'a Aligned<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for Aligned<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_start_on_a_line_and_grow_with_zeros_past_the_end() {
        let mut b = Aligned::<i16>::zeroed(5);
        assert_eq!(&b[..], &[0; 5]);
        b.extend_from_slice(&[1, 2, 3]);
        assert_eq!(&b[..], &[0, 0, 0, 0, 0, 1, 2, 3]);
        for n in [0usize, 1, 31, 32, 33, 100] {
            b.extend_from_slice(&vec![7; n]);
            assert_eq!(b.as_ptr() as usize % 64, 0);
        }
        assert_eq!(b.len(), 8 + 197);
        let c = Aligned::from_slice(&b[..]);
        assert_eq!(&c[..], &b[..]);
        assert!(Aligned::<u64>::default().is_empty());
    }
}
