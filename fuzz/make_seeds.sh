#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with small valid files to start each fuzz target from: our own
# indexes (written by `cargo xtask bench` on a tiny dataset) and the files Python wrote under
# fixtures/. The first byte of hnswlib_file / annoy_file inputs picks space/metric and dimension
# (see those targets), so their seeds get the byte that matches the fixture.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cargo run --quiet --release -p xtask -- bench --distractors 60 --identities 6 --dim 16 \
  --results "$tmp" --quiet >/dev/null
mkdir -p fuzz/corpus/{npy_gallery,linear_index,hnsw_index,forest_index,hnswlib_file,annoy_file}
cp fixtures/notebook_small.npy "$tmp/search_data.npy" fuzz/corpus/npy_gallery/ 2>/dev/null || true
cp "$tmp"/linear-*.idx fuzz/corpus/linear_index/
cp "$tmp"/hnsw-*.idx fuzz/corpus/hnsw_index/
cp "$tmp"/forest-*.idx fixtures/forest/python_angular.ann fuzz/corpus/forest_index/
# hnswlib fixtures are 16-d: first byte 45/46/47 = cosine/ip/l2 at dim 16.
for pair in 45:cosine 46:ip 47:l2; do
  { printf "\\$(printf '%03o' "${pair%%:*}")"; cat "fixtures/hnsw/${pair#*:}.bin"; } > "fuzz/corpus/hnswlib_file/${pair#*:}"
done
# annoy fixtures are 16-d: first byte 30/31 = angular/euclidean at dim 16.
for pair in 30:angular 31:euclidean; do
  { printf "\\$(printf '%03o' "${pair%%:*}")"; cat "fixtures/forest/python_${pair#*:}.ann"; } > "fuzz/corpus/annoy_file/${pair#*:}"
done
ls -l fuzz/corpus/*/ | head -40
