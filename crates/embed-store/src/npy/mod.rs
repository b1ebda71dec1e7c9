//! The notebook's gallery file: numpy `.npy` arrays written back to back in one file.
//!
//! The notebook saves its gallery with two `np.save` calls on one open file: first the
//! vectors as a float64 `(n, d)` array, then the labels as a numpy unicode array (`<U..`).
//! [`read_gallery`] reads such a file (float32 or float64, any label width), [`write_gallery`]
//! writes one that `np.load`, called twice on one open file, reads back.
//!
//! Files are written with `npyz`. They are read with a strict header parser of our own (see
//! `header.rs` for why not `npyz`'s), and every size a header claims is checked against the
//! file's length before anything is allocated, so a truncated or hostile file gives an
//! [`Error::Format`], quickly.
//!
//! ```
//! use embed_store::{npy, Gallery, Vectors};
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("search_data.npy");
//! let g = Gallery::new(Vectors::new(2, vec![1.0, 2.0, 3.0, 4.0])?, vec!["a_1".into(), "b_1".into()])?;
//! npy::write_gallery(&path, &g)?;
//! assert_eq!(npy::read_gallery(&path)?, g);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{Cursor, Write};
use std::path::Path;

use npyz::{DType, WriterBuilder};
use rayon::prelude::*;

use crate::gallery::Gallery;
use search_core::Vectors;
use search_core::{Error, Result};
use search_core::{map_file, write_atomically};

mod header;

use header::{ByteOrder, Kind};

/// Reads a gallery file in the notebook's layout: vectors `(n, d)` then `n` labels.
pub fn read_gallery(path: &Path) -> Result<Gallery> {
    let (vectors, labels) = read_vectors_and_labels(path)?;
    let Some(labels) = labels else {
        return Err(Error::format(
            path,
            format!(
                "holds {} vectors but no label array after them (pass the labels separately)",
                vectors.len()
            ),
        ));
    };
    Gallery::new(vectors, labels)
}

/// Reads the vectors of a `.npy` file and, when the file goes on with a second array, its
/// labels (the notebook's layout); `None` when the file holds the vectors alone.
pub fn read_vectors_and_labels(path: &Path) -> Result<(Vectors, Option<Vec<String>>)> {
    let map = map_file(path)?;
    let mut cursor = Cursor::new(&map[..]);
    let vectors = read_vectors_at(path, &mut cursor)?;
    if cursor.position() as usize == map.len() {
        return Ok((vectors, None));
    }
    let labels = read_labels_at(path, &mut cursor)?;
    if labels.len() != vectors.len() {
        return Err(Error::format(
            path,
            format!(
                "holds {} vectors but {} labels",
                vectors.len(),
                labels.len()
            ),
        ));
    }
    Ok((vectors, Some(labels)))
}

/// Reads only the first array of a `.npy` file: float32 or float64 vectors of shape `(n, d)`.
pub fn read_vectors(path: &Path) -> Result<Vectors> {
    let map = map_file(path)?;
    read_vectors_at(path, &mut Cursor::new(&map[..]))
}

/// Reads a `.npy` file holding one 1-D array of strings (`<U..` or `|S..`).
pub fn read_labels(path: &Path) -> Result<Vec<String>> {
    let map = map_file(path)?;
    read_labels_at(path, &mut Cursor::new(&map[..]))
}

/// Writes `gallery` in the notebook's layout: float64 `(n, d)` vectors, then `<U{w}` labels.
/// The write is atomic: on failure the previous file is untouched.
pub fn write_gallery(path: &Path, gallery: &Gallery) -> Result<()> {
    let (n, d) = (gallery.len() as u64, gallery.dim() as u64);
    let width = gallery
        .labels()
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        .max(1);
    let label_dtype = DType::Plain(format!("<U{width}").parse().expect("valid type string"));
    write_atomically(path, |w| {
        let mut vectors = npyz::WriteOptions::<f64>::new()
            .default_dtype()
            .shape(&[n, d])
            .writer(&mut *w)
            .begin_nd()?;
        vectors.extend(gallery.vectors().as_slice().iter().map(|&x| f64::from(x)))?;
        vectors.finish()?;
        let mut labels = npyz::WriteOptions::<str>::new()
            .dtype(label_dtype)
            .shape(&[n])
            .writer(&mut *w)
            .begin_nd()?;
        for label in gallery.labels() {
            labels.push(label.as_str())?;
        }
        labels.finish()?;
        w.flush()
    })
}

/// The header of the array at the cursor, with its data's byte range checked against the file.
struct ArrayAt {
    header: header::Header,
    data_start: usize,
    data_len: usize,
}

fn read_header(path: &Path, cursor: &mut Cursor<&[u8]>) -> Result<ArrayAt> {
    let start = cursor.position() as usize;
    let bytes = *cursor.get_ref();
    let header = header::parse(&bytes[start..])
        .map_err(|m| Error::format(path, format!("array at byte {start}: {m}")))?;
    let data_start = start + header.data_offset;
    let data_len = header
        .shape
        .iter()
        .try_fold(header.item_bytes, |acc, &s| acc.checked_mul(s))
        .filter(|&len| len <= (bytes.len() - data_start) as u64)
        .ok_or_else(|| {
            Error::format(
                path,
                format!(
                    "truncated: the array at byte {start} has shape {:?} of {} but only {} bytes follow its header",
                    header.shape,
                    header.descr,
                    bytes.len() - data_start
                ),
            )
        })? as usize;
    if header.fortran_order && header.shape.len() > 1 {
        return Err(Error::format(
            path,
            "array is in Fortran order; save it with np.ascontiguousarray(...) first",
        ));
    }
    cursor.set_position((data_start + data_len) as u64);
    Ok(ArrayAt {
        header,
        data_start,
        data_len,
    })
}

fn read_vectors_at(path: &Path, cursor: &mut Cursor<&[u8]>) -> Result<Vectors> {
    let ArrayAt {
        header,
        data_start,
        data_len,
    } = read_header(path, cursor)?;
    let &[_, d] = header.shape.as_slice() else {
        return Err(Error::format(
            path,
            format!(
                "vectors must be a 2-D array (n, d), found shape {:?}",
                header.shape
            ),
        ));
    };
    if d == 0 {
        return Err(Error::format(path, "vectors have 0 dimensions"));
    }
    if header.kind != Kind::Float {
        return Err(Error::format(
            path,
            format!(
                "vectors must be float32 or float64, found dtype {}",
                header.descr
            ),
        ));
    }
    let little = header.order == ByteOrder::Little;
    let raw = &cursor.get_ref()[data_start..data_start + data_len];
    let data = match header.item_bytes {
        8 => decode::<8>(raw, |b| {
            (if little {
                f64::from_le_bytes(b)
            } else {
                f64::from_be_bytes(b)
            }) as f32
        }),
        _ => decode::<4>(raw, |b| {
            if little {
                f32::from_le_bytes(b)
            } else {
                f32::from_be_bytes(b)
            }
        }),
    };
    Vectors::new(d as usize, data)
}

/// Converts `raw` (whole items of `N` bytes) with `f`, on all cores when there is enough of it
/// to pay for handing work to the thread pool.
fn decode<const N: usize>(raw: &[u8], f: impl Fn([u8; N]) -> f32 + Sync) -> Vec<f32> {
    const PARALLEL_BYTES: usize = 1 << 20;
    let item = |b: &[u8]| f(b.try_into().expect("chunks of N bytes"));
    if raw.len() < PARALLEL_BYTES {
        raw.chunks_exact(N).map(item).collect()
    } else {
        raw.par_chunks_exact(N).map(item).collect()
    }
}

fn read_labels_at(path: &Path, cursor: &mut Cursor<&[u8]>) -> Result<Vec<String>> {
    let start = cursor.position() as usize;
    let ArrayAt {
        header,
        data_start,
        data_len,
    } = read_header(path, cursor)?;
    if header.shape.len() != 1 {
        return Err(Error::format(
            path,
            format!("labels must be a 1-D array, found shape {:?}", header.shape),
        ));
    }
    let raw = &cursor.get_ref()[data_start..data_start + data_len];
    let bad = |row: usize, what: &str| {
        Error::format(
            path,
            format!("label {row} of the array at byte {start} {what}"),
        )
    };
    let width = header.item_bytes as usize;
    if width == 0 {
        // numpy writes at least one character per item; zero-width items would make every
        // count "fit" in zero bytes.
        return Err(Error::format(
            path,
            format!("labels at byte {start} have zero width ({})", header.descr),
        ));
    }
    let order = header.order;
    raw.chunks_exact(width)
        .enumerate()
        .map(|(row, item)| match header.kind {
            Kind::Unicode => item
                .chunks_exact(4)
                .map(|c| {
                    let c: [u8; 4] = c.try_into().expect("4 bytes");
                    if order == ByteOrder::Little {
                        u32::from_le_bytes(c)
                    } else {
                        u32::from_be_bytes(c)
                    }
                })
                .take_while(|&u| u != 0)
                .map(|u| char::from_u32(u).ok_or_else(|| bad(row, "is not valid UTF-32")))
                .collect(),
            Kind::Bytes => {
                let end = item.iter().position(|&b| b == 0).unwrap_or(item.len());
                String::from_utf8(item[..end].to_vec()).map_err(|_| bad(row, "is not UTF-8"))
            }
            Kind::Float => Err(Error::format(
                path,
                format!(
                    "labels must be strings (<U.. or |S..), found dtype {}",
                    header.descr
                ),
            )),
        })
        .collect()
}
