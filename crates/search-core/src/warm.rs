//! How an index opened from a file gets its pages into memory.
//!
//! Our indexes are memory-mapped: opening one reads almost nothing, and every page a query
//! touches is read from disk the first time. A query touches few pages of some parts (the f32
//! rows it re-ranks) and pages all over others (the graph's links, the compact codes, the
//! trees' split nodes): faulting those in one by one from a cold file is many times slower
//! than reading them in one sweep. So an engine names its *hot* byte ranges, and [`warm`]
//! asks the kernel to read them ahead, as [`Warmup`] says, while the rest is marked as read
//! at random (no read-around of megabytes for each 2 KB row).

use std::ops::Range;

use memmap2::{Advice, Mmap};

/// How an index opened from a file brings the parts its searches read into memory.
///
/// ```
/// use search_core::Warmup;
/// assert_eq!(Warmup::default(), Warmup::Auto);
/// assert_eq!("eager".parse::<Warmup>(), Ok(Warmup::Eager));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Warmup {
    /// Read nothing ahead: each page is read when a query first touches it. Opening costs
    /// microseconds; the first queries on a cold file pay a disk read per page they touch.
    Lazy,
    /// Ask the kernel to read the hot parts (graph, codes, tree nodes) in the background and
    /// return at once: the first query runs while they arrive.
    Background,
    /// Read the hot parts in before returning: opening takes about as long as reading them,
    /// and then every query runs at full speed.
    Eager,
    /// [`Warmup::Eager`] when most of the hot parts are not in memory (a cold file: one
    /// sequential read of them gives the first answer sooner than the query's page faults
    /// racing the read-ahead), [`Warmup::Background`] otherwise (a warm file opens in
    /// microseconds). The default.
    #[default]
    Auto,
}

impl std::str::FromStr for Warmup {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lazy" => Ok(Warmup::Lazy),
            "background" => Ok(Warmup::Background),
            "eager" => Ok(Warmup::Eager),
            "auto" => Ok(Warmup::Auto),
            _ => Err(format!(
                "unknown warm-up {s:?}: expected auto, lazy, background or eager"
            )),
        }
    }
}

impl std::fmt::Display for Warmup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Warmup::Lazy => "lazy",
            Warmup::Background => "background",
            Warmup::Eager => "eager",
            Warmup::Auto => "auto",
        })
    }
}

/// How a search reads a hot range of an index file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// From start to end (an exact scan over int8 codes).
    Scan,
    /// Here and there (a graph's links, codes looked up by id, tree nodes).
    Random,
}

/// Advises the kernel about `map`: the byte ranges in `hot` are read ahead as `mode` says,
/// everything else is marked as read at random. Advice only: a kernel that refuses some of it
/// (an old one without `MADV_POPULATE_READ`, say) still gives correct reads, so failures are
/// ignored, except that [`Warmup::Eager`] then touches every hot page itself.
///
/// With [`Warmup::Background`] a query runs while the read-ahead streams in, and faults on the
/// pages that have not arrived yet: in a [`Access::Random`] range such a fault reads its own
/// page only (the kernel's default read-around would fetch megabytes the read-ahead is
/// fetching anyway); in a [`Access::Scan`] range the scan's faults read ahead too.
pub fn warm(map: &Mmap, hot: &[(Range<usize>, Access)], mode: Warmup) {
    let page = page_size();
    let len = map.len();
    if len == 0 {
        return;
    }
    // Whole pages only: a page shared by a hot and a cold range counts as hot. Ranges past the
    // end of the map are ignored.
    let mut pages: Vec<(Range<usize>, Access)> = hot
        .iter()
        .filter(|(r, _)| r.start < r.end && r.start < len)
        .map(|(r, a)| {
            (
                r.start / page * page..r.end.min(len).div_ceil(page) * page,
                *a,
            )
        })
        .collect();
    pages.sort_by_key(|(r, _)| r.start);
    let _ = map.advise(Advice::Random);
    let mode = match mode {
        Warmup::Auto if mostly_resident(map, &pages, page) => Warmup::Background,
        Warmup::Auto => Warmup::Eager,
        other => other,
    };
    if mode == Warmup::Lazy {
        return;
    }
    for (r, access) in &pages {
        let r = r.start..r.end.min(len);
        match mode {
            Warmup::Lazy | Warmup::Auto => {}
            Warmup::Background => {
                if *access == Access::Scan {
                    let _ = map.advise_range(Advice::Sequential, r.start, r.len());
                }
                let _ = map.advise_range(Advice::WillNeed, r.start, r.len());
            }
            Warmup::Eager => {
                let _ = map.advise_range(Advice::Sequential, r.start, r.len());
                if !populate(map, r.clone()) {
                    touch(&map[r.clone()], page);
                }
                let _ = map.advise_range(Advice::Normal, r.start, r.len());
            }
        }
    }
}

/// Asks the kernel to start reading the pages of `ranges` (sorted by start) of `map`, all at
/// once (`MADV_WILLNEED`), so that the disk serves them in parallel instead of one page fault
/// after another: for a query about to read rows scattered over a cold file. Advice only.
pub fn read_ahead(map: &Mmap, ranges: &[Range<usize>]) {
    let page = page_size();
    let mut current: Option<Range<usize>> = None;
    let flush = |r: Range<usize>| {
        let _ = map.advise_range(Advice::WillNeed, r.start, r.end.min(map.len()) - r.start);
    };
    for r in ranges
        .iter()
        .filter(|r| r.start < r.end && r.start < map.len())
    {
        let pages = r.start / page * page..r.end.div_ceil(page) * page;
        current = match current {
            Some(c) if pages.start <= c.end => Some(c.start..c.end.max(pages.end)),
            Some(c) => {
                flush(c);
                Some(pages)
            }
            None => Some(pages),
        };
    }
    if let Some(c) = current {
        flush(c);
    }
}

/// Pages [`mostly_resident`] asks about: asking about every page of a large index costs
/// milliseconds (about 40 ns a page), a sample of them a few microseconds each.
const RESIDENCY_SAMPLES: usize = 128;

/// Whether at least 90% of a sample of the pages of `ranges` (page-aligned) are in memory.
/// Unknown (`mincore` refused, not Linux) counts as resident, so that opening never reads
/// eagerly by mistake on a platform that cannot tell.
#[cfg(target_os = "linux")]
fn mostly_resident(map: &Mmap, ranges: &[(Range<usize>, Access)], page: usize) -> bool {
    let spans: Vec<Range<usize>> = ranges
        .iter()
        .map(|(r, _)| r.start..r.end.min(map.len()))
        .filter(|r| r.start < r.end)
        .collect();
    let pages: usize = spans.iter().map(|r| r.len().div_ceil(page)).sum();
    if pages == 0 {
        return true;
    }
    let step = pages.div_ceil(RESIDENCY_SAMPLES);
    let (mut asked, mut resident) = (0usize, 0usize);
    let mut skip = 0;
    for r in &spans {
        let mut offset = r.start + skip * page;
        while offset < r.end {
            let mut flag = 0u8;
            // SAFETY: `offset` is a page-aligned offset inside the live mapping, one page of it
            // is mapped (or fewer bytes at the end, which mincore rounds to the page), and
            // `flag` holds the one byte its answer needs.
            let rc = unsafe {
                libc::mincore(
                    map.as_ptr().add(offset) as *mut libc::c_void,
                    page.min(r.end - offset),
                    &mut flag,
                )
            };
            if rc != 0 {
                return true;
            }
            asked += 1;
            resident += usize::from(flag & 1 == 1);
            offset += step * page;
        }
        skip = (offset - r.end).div_ceil(page);
    }
    resident * 10 >= asked * 9
}

#[cfg(not(target_os = "linux"))]
fn mostly_resident(_: &Mmap, _: &[(Range<usize>, Access)], _: usize) -> bool {
    true
}

/// Reads the pages of `r` in with `MADV_POPULATE_READ` (Linux 5.14 on); false if refused.
#[cfg(target_os = "linux")]
fn populate(map: &Mmap, r: Range<usize>) -> bool {
    map.advise_range(Advice::PopulateRead, r.start, r.len())
        .is_ok()
}

#[cfg(not(target_os = "linux"))]
fn populate(_: &Mmap, _: Range<usize>) -> bool {
    false
}

/// Reads one byte of every page of `bytes`.
fn touch(bytes: &[u8], page: usize) {
    let mut sum = 0u8;
    for b in bytes.iter().step_by(page) {
        sum = sum.wrapping_add(*b);
    }
    std::hint::black_box(sum);
}

#[cfg(unix)]
fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .unwrap_or(4096)
}

#[cfg(not(unix))]
fn page_size() -> usize {
    4096
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn every_mode_leaves_the_bytes_readable_and_unchanged() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        file.write_all(&data).unwrap();
        for mode in [
            Warmup::Lazy,
            Warmup::Background,
            Warmup::Eager,
            Warmup::Auto,
        ] {
            let map = crate::map_file(file.path()).unwrap();
            let hot = [
                (100..9_000, Access::Scan),
                (20_000..49_999, Access::Random),
                (60_000..70_000, Access::Random),
            ];
            warm(&map, &hot, mode);
            assert_eq!(&map[..], &data[..], "{mode}");
        }
    }

    /// `Auto` must tell a file in memory from one that is not: the choice between opening in
    /// microseconds and reading the hot parts first rests on it.
    #[cfg(target_os = "linux")]
    #[test]
    fn residency_tells_a_warm_file_from_an_evicted_one() {
        use std::os::fd::AsRawFd;
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&vec![3u8; 64 * page_size()]).unwrap();
        file.as_file().sync_all().unwrap();
        let whole = [(0..64 * page_size(), Access::Random)];
        let map = crate::map_file(file.path()).unwrap();
        touch(&map, page_size());
        assert!(mostly_resident(&map, &whole, page_size()));
        drop(map);
        // SAFETY: a valid open descriptor; the advice has no memory-safety effect.
        let rc = unsafe {
            libc::posix_fadvise(file.as_file().as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED)
        };
        assert_eq!(rc, 0);
        let map = crate::map_file(file.path()).unwrap();
        // tmpfs keeps its pages whatever the advice: only a real disk file can be evicted.
        let evicted = !mostly_resident(&map, &whole, page_size());
        // SAFETY: a zeroed statfs is a valid output buffer for fstatfs on a valid descriptor.
        let on_tmpfs = unsafe {
            let mut st: libc::statfs = std::mem::zeroed();
            libc::fstatfs(file.as_file().as_raw_fd(), &mut st) == 0
                && st.f_type == libc::TMPFS_MAGIC
        };
        assert!(evicted || on_tmpfs, "an evicted file counted as resident");
        warm(&map, &whole, Warmup::Auto);
        assert!(
            mostly_resident(&map, &whole, page_size()),
            "auto read it in"
        );
    }

    #[test]
    fn read_ahead_takes_any_ranges() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&[7u8; 30_000]).unwrap();
        let map = crate::map_file(file.path()).unwrap();
        read_ahead(
            &map,
            &[0..10, 5..5000, 9000..9100, 29_990..40_000, 50_000..60_000],
        );
        assert!(map.iter().all(|&b| b == 7));
    }

    #[test]
    fn names_parse_back() {
        for mode in [
            Warmup::Lazy,
            Warmup::Background,
            Warmup::Eager,
            Warmup::Auto,
        ] {
            assert_eq!(mode.to_string().parse::<Warmup>(), Ok(mode));
        }
        assert!("soon".parse::<Warmup>().unwrap_err().contains("lazy"));
    }
}
