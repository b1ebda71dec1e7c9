#!/usr/bin/env bash
# Side-by-side benchmark of our HNSW (search-hnsw) and Python hnswlib on the notebook's workload:
# 200 identities x 5 images + 100,000 N(0,1) distractors, 512-d, cosine, M=48, ef_construction=200.
# Measures build time (all cores), load time, and recall@4 / queries per second over an ef sweep,
# on one thread and on all threads; prints a summary with ratios.
#
#   scripts/bench_hnsw.sh [DIR]          (default DIR: target/bench-hnsw/100k)
# Environment: DISTRACTORS (100000), EFS (10,20,40,60,80,100,150,200,300,400), REPS (5),
#   F32=1 also runs our f32-only walk (no int8 codes), REUSE=1 reuses built indexes in DIR.
# The machine may be shared: run it twice and compare before trusting small differences.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dir=${1:-target/bench-hnsw/100k}
distractors=${DISTRACTORS:-100000}
efs=${EFS:-10,20,40,60,80,100,150,200,300,400}
reps=${REPS:-5}
reuse=()
[[ ${REUSE:-0} == 1 ]] && reuse=(--reuse)
python=$(bash scripts/pyenv.sh)
cargo build --release -p search-hnsw --example bench_hnsw
bin=target/release/examples/bench_hnsw
[[ -f $dir/shape.txt ]] || "$bin" prepare "$dir" --distractors "$distractors"
echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
"$bin" run "$dir" --efs "$efs" --reps "$reps" "${reuse[@]}" >/dev/null
"$python" scripts/bench_hnsw_peer.py "$dir" --efs "$efs" --reps "$reps" "${reuse[@]}" >/dev/null
if [[ ${F32:-1} == 1 ]]; then
  "$bin" run "$dir" --efs "$efs" --reps "$reps" --f32 "${reuse[@]}" >/dev/null
fi
"$python" - "$dir" <<'PY'
import json, os, sys
d = sys.argv[1]
runs = [json.load(open(os.path.join(d, f))) for f in ("hnswlib.json", "ours.json", "ours-f32.json")
        if os.path.exists(os.path.join(d, f))]
base = runs[0]
def best(run, key, target=0.99):
    ok = [s for s in run["sweep"] if s["recall"] >= target]
    return max(ok, key=lambda s: s[key]) if ok else None
print(f"{'engine':10} {'build s':>8} {'cpu s':>8} {'load ms':>9} {'size MB':>8}")
print(f"{'':10} sweep: ef, recall@4, qps 1 thread (wall), qps 1 thread (per CPU second), qps all threads (wall)")
for r in runs:
    print(f"{r['engine']:10} {r['build_s']:8.1f} {r['build_cpu_s']:8.1f} {1e3*r['load_s']:9.3f} {r['index_bytes']/1e6:8.1f}")
    for s in r["sweep"]:
        print(f"{'':10} {s['ef']:4d} {s['recall']:.4f} {s['qps_1']:9.0f} {s['qps_1_cpu']:9.0f} {s['qps_all']:9.0f}")
print("\nratios vs hnswlib (build, load: lower is better; best qps at recall@4 >= 0.99: higher is better)")
for r in runs[1:]:
    line = (f"{r['engine']:10} build {r['build_s']/base['build_s']:.3f}x (cpu {r['build_cpu_s']/base['build_cpu_s']:.3f}x)"
            f"  load {r['load_s']/base['load_s']:.4f}x")
    for key in ("qps_1", "qps_1_cpu", "qps_all"):
        a, b = best(r, key), best(base, key)
        if a and b:
            line += f"  {key} {a[key]/b[key]:.2f}x (ef {a['ef']} vs {b['ef']})"
    print(line)
PY
