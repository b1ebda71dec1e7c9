//! Large pages for the buffers a graph walk reads at random.

/// Asks the kernel to back `buf` with 2 MB pages (Linux transparent huge pages) where it faults
/// the pages in from now on. Call it on memory not yet written: a zeroed allocation
/// (`vec![0; n]`, [`crate::Aligned::zeroed`]) or a vector's spare capacity.
///
/// A walk over a large gallery reads rows, codes and neighbour lists at random; with 4 KB
/// pages nearly every such read also misses the TLB and walks the page tables. On the 2-core
/// development host, independent random reads of a 1 GB buffer took 28 ns each with 4 KB
/// pages and 17 ns with 2 MB pages; of a 128 MB buffer, 16 and 15 ns. Hosts whose
/// `/sys/kernel/mm/transparent_hugepage/enabled` is `madvise` (a common default) give large
/// pages only to memory advised so; `always` gives them anyway, `never` not at all.
///
/// Only the whole 2 MB extents inside `buf` can be large, so buffers under 4 MB are left
/// alone. Best effort: elsewhere than Linux, or when the kernel refuses, nothing changes.
///
/// ```
/// let mut v: Vec<u32> = Vec::with_capacity(4 << 20);
/// search_kernels::advise_huge_pages(v.spare_capacity_mut());
/// v.resize(4 << 20, 7);
/// assert_eq!(v[12345], 7);
/// ```
pub fn advise_huge_pages<T>(buf: &[T]) {
    const PAGE: usize = 4096;
    let bytes = std::mem::size_of_val(buf);
    if bytes < 4 << 20 {
        return;
    }
    let start = (buf.as_ptr() as usize).next_multiple_of(PAGE);
    let end = (buf.as_ptr() as usize + bytes) / PAGE * PAGE;
    #[cfg(target_os = "linux")]
    // SAFETY: `start..end` lies inside `buf`, memory this process owns; MADV_HUGEPAGE changes
    // only the size of the pages behind it, never their contents.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (start, end);
}

/// Resizes `v` to `len`, new elements made by `fill`. When that needs a new allocation, the
/// whole of it is advised onto large pages ([`advise_huge_pages`]) before the new elements are
/// written: the part the old elements were copied into too (the kernel merges those pages
/// later). For buffers that grow and are read at random.
///
/// ```
/// let mut v: Vec<f32> = Vec::new();
/// search_kernels::resize_on_large_pages(&mut v, 2 << 20, || 0.5);
/// search_kernels::resize_on_large_pages(&mut v, 3 << 20, || 1.5);
/// assert_eq!((v.len(), v[12345], v[5 << 19]), (3 << 20, 0.5, 1.5));
/// ```
pub fn resize_on_large_pages<T>(v: &mut Vec<T>, len: usize, fill: impl FnMut() -> T) {
    if len > v.capacity() {
        v.reserve(len - v.len());
        advise_huge_pages(v);
        advise_huge_pages(v.spare_capacity_mut());
    }
    v.resize_with(len, fill);
}
