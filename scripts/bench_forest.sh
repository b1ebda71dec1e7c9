#!/usr/bin/env bash
# Forest benchmark: our search-forest and Python annoy side by side, in one run, on the
# synthetic notebook dataset (100k N(0,1) distractors + 200 people x 5 images, 512-d; one
# held-out query per person). Measures build time, index size, load time, and recall@4 and
# query time over a search_k sweep (0 = each engine's default, k * n_trees).
#   scripts/bench_forest.sh [OUT_DIR] [extra flags for the Rust side, e.g. --split best-of-3]
# Output: OUT_DIR/ours.json, OUT_DIR/annoy.json and a table on stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/bench-forest}
shift || true
trees=${TREES:-20}
sweep=${SWEEP:-80,200,500,1000,2000,5000,10000,20000,40000}
python=$("$root/scripts/pyenv.sh")
mkdir -p "$out"
cd "$root"
cargo build --release -q -p search-forest --example bench_forest
"$root/target/release/examples/bench_forest" "$out" --trees "$trees" --sweep "$sweep" "$@" > "$out/ours.json"
"$python" "$root/scripts/bench_forest_annoy.py" "$out" "$trees" "$sweep" > "$out/annoy.json"
"$python" - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
ours, annoy = (json.load(open(os.path.join(out, f))) for f in ("ours.json", "annoy.json"))
print(f"machine: {os.cpu_count()} cores (shared); our dot kernel: {ours['kernel']}; n={ours['n']} dim={ours['dim']} trees={ours['trees']}")
print(f"{'':10}{'build s':>10}{'size MB':>10}{'load ms':>10}")
for e in (ours, annoy):
    print(f"{e['engine']:10}{e['build_s']:>10.2f}{e['index_bytes']/1e6:>10.1f}{e['load_ms']:>10.3f}")
print(f"build ratio ours/annoy: {ours['build_s']/annoy['build_s']:.2f}")
print(f"{'search_k':>9} | {'ours R@4':>8} {'ours ms':>8} | {'annoy R@4':>9} {'annoy ms':>8} | time ratio")
for o, a in zip(ours["sweep"], annoy["sweep"]):
    print(f"{o['search_k']:>9} | {o['recall_at_4']:>8.3f} {o['query_ms']:>8.3f} | {a['recall_at_4']:>9.3f} {a['query_ms']:>8.3f} | {o['query_ms']/a['query_ms']:.2f}")
if "threshold_recall" in ours:
    print(f"ours: threshold search (cos > 0.35, default search_k) recall vs linear: {ours['threshold_recall']:.3f}")
PY
