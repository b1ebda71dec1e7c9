#!/usr/bin/env bash
# Makes (once) the project's Python environment for tests and peer benchmarks, and prints the
# path of its python. Idempotent and safe to call from parallel tests (flock).
#   scripts/pyenv.sh            -> numpy, hnswlib, annoy (what the tests need)
#   scripts/pyenv.sh --peers    -> also faiss-cpu, usearch, rabitqlib (SymphonyQG), pyvsag and
#                                  ngt (benchmark peers; glassppy has no installable release)
#   scripts/pyenv.sh --package  -> also maturin, pytest, hypothesis, pandas and ray: what
#                                  building and testing the face_search Python package needs
#                                  (scripts/test-python.sh; ray for face_search.distributed)
# The environment lives in target/pyenv (override with FACE_SEARCH_PYENV). Python packages are
# used only to cross-check file formats and as benchmark peers, never by the Rust crates.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${FACE_SEARCH_PYENV:-$root/target/pyenv}
# Pinned: the versions the tests and the measurements were made with.
packages=(numpy==2.4.6 hnswlib==0.8.0 annoy==1.17.3)
stamp_name=tests
if [[ ${1:-} == --peers ]]; then
  packages+=(faiss-cpu==1.15.1 usearch==2.26.6 rabitqlib==0.7.1 pyvsag==0.18.5 ngt==2.8.0.post1)
  stamp_name=peers
elif [[ ${1:-} == --package ]]; then
  packages+=(maturin==1.15.0 pytest==9.0.3 hypothesis==6.168.3 pandas==2.3.3 ray==2.60.0)
  stamp_name=package
fi
# A new package list makes a new stamp, so an older environment is brought up to date.
stamp_name+=-$(printf '%s\n' "${packages[@]}" | cksum | cut -d' ' -f1)
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
