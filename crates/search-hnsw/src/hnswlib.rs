//! hnswlib's own index file (`Index.save_index` / `load_index`), read and written.
//!
//! Layout (native byte order, little-endian here), from `hnswalg.h` `saveIndex`/`loadIndex`:
//! a 96-byte header, then `cur_element_count` level-0 records of `size_data_per_element` bytes
//! (u32 list header: count in the low 16 bits, deleted mark in bit 0 of byte 2; `maxM0` u32
//! ids; the vector, `dim` f32; the u64 label), then per element a u32 `linkListSize` and that
//! many bytes of upper-layer lists (`level` blocks of a u32 header + `maxM` u32 ids).
//! The file has no magic, version or metric: the caller names the dimension and the space, and
//! every size is checked against the file's length before anything is allocated.

use std::io::Write;
use std::path::Path;

use search_core::{Error, Result, map_file, write_atomically};

use crate::build::{Graph, MAX_LEVEL};
use crate::index::{HnswIndex, Meta, Owned, Space, round_up};
use search_kernels::Aligned;

const HEADER: usize = 96;
/// hnswlib allocates `max_elements × size_data_per_element` bytes when it loads a file; a
/// capacity needing more than this cannot have come from a real `init_index`, so such a
/// header is treated as corrupt (we never allocate by it ourselves).
const MAX_CAPACITY_BYTES: u128 = 1 << 38;

struct Header {
    max_elements: u64,
    count: u64,
    size_data: u64,
    label_offset: u64,
    offset_data: u64,
    max_level: i32,
    entry: u32,
    max_m: u64,
    max_m0: u64,
    m: u64,
    ef_construction: u64,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

impl HnswIndex {
    /// Opens an index file written by hnswlib (`Index.save_index`) for vectors of `dim`
    /// components in `space` (hnswlib's `"cosine"`, `"ip"` or `"l2"`; the file does not say).
    ///
    /// The graph, vectors, labels and deleted marks are copied into our layout (hnswlib's
    /// interleaved records cannot be searched in place); save it with [`search_core::SearchIndex::save`]
    /// to get a file that loads instantly. Hit ids are hnswlib's labels (which must fit in
    /// u32). The walk uses f32 distances, as hnswlib does, so with the same `ef` (hnswlib's
    /// default after a load is 10, and so is ours here) it returns hnswlib's neighbours.
    /// Scores: cosine and ip give the inner product (hnswlib reports `1 - score` as distance),
    /// l2 gives minus the squared distance (hnswlib reports the squared distance).
    ///
    /// Every header field is checked against the file's length first; a truncated or edited
    /// file is a [`Error::Format`], never a huge allocation.
    pub fn load_hnswlib(path: &Path, dim: usize, space: Space) -> Result<Self> {
        let map = map_file(path)?;
        let b: &[u8] = &map;
        let bad = |m: String| Error::format(path, format!("not a valid hnswlib index: {m}"));
        if dim == 0 {
            return Err(Error::InvalidArgument(
                "dimension must be at least 1".into(),
            ));
        }
        if b.len() < HEADER {
            return Err(bad(format!(
                "{} bytes is shorter than the 96-byte header",
                b.len()
            )));
        }
        let h = Header {
            max_elements: u64_at(b, 8),
            count: u64_at(b, 16),
            size_data: u64_at(b, 24),
            label_offset: u64_at(b, 32),
            offset_data: u64_at(b, 40),
            max_level: u32_at(b, 48) as i32,
            entry: u32_at(b, 52),
            max_m: u64_at(b, 56),
            max_m0: u64_at(b, 64),
            m: u64_at(b, 72),
            ef_construction: u64_at(b, 88),
        };
        if u64_at(b, 0) != 0 {
            return Err(bad(format!("offsetLevel0 is {}, expected 0", u64_at(b, 0))));
        }
        if !(1..=65_535).contains(&h.max_m0) || !(1..=h.max_m0).contains(&h.max_m) || h.m == 0 {
            return Err(bad(format!(
                "impossible link counts: M = {}, maxM = {}, maxM0 = {}",
                h.m, h.max_m, h.max_m0
            )));
        }
        let dim64 = dim as u64;
        let expect_offset_data = 4 + 4 * h.max_m0;
        let expect_label = expect_offset_data + 4 * dim64;
        if h.offset_data != expect_offset_data
            || h.label_offset != expect_label
            || h.size_data != expect_label + 8
        {
            return Err(bad(format!(
                "record layout (size {}, data at {}, label at {}) does not match dim {dim} \
                 with maxM0 {} (expected size {}, data at {expect_offset_data}, label at \
                 {expect_label}): wrong dim?",
                h.size_data,
                h.offset_data,
                h.label_offset,
                h.max_m0,
                expect_label + 8
            )));
        }
        let level0_bytes = u128::from(h.count) * u128::from(h.size_data);
        if level0_bytes > (b.len() - HEADER) as u128 {
            return Err(bad(format!(
                "claims {} elements of {} bytes, more than the file's {} bytes hold",
                h.count,
                h.size_data,
                b.len()
            )));
        }
        if h.max_elements < h.count
            || h.max_elements > u64::from(u32::MAX)
            || u128::from(h.max_elements) * u128::from(h.size_data) > MAX_CAPACITY_BYTES
        {
            return Err(bad(format!(
                "max_elements {} is impossible for {} elements of {} bytes",
                h.max_elements, h.count, h.size_data
            )));
        }
        let n = h.count as usize;
        if n > 0 && (h.entry as usize >= n || !(0..=i32::from(MAX_LEVEL)).contains(&h.max_level)) {
            return Err(bad(format!(
                "entry point {} / top level {} out of range for {n} elements",
                h.entry, h.max_level
            )));
        }
        // Walk the upper-layer sizes: each a whole number of blocks, ending exactly at EOF.
        let (m, m0) = (h.max_m as usize, h.max_m0 as usize);
        let block_bytes = 4 * (m + 1);
        let mut pos = HEADER + n * h.size_data as usize;
        let mut levels = Vec::with_capacity(n);
        let mut upper_off = Vec::with_capacity(n);
        let mut upper_words = 0usize;
        for i in 0..n {
            if pos + 4 > b.len() {
                return Err(bad(format!("truncated in the link lists of element {i}")));
            }
            let size = u32_at(b, pos) as usize;
            pos += 4;
            if !size.is_multiple_of(block_bytes) || size / block_bytes > usize::from(MAX_LEVEL) {
                return Err(bad(format!(
                    "element {i} has {size} bytes of upper links, not a whole number of \
                     {block_bytes}-byte levels (at most {MAX_LEVEL})"
                )));
            }
            if size > b.len() - pos {
                return Err(bad(format!("truncated in the link lists of element {i}")));
            }
            levels.push((size / block_bytes) as u8);
            upper_off.push(u32::try_from(upper_words).map_err(|_| bad("too many links".into()))?);
            upper_words += size / 4;
            pos += size;
        }
        if pos != b.len() {
            return Err(bad(format!(
                "{} bytes left over after the last element",
                b.len() - pos
            )));
        }
        if n > 0 && i32::from(levels[h.entry as usize]) != h.max_level {
            return Err(bad("the entry point is not on the top level".into()));
        }

        // Everything is in bounds: copy into our layout.
        let stride = round_up(dim);
        let mut vectors = Aligned::<f32>::zeroed(n * stride);
        let flat: &mut [f32] = &mut vectors;
        let mut links0 = vec![0u32; n * (m0 + 1)];
        let mut deleted = vec![0u8; n];
        let mut labels = Vec::with_capacity(n);
        let rec_len = h.size_data as usize;
        let records = b[HEADER..HEADER + n * rec_len].chunks_exact(rec_len);
        for (i, rec) in records.enumerate() {
            let head = u32_at(rec, 0);
            let out = &mut links0[i * (m0 + 1)..(i + 1) * (m0 + 1)];
            out[0] = (head & 0xffff).min(m0 as u32);
            for (j, o) in out[1..].iter_mut().enumerate() {
                *o = u32_at(rec, 4 + 4 * j);
            }
            deleted[i] = ((head >> 16) & 1) as u8;
            let row = &mut flat[i * stride..i * stride + dim];
            for (j, x) in row.iter_mut().enumerate() {
                *x = f32::from_le_bytes(
                    rec[expect_offset_data as usize + 4 * j..][..4]
                        .try_into()
                        .expect("4 bytes"),
                );
            }
            if row.iter().any(|x| !x.is_finite()) {
                return Err(bad(format!("element {i} has a NaN or infinite component")));
            }
            let label = u64_at(rec, expect_label as usize);
            labels.push(u32::try_from(label).map_err(|_| {
                bad(format!(
                    "label {label} of element {i} does not fit our u32 ids"
                ))
            })?);
        }
        let mut upper = Vec::with_capacity(upper_words);
        let mut pos = HEADER + n * rec_len;
        for &l in &levels {
            pos += 4;
            let words = usize::from(l) * block_bytes / 4;
            upper.extend((0..words).map(|w| u32_at(b, pos + 4 * w)));
            pos += 4 * words;
        }
        for block in upper.chunks_exact_mut(m + 1) {
            block[0] = (block[0] & 0xffff).min(m as u32);
        }
        let identity = labels.iter().enumerate().all(|(i, &l)| l as usize == i);
        let deleted_count = deleted.iter().filter(|&&d| d != 0).count();
        let meta = Meta {
            dim,
            stride,
            len: n,
            m,
            m0,
            ef_construction: h.ef_construction as usize,
            ef: 10,
            seed: 100,
            space,
            entry: h.entry,
            max_level: (n > 0).then_some(h.max_level as u8),
            deleted: deleted_count,
            code_stride: 0,
            sign_words: 0,
        };
        Ok(HnswIndex::from_parts(
            meta,
            Owned {
                vectors,
                graph: Graph {
                    links0,
                    upper,
                    upper_off,
                    levels,
                    entry: h.entry,
                    max_level: meta.max_level,
                },
                deleted,
                labels: (!identity).then_some(labels),
                codes: None,
                signs: None,
            },
        ))
    }

    /// Writes the index in hnswlib's format, so that Python hnswlib's
    /// `Index(space, dim).load_index(path)` opens it (with the space [`HnswIndex::space`]
    /// names: our own builds are `"cosine"`, and their stored vectors are unit length as
    /// hnswlib's cosine vectors are) and finds the same neighbours. Labels are our ids.
    pub fn save_hnswlib(&self, path: &Path) -> Result<()> {
        let v = self.view();
        let meta = v.meta;
        let (m, m0, dim) = (meta.m as u64, meta.m0 as u64, meta.dim as u64);
        let offset_data = 4 + 4 * m0;
        let label_offset = offset_data + 4 * dim;
        let size_data = label_offset + 8;
        let n = meta.len as u64;
        write_atomically(path, |w| {
            for x in [0, n, n, size_data, label_offset, offset_data] {
                w.write_all(&x.to_le_bytes())?;
            }
            let max_level = meta.max_level.map_or(-1, i32::from);
            w.write_all(&max_level.to_le_bytes())?;
            w.write_all(&meta.entry.to_le_bytes())?;
            for x in [m, m0, m] {
                w.write_all(&x.to_le_bytes())?;
            }
            w.write_all(&(1.0 / (meta.m as f64).ln()).to_le_bytes())?;
            w.write_all(&(meta.ef_construction as u64).to_le_bytes())?;
            for id in 0..meta.len {
                let list = &v.links0[id * (meta.m0 + 1)..(id + 1) * (meta.m0 + 1)];
                let head = list[0].min(meta.m0 as u32) | (u32::from(v.deleted[id] != 0) << 16);
                w.write_all(&head.to_le_bytes())?;
                w.write_all(bytemuck::cast_slice(&list[1..]))?;
                w.write_all(bytemuck::cast_slice(&v.row(id as u32)[..meta.dim]))?;
                w.write_all(&u64::from(v.label(id as u32)).to_le_bytes())?;
            }
            let block = meta.m + 1;
            for id in 0..meta.len {
                let level = usize::from(v.levels[id]);
                let size = (level * block * 4) as u32;
                w.write_all(&size.to_le_bytes())?;
                if level > 0 {
                    let b = v.upper_off[id] as usize;
                    let lists = v.upper.get(b..b + level * block).ok_or_else(|| {
                        std::io::Error::other(format!(
                            "node {id}'s upper links lie outside the index"
                        ))
                    })?;
                    w.write_all(bytemuck::cast_slice(lists))?;
                }
            }
            Ok(())
        })
    }
}
