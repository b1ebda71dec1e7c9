//! Helpers shared by the workspace's tests (a dev-dependency only).
//!
//! - [`workspace`] and [`fixture`]: paths into the repository.
//! - [`python`] and [`run_python`]: the project's Python (numpy, hnswlib, annoy in a virtualenv
//!   made by `scripts/pyenv.sh` on first use), for cross-checks of file formats.
//! - [`stdout_of`]: runs a command that must succeed.
#![deny(missing_docs)]

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// A file under `fixtures/`.
pub fn fixture(relative: &str) -> PathBuf {
    workspace().join("fixtures").join(relative)
}

/// The project's Python, made by `scripts/pyenv.sh` on first use (flock-protected, so parallel
/// tests share one environment). Panics with the script's output when it cannot be made.
pub fn python() -> PathBuf {
    let script = workspace().join("scripts/pyenv.sh");
    let out = stdout_of(Command::new("bash").arg(script), "scripts/pyenv.sh");
    PathBuf::from(out.trim())
}

/// Runs `script` (a path relative to the workspace) with the project's Python and `args`, and
/// returns its standard output. Panics, with its standard error, when it fails.
pub fn run_python<I, S>(script: &str, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    stdout_of(
        Command::new(python())
            .arg(workspace().join(script))
            .args(args),
        script,
    )
}

/// Runs `command` and returns its standard output. Panics, naming it `what` and showing its
/// standard error, when it cannot start or fails.
pub fn stdout_of(command: &mut Command, what: &str) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// CPU seconds (user + system, all threads) this process has used, from Linux's
/// `/proc/self/stat`; NaN where it cannot be read. On a shared machine the wall clock also
/// counts time spent waiting for a core, so benchmarks print this beside it.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    if ticks.len() == 2 {
        // Clock ticks are 100 per second on Linux x86-64.
        ticks.iter().sum::<f64>() / 100.0
    } else {
        f64::NAN
    }
}
