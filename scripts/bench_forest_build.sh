#!/usr/bin/env bash
# Forest build time, ours against Python annoy, alternating in one run (the machines are shared
# and noisy: medians of ROUNDS builds each). Same data: the default synthetic gallery
# (100,999 x 512), 20 trees, all cores; annoy's add_item calls are not timed, ours includes
# checking, normalising and coding the rows.
#   scripts/bench_forest_build.sh [ROUNDS] [extra build_time args: iterations leaf]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-5}
shift || true
out=$root/target/bench-forest
python=$("$root/scripts/pyenv.sh")
cd "$root"
cargo build --release -q -p search-forest --example build_time --example bench_forest
if [ ! -f "$out/gallery.npy" ]; then
    "$root/target/release/examples/bench_forest" "$out" --sweep 1000 > /dev/null
fi
ours=() annoy=()
for r in $(seq "$rounds"); do
    o=$("$root/target/release/examples/build_time" "$@" | awk '{print $2}')
    a=$("$python" - "$out/gallery.npy" <<'PY'
import sys, time, numpy as np, annoy
g = np.load(sys.argv[1]).astype(np.float32)
index = annoy.AnnoyIndex(g.shape[1], "angular")
index.set_seed(42)
for i, v in enumerate(g):
    index.add_item(i, v)
t = time.perf_counter()
index.build(20, n_jobs=-1)
print(f"{time.perf_counter() - t:.3f}")
PY
)
    echo "round $r: ours $o s, annoy $a s"
    ours+=("$o") annoy+=("$a")
done
"$python" - "${ours[*]}" "${annoy[*]}" <<'PY'
import statistics, sys
o = [float(x) for x in sys.argv[1].split()]
a = [float(x) for x in sys.argv[2].split()]
mo, ma = statistics.median(o), statistics.median(a)
print(f"median build: ours {mo:.2f} s, annoy {ma:.2f} s, ratio {mo / ma:.2f}")
PY
