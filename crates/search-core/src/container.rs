//! A small self-describing file layout for our own indexes: a checked header, a table of named
//! sections, and each section 64-byte aligned so that it can be used in place from a memory map.
//!
//! ```text
//! offset 0   magic  b"FACESRCH"
//!        8   kind   8 bytes, e.g. b"linear\0\0"
//!       16   version u32, section count u32
//!       24   per section: name (16 bytes, NUL padded), offset u64, length u64 (bytes)
//!  aligned   section data, each at a multiple of 64
//! ```
//! All integers are little-endian. Opening checks the magic, kind, version, that the table fits,
//! and that every section lies inside the file, is aligned and does not overlap the table.

use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fileio::{map_file, write_atomically};

const MAGIC: &[u8; 8] = b"FACESRCH";
const ALIGN: u64 = 64;
const ENTRY: usize = 32;
const FIXED: usize = 24;
/// More sections than any engine of ours writes; bounds the table on hostile input.
const MAX_SECTIONS: u32 = 64;

/// Writes `sections` (name, bytes) to `path` atomically as a container of `kind` and `version`.
pub fn write_container(
    path: &Path,
    kind: &[u8; 8],
    version: u32,
    sections: &[(&str, &[u8])],
) -> Result<()> {
    let count = u32::try_from(sections.len())
        .ok()
        .filter(|&c| c <= MAX_SECTIONS)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "at most {MAX_SECTIONS} sections, got {}",
                sections.len()
            ))
        })?;
    let mut offset = align_up((FIXED + ENTRY * sections.len()) as u64);
    let mut table = Vec::with_capacity(sections.len());
    for (name, bytes) in sections {
        if name.len() > 16 {
            return Err(Error::InvalidArgument(format!(
                "section name {name:?} is longer than 16 bytes"
            )));
        }
        table.push((name, offset, bytes.len() as u64));
        offset = align_up(offset + bytes.len() as u64);
    }
    write_atomically(path, |w| {
        w.write_all(MAGIC)?;
        w.write_all(kind)?;
        w.write_all(&version.to_le_bytes())?;
        w.write_all(&count.to_le_bytes())?;
        for (name, off, len) in &table {
            let mut padded = [0u8; 16];
            padded[..name.len()].copy_from_slice(name.as_bytes());
            w.write_all(&padded)?;
            w.write_all(&off.to_le_bytes())?;
            w.write_all(&len.to_le_bytes())?;
        }
        let mut pos = (FIXED + ENTRY * sections.len()) as u64;
        for ((_, bytes), (_, off, len)) in sections.iter().zip(&table) {
            pad_to(w, &mut pos, *off)?;
            w.write_all(bytes)?;
            pos += len;
        }
        let end = align_up(pos);
        pad_to(w, &mut pos, end)
    })
}

fn align_up(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
}

fn pad_to(w: &mut impl Write, pos: &mut u64, target: u64) -> std::io::Result<()> {
    const ZEROS: [u8; ALIGN as usize] = [0; ALIGN as usize];
    while *pos < target {
        let n = ((target - *pos) as usize).min(ZEROS.len());
        w.write_all(&ZEROS[..n])?;
        *pos += n as u64;
    }
    Ok(())
}

/// An opened, validated container file, memory-mapped.
#[derive(Debug)]
pub struct Container {
    path: PathBuf,
    map: memmap2::Mmap,
    sections: Vec<(String, Range<usize>)>,
    version: u32,
}

impl Container {
    /// Opens `path`, checking that it is a container of `kind` with a version in `versions`.
    pub fn open(
        path: &Path,
        kind: &[u8; 8],
        versions: std::ops::RangeInclusive<u32>,
    ) -> Result<Self> {
        let map = map_file(path)?;
        Self::parse(path, map, kind, versions)
    }

    fn parse(
        path: &Path,
        map: memmap2::Mmap,
        kind: &[u8; 8],
        versions: std::ops::RangeInclusive<u32>,
    ) -> Result<Self> {
        let bad = |m: String| Error::format(path, m);
        let bytes: &[u8] = &map;
        if bytes.len() < FIXED || &bytes[..8] != MAGIC {
            return Err(bad(format!(
                "not an index file of ours (no {:?} magic at the start of its {} bytes)",
                String::from_utf8_lossy(MAGIC),
                bytes.len()
            )));
        }
        if &bytes[8..16] != kind {
            return Err(bad(format!(
                "holds a {:?} index, expected a {:?} index",
                String::from_utf8_lossy(&bytes[8..16]).trim_end_matches('\0'),
                String::from_utf8_lossy(kind).trim_end_matches('\0')
            )));
        }
        let version = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
        if !versions.contains(&version) {
            return Err(bad(format!(
                "format version {version} is not supported (this build reads {}..={})",
                versions.start(),
                versions.end()
            )));
        }
        let count = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
        if count > MAX_SECTIONS {
            return Err(bad(format!(
                "claims {count} sections, at most {MAX_SECTIONS} are allowed"
            )));
        }
        let table_end = FIXED + ENTRY * count as usize;
        if bytes.len() < table_end {
            return Err(bad(format!(
                "truncated: its section table needs {table_end} bytes, the file has {}",
                bytes.len()
            )));
        }
        let mut sections = Vec::with_capacity(count as usize);
        for i in 0..count as usize {
            let e = &bytes[FIXED + ENTRY * i..FIXED + ENTRY * (i + 1)];
            let name_bytes = &e[..16];
            let name_len = name_bytes.iter().position(|&b| b == 0).unwrap_or(16);
            let name = std::str::from_utf8(&name_bytes[..name_len])
                .map_err(|_| bad(format!("section {i} has a name that is not UTF-8")))?
                .to_owned();
            let off = u64::from_le_bytes(e[16..24].try_into().expect("8 bytes"));
            let len = u64::from_le_bytes(e[24..32].try_into().expect("8 bytes"));
            let end = off.checked_add(len).filter(|&end| end <= bytes.len() as u64).ok_or_else(|| {
                bad(format!(
                    "section {name:?} spans bytes {off}..{off}+{len}, beyond the file's {} bytes (truncated?)",
                    bytes.len()
                ))
            })?;
            if off % ALIGN != 0 || off < table_end as u64 {
                return Err(bad(format!(
                    "section {name:?} starts at {off}, which is misaligned or inside the header"
                )));
            }
            sections.push((name, off as usize..end as usize));
        }
        Ok(Container {
            path: path.to_owned(),
            map,
            sections,
            version,
        })
    }

    /// Advises the kernel to read the sections named in `hot` ahead as `mode` says, and the
    /// rest at random; see [`crate::warm`].
    pub fn warm(&self, hot: &[(&str, crate::Access)], mode: crate::Warmup) {
        let ranges: Vec<(Range<usize>, crate::Access)> = self
            .sections
            .iter()
            .filter_map(|(n, r)| {
                hot.iter()
                    .find(|(h, _)| h == n)
                    .map(|(_, a)| (r.clone(), *a))
            })
            .collect();
        crate::warm(&self.map, &ranges, mode);
    }

    /// The file this container was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format version found in the file.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The bytes of section `name`; an error names the missing section.
    pub fn section(&self, name: &str) -> Result<&[u8]> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| &self.map[r.clone()])
            .ok_or_else(|| Error::format(&self.path, format!("has no {name:?} section")))
    }

    /// Section `name` viewed as a slice of `T`, which must divide it exactly.
    pub fn section_as<T: bytemuck::Pod>(&self, name: &str) -> Result<&[T]> {
        let bytes = self.section(name)?;
        bytemuck::try_cast_slice(bytes).map_err(|e| {
            Error::format(
                &self.path,
                format!(
                    "section {name:?} ({} bytes) is not an array of {}: {e}",
                    bytes.len(),
                    std::any::type_name::<T>()
                ),
            )
        })
    }

    /// Section `name` as a slice of exactly `expected` values of `T`.
    pub fn section_exact<T: bytemuck::Pod>(&self, name: &str, expected: usize) -> Result<&[T]> {
        let s = self.section_as::<T>(name)?;
        if s.len() != expected {
            return Err(Error::format(
                &self.path,
                format!(
                    "section {name:?} holds {} values, expected {expected}",
                    s.len()
                ),
            ));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_truncation_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.bin");
        let a: Vec<f32> = (0..100).map(|i| i as f32).collect();
        let b = [1u8, 2, 3];
        write_container(
            &path,
            b"test\0\0\0\0",
            3,
            &[("a", bytemuck::cast_slice(&a)), ("b", &b)],
        )
        .unwrap();
        let c = Container::open(&path, b"test\0\0\0\0", 1..=3).unwrap();
        assert_eq!(c.section_as::<f32>("a").unwrap(), &a[..]);
        assert_eq!(c.section("b").unwrap(), &b);
        assert!(c.section("zzz").is_err());
        assert!(c.section_exact::<f32>("a", 99).is_err());
        assert!(Container::open(&path, b"other\0\0\0", 1..=3).is_err());
        assert!(Container::open(&path, b"test\0\0\0\0", 4..=4).is_err());

        let full = std::fs::read(&path).unwrap();
        let cut = dir.path().join("cut.bin");
        // Table ends at 88 -> "a" at 128..528 -> "b" at 576..579.
        let sections_end = 579;
        for len in 0..full.len() {
            std::fs::write(&cut, &full[..len]).unwrap();
            let opened = Container::open(&cut, b"test\0\0\0\0", 1..=3);
            if len < sections_end {
                assert!(opened.is_err(), "a file cut to {len} bytes opened");
            }
        }
    }
}
