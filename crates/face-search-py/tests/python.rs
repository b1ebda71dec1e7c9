//! The Python package's tests, run by `cargo test`: `scripts/test-python.sh` builds the wheel
//! with maturin into the project's virtualenv (`target/pyenv`, pinned versions) and runs the
//! pytest suite under `python/tests`. This test fails when the build or any pytest test fails.

use std::process::Command;

#[test]
fn pytest_suite_passes() {
    let script = test_support::workspace().join("scripts/test-python.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg("-q")
        .output()
        .expect("cannot run scripts/test-python.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // pytest's summary, shown by `cargo test -- --nocapture` and on failure.
    println!("{stdout}");
    assert!(
        out.status.success(),
        "scripts/test-python.sh failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(" passed"),
        "pytest ran no test:\n{stdout}\n{stderr}"
    );
    // A skip means something the suite needs (ray, hnswlib, annoy) is missing: in the project's
    // own environment, where scripts/pyenv.sh installs all of it, that is a failure.
    assert!(
        !stdout.contains(" skipped"),
        "pytest skipped tests:\n{stdout}\n{stderr}"
    );
}
