#!/usr/bin/env bash
# Side-by-side benchmark of search-linear and faiss IndexFlatIP on the same data, in one run.
#   scripts/bench_linear.sh [--distractors N] [--rounds R] [--repeats P] [--k K] [--tau T]
#                           [--single-queries S]   (time single queries on the first S of 200)
# Makes (once) the data and our index in target/bench-linear-N, the Python venv with faiss
# (scripts/pyenv.sh --peers), then alternates R rounds of ours and faiss's (each round runs
# every query P times and reports medians), and prints medians, ratios and bytes per second.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
distractors=100000 rounds=3 repeats=3 k=10 tau=0.35 single=200
while [[ $# -gt 0 ]]; do
  case $1 in
    --distractors) distractors=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --k) k=$2; shift 2 ;;
    --tau) tau=$2; shift 2 ;;
    --single-queries) single=$2; shift 2 ;;
    -h|--help) sed -n 2,7p "$0"; exit 0 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
dir=$root/target/bench-linear-$distractors
mkdir -p "$dir"
python=$("$root/scripts/pyenv.sh" --peers)
(cd "$root" && cargo build --release -q -p search-linear --example bench_linear)
bin=$root/target/release/examples/bench_linear
: >"$dir/rust.jsonl"; : >"$dir/faiss.jsonl"
for ((r = 1; r <= rounds; r++)); do
  echo "round $r/$rounds: search-linear" >&2
  "$bin" --dir "$dir" --distractors "$distractors" --repeats "$repeats" --k "$k" --tau "$tau" --single-queries "$single" >>"$dir/rust.jsonl"
  echo "round $r/$rounds: faiss" >&2
  "$python" "$root/scripts/bench_linear.py" faiss "$dir" --repeats "$repeats" --k "$k" --tau "$tau" --single-queries "$single" >>"$dir/faiss.jsonl"
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load average $(cut -d' ' -f1-3 /proc/loadavg) (shared with other work)"
"$python" "$root/scripts/bench_linear.py" report "$dir/rust.jsonl" "$dir/faiss.jsonl"
