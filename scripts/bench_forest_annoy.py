"""Python annoy's half of the forest benchmark (see scripts/bench_forest.sh).

Usage: python bench_forest_annoy.py OUT_DIR TREES SWEEP(comma-separated) [REPEAT]
Reads OUT_DIR/gallery.npy and OUT_DIR/queries.npy (the notebook's layout: vectors, then labels)
and OUT_DIR/truth.json (exact top-4 ids per query, from the Rust side). Prints one JSON object.
"""
import json
import os
import statistics
import sys
import time

import annoy
import numpy as np

out, trees, sweep = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3].split(",")]
repeat = int(sys.argv[4]) if len(sys.argv) > 4 else 5
K = 4
with open(os.path.join(out, "gallery.npy"), "rb") as f:
    gallery = np.load(f)
with open(os.path.join(out, "queries.npy"), "rb") as f:
    queries = np.load(f)
truth = json.load(open(os.path.join(out, "truth.json")))
n, dim = gallery.shape
qs = [q.tolist() for q in queries.astype(np.float32)]

index = annoy.AnnoyIndex(dim, "angular")
index.set_seed(42)
for i, v in enumerate(gallery.astype(np.float32)):
    index.add_item(i, v)
t, c = time.perf_counter(), time.process_time()
index.build(trees, n_jobs=-1)
build_s, build_cpu_s = time.perf_counter() - t, time.process_time() - c
path = os.path.join(out, "annoy.ann")
index.save(path)
index.unload()
size = os.path.getsize(path)

loads = []
for _ in range(21):
    t = time.perf_counter()
    idx = annoy.AnnoyIndex(dim, "angular")
    idx.load(path)
    loads.append(time.perf_counter() - t)
    idx.unload()
index = annoy.AnnoyIndex(dim, "angular")
index.load(path)

rows = []
for search_k in [-1] + sweep:
    passes, found = [], None
    for p in range(repeat + 1):
        t = time.perf_counter()
        answers = [index.get_nns_by_vector(q, K, search_k=search_k) for q in qs]
        if p > 0:
            passes.append((time.perf_counter() - t) / len(qs))
        found = answers
    hit = sum(len(set(f) & set(tr)) for f, tr in zip(found, truth))
    rows.append({"search_k": search_k if search_k > 0 else 0, "recall_at_4": round(hit / (K * len(truth)), 4),
                 "query_ms": round(statistics.median(passes) * 1e3, 4),
                 "query_ms_min": round(min(passes) * 1e3, 4)})
print(json.dumps({"engine": "annoy", "version": "1.17.3", "n": n, "dim": dim, "trees": index.get_n_trees(),
                  "build_s": round(build_s, 3), "build_cpu_s": round(build_cpu_s, 2), "index_bytes": size,
                  "load_ms": round(statistics.median(loads) * 1e3, 4), "sweep": rows}))
