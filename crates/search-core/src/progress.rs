//! A tiny progress interface so that engines can report long work without knowing how it is shown.

/// Receives progress from long operations (builds, dataset generation).
///
/// `()` ignores it; the caller that draws (e.g. `cargo xtask`'s progress bars) implements it.
pub trait Progress: Sync {
    /// Announces how many units the operation will take.
    fn set_total(&self, total: u64);
    /// Reports `n` more units done.
    fn advance(&self, n: u64);
    /// True when whoever watches wants the operation stopped (Ctrl-C in Python): long loops
    /// check it now and then and stop early; the operation then fails with
    /// [`crate::Error::Cancelled`]. Never, unless the watcher says so.
    fn cancelled(&self) -> bool {
        false
    }
}

impl Progress for () {
    fn set_total(&self, _total: u64) {}
    fn advance(&self, _n: u64) {}
}
