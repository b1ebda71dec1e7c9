//! Peak resident memory of this process, from Linux's `/proc/self/status`.
//!
//! [`reset_peak`] writes `5` to `/proc/self/clear_refs`, which sets the kernel's high-water mark
//! (`VmHWM`) back to the current resident size; [`peak_bytes`] reads `VmHWM`. Reset before an
//! engine's phase and read after it, the peak covers that phase alone, on top of what the
//! process already held (the gallery, the queries and the exact answers: see
//! [`current_bytes`] taken at the reset). Mapped index files count once their pages are
//! touched. On other systems both return `None`.

/// Resets the process's peak resident size to its current size; false when the system does
/// not allow it (not Linux, or `/proc` not mounted).
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The process's peak resident size in bytes since start or the last [`reset_peak`].
pub fn peak_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|kib| kib * 1024)
}

/// The process's current resident size in bytes.
pub fn current_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|kib| kib * 1024)
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_follows_an_allocation_and_resets() {
        if !reset_peak() {
            return; // not Linux
        }
        let before = peak_bytes().unwrap();
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        let during = peak_bytes().unwrap();
        assert!(during >= before + (60 << 20), "{before} -> {during}");
        drop(big);
        assert!(reset_peak());
        assert!(
            peak_bytes().unwrap() < during,
            "reset did not lower the peak"
        );
        assert!(current_bytes().unwrap() > 0);
    }
}
