#!/usr/bin/env bash
# Makes (once) the project's Python environment for tests and peer benchmarks, and prints the
# path of its python. Idempotent and safe to call from parallel tests (flock).
#   scripts/pyenv.sh            -> numpy, hnswlib, annoy (what the tests need)
#   scripts/pyenv.sh --peers    -> also faiss-cpu and usearch (benchmark peers)
# The environment lives in target/pyenv (override with FACE_SEARCH_PYENV). Python packages are
# used only to cross-check file formats and as benchmark peers, never by the Rust crates.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${FACE_SEARCH_PYENV:-$root/target/pyenv}
packages=(numpy hnswlib annoy)
stamp_name=tests
if [[ ${1:-} == --peers ]]; then
  packages+=(faiss-cpu usearch)
  stamp_name=peers
fi
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [[ ! -f "$venv/.ready-$stamp_name" ]]; then
  command -v python3 >/dev/null || { echo "python3 is not installed: it is needed to cross-check files with numpy/hnswlib/annoy" >&2; exit 1; }
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${packages[@]}" >&2
  touch "$venv/.ready-$stamp_name"
fi
echo "$venv/bin/python"
