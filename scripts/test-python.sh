#!/usr/bin/env bash
# Builds the face_search Python package (crates/face-search-py) with maturin, installs the
# wheel into the project's virtualenv (scripts/pyenv.sh --package: pinned numpy, hnswlib,
# annoy, maturin, pytest, hypothesis, pandas) and runs its pytest suite; extra arguments go
# to pytest (or --install-only: build and install, print the python, run nothing).
# `cargo test --workspace` runs this (crates/face-search-py/tests/python.rs).
#
# The wheel is built in its own target directory (target/python) so that it never waits for
# the lock of the cargo that runs the tests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=$(bash "$root/scripts/pyenv.sh" --package)
crate=$root/crates/face-search-py
export CARGO_TARGET_DIR=${FACE_SEARCH_PY_TARGET:-$root/target/python}
wheels=$CARGO_TARGET_DIR/wheels
# One build at a time: parallel test binaries may call this script.
mkdir -p "$wheels"
exec 8>"$CARGO_TARGET_DIR/test-python.lock"
flock 8
rm -f "$wheels"/face_search-*.whl
"$python" -m maturin build --release --manifest-path "$crate/Cargo.toml" \
  --interpreter "$python" --out "$wheels" >&2
"$python" -m pip install --quiet --force-reinstall --no-deps "$wheels"/face_search-*.whl >&2
if [[ ${1:-} == --install-only ]]; then
  # For `cargo xtask distributed`: the package installed, its python printed, no tests.
  echo "$python"
  exit 0
fi
cd "$crate"
exec "$python" -m pytest -p no:cacheprovider "$@"
