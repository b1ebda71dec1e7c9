#!/usr/bin/env bash
# Runs every fuzz target for RUNS executions (default 1,000,000) from the seeds made by
# make_seeds.sh, and prints libFuzzer's closing line for each. Needs the nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`); the crates themselves stay on stable.
#   fuzz/run_all.sh [RUNS] [TARGET...]
set -uo pipefail
cd "$(dirname "$0")"
runs=${1:-1000000}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(npy_gallery linear_index hnsw_index hnswlib_file forest_index annoy_file)
[[ -d corpus/hnsw_index ]] || ./make_seeds.sh >/dev/null
status=0
for t in "${targets[@]}"; do
  log=$(mktemp)
  # -s none: the loaders are safe Rust over a memory map (plus checked SIMD); without ASan the
  # fuzzer runs ~20x more inputs. -timeout catches endless loops, -rss_limit_mb huge allocations.
  cargo +nightly fuzz run -s none "$t" -- -runs="$runs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1
  code=$?
  echo "$t: exit $code: $(grep -E '^Done [0-9]+ runs' "$log" || tail -n 3 "$log")"
  [[ $code -eq 0 ]] || { status=1; grep -E 'panicked|ERROR|Test unit written' "$log" | head -5; }
  rm -f "$log"
done
exit $status
