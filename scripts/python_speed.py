#!/usr/bin/env python3
"""face_search's Python package side by side with Python hnswlib and annoy, in one process.

Measures what issue 16 asks of the package, on the bench's data (`cargo xtask bench` writes
results/search_data.npy and results/queries.npy) and on index files that already exist, so
nothing is rebuilt:

1. the Python overhead of one ``HnswIndex.search`` over the same search timed inside Rust
   (``Engine.time_search``), per query, median over the queries;
2. ``knn_query`` queries per second against recall@k (exact numpy top-k as the truth) for
   ``face_search.hnswlib.Index`` and ``hnswlib.Index``, with ``ef`` swept, one batch call on 1
   thread and on every thread, and one query per call (the notebook's way);
3. ``load_index`` from a warm file (median of 5) and from a cold one (evicted from the page
   cache with posix_fadvise DONTNEED; load plus the first query, median of 3), with
   ``face_search.HnswIndex.load`` (our own format, memory-mapped) beside them. The drop-in's
   file is made the notebook's way (init_index, add_items, save_index; built once, 95 s);
4. ``get_nns_by_vector`` queries per second against recall@k for ``face_search.annoy`` and
   ``annoy``, with ``search_k`` swept, each over its own 20-tree forest.

Run it alone on an idle machine, after `cargo xtask bench` (our indexes), `cargo xtask peers
--peer hnswlib --peer annoy` (theirs) and `scripts/test-python.sh` (installs the package):

    target/pyenv/bin/python scripts/python_speed.py --json results/python-speed.json
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import time
from importlib.metadata import version

import numpy as np

import annoy
import hnswlib

import face_search
from face_search import annoy as fs_annoy
from face_search import hnswlib as fs_hnswlib
from pagecache import evict, read_through

K = 4


def newest(pattern: str) -> str:
    files = sorted(glob.glob(pattern), key=os.path.getmtime)
    if not files:
        sys.exit(f"no file matches {pattern}: run `cargo xtask bench` / `cargo xtask peers` first")
    return files[-1]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [len(set(map(int, f)) & set(map(int, t))) for f, t in zip(found, truth)]
    return sum(hits) / truth.size


def seconds(f, repeats: int) -> float:
    """Median seconds of `repeats` calls of f."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def overhead(index: face_search.HnswIndex, queries: np.ndarray, calls: int) -> dict:
    """Per query: median Python seconds of `search` minus median Rust seconds of the same
    search; the median over the queries."""
    python, rust = [], []
    for q in queries:
        q = np.ascontiguousarray(q)
        index.search(q, K)  # warm the query's path
        rust.append(index._e.time_search(q, K, calls))
        python.append(seconds(lambda: index.search(q, K), calls))
    diffs = [p - r for p, r in zip(python, rust)]
    return dict(
        python_s=statistics.median(python),
        rust_s=statistics.median(rust),
        overhead_s=statistics.median(diffs),
        overhead_p90_s=float(np.percentile(diffs, 90)),
    )


def knn_sweep(index, queries, truth, efs, threads, repeats) -> list:
    points = []
    for ef in efs:
        index.set_ef(ef)
        labels, _ = index.knn_query(queries, k=K, num_threads=1)
        point = dict(ef=ef, recall=recall(labels, truth))
        for t in threads:
            s = seconds(lambda: index.knn_query(queries, k=K, num_threads=t), repeats)
            point[f"batch_qps_{t}t"] = len(queries) / s
        single = seconds(lambda: [index.knn_query(q, k=K, num_threads=1) for q in queries], 3)
        point["single_qps"] = len(queries) / single
        points.append(point)
        log(f"  ef={ef}: " + ", ".join(f"{k}={v:.4g}" for k, v in point.items() if k != "ef"))
    return points


def annoy_sweep(index, queries, truth, search_ks) -> list:
    points = []
    for sk in search_ks:
        labels = np.array([index.get_nns_by_vector(q, K, search_k=sk) for q in queries])
        s = seconds(lambda: [index.get_nns_by_vector(q, K, search_k=sk) for q in queries], 3)
        point = dict(search_k=sk, recall=recall(labels, truth), qps=len(queries) / s)
        points.append(point)
        log(f"  search_k={sk}: recall={point['recall']:.4f} qps={point['qps']:.0f}")
    return points


def forest_vs_annoy(ours_forest, theirs_annoy, dim, queries, truth):
    """Part 4: each library over its own 20-tree forest file, search_k swept."""
    log("4. get_nns_by_vector sweep")
    fa = fs_annoy.AnnoyIndex(dim, "angular")
    fa.load(ours_forest)
    an = annoy.AnnoyIndex(dim, "angular")
    an.load(theirs_annoy)
    sks = [1000, 2000, 5000, 7500, 10000, 15000, 20000, 30000, 40000, 80000]
    log("  face_search.annoy:")
    ours = annoy_sweep(fa, queries, truth, sks)
    log("  annoy:")
    theirs = annoy_sweep(an, queries, truth, sks)
    return ours, theirs, dict(ours=fa.get_n_trees(), annoy=an.get_n_trees())


def first_at(points: list, target: float, key: str) -> dict | None:
    """The fastest point (by `key`) among those reaching recall `target`."""
    ok = [p for p in points if p["recall"] >= target]
    return max(ok, key=lambda p: p[key]) if ok else None


def load_times(load, query, paths: list) -> dict:
    """Warm: median of 5 loads of files in the page cache. Cold: median of 3 (evict every
    file the load may read, load, first query)."""
    for path in paths:
        read_through(path)
    load()
    warm = seconds(load, 5)
    cold_load, cold_total = [], []
    for _ in range(3):
        for path in paths:
            evict(path)
        start = time.perf_counter()
        index = load()
        loaded = time.perf_counter()
        query(index)
        done = time.perf_counter()
        cold_load.append(loaded - start)
        cold_total.append(done - start)
    return dict(
        warm_load_s=warm,
        cold_load_s=statistics.median(cold_load),
        cold_total_s=statistics.median(cold_total),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default="results", help="the bench's results folder")
    ap.add_argument("--ours-hnsw", help="our HNSW index file (default: newest results/hnsw-*.idx)")
    ap.add_argument("--ours-forest", help="our forest file (default: newest results/forest-*.idx)")
    ap.add_argument("--hnswlib", help="hnswlib's file (default: results/peers/hnswlib-*.idx)")
    ap.add_argument("--annoy", help="annoy's file (default: results/peers/annoy-*.idx)")
    ap.add_argument("--calls", type=int, default=200, help="timed calls per query for the overhead")
    ap.add_argument("--repeats", type=int, default=9, help="timed batch calls per point")
    ap.add_argument("--queries", type=int, default=0, help="use only the first N queries (0: all)")
    ap.add_argument("--forest-only", action="store_true", help="measure only part 4 (forest vs annoy)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    r = args.results
    ours_hnsw = args.ours_hnsw or newest(f"{r}/hnsw-*.idx")
    ours_forest = args.ours_forest or newest(f"{r}/forest-*.idx")
    theirs_hnsw = args.hnswlib or newest(f"{r}/peers/hnswlib-*.idx")
    theirs_annoy = args.annoy or newest(f"{r}/peers/annoy-*.idx")
    gallery, _ = face_search.read_gallery(f"{r}/search_data.npy")
    queries, _ = face_search.read_gallery(f"{r}/queries.npy")
    if args.queries:
        queries = queries[: args.queries]
    n, dim = gallery.shape
    threads = [1, os.cpu_count() or 1]
    log(f"gallery {n} x {dim}, {len(queries)} queries, k={K}, threads {threads}")

    unit = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    qunit = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argsort(-(qunit @ unit.T), axis=1)[:, :K]
    del unit

    out = dict(gallery=[n, dim], queries=len(queries), k=K, threads=threads,
               versions={m: version(m) for m in ("face-search", "hnswlib", "annoy", "numpy")},
               files=dict(ours_hnsw=ours_hnsw, ours_forest=ours_forest, hnswlib=theirs_hnsw, annoy=theirs_annoy))

    if args.forest_only:
        out["annoy_ours"], out["annoy_annoy"], out["trees"] = forest_vs_annoy(ours_forest, theirs_annoy, dim, queries, truth)
        a, b = first_at(out["annoy_ours"], 0.95, "qps"), first_at(out["annoy_annoy"], 0.95, "qps")
        out["verdict"] = dict(annoy=dict(ours=a, annoy=b, ratio=(a["qps"] / b["qps"]) if a and b else None))
        print(json.dumps(out["verdict"], indent=2))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=2)
        return

    log("1. Python overhead of HnswIndex.search")
    # On a small index the search itself takes microseconds, so what Python adds stands out
    # (and the interpreter's own memory traffic cannot slow a search that fits in cache).
    small = face_search.HnswIndex.build(gallery[:1000], m=16, ef_construction=100, ef=16)
    out["overhead_small"] = overhead(small, queries, args.calls)
    log(f"  1,000 rows, ef=16: {out['overhead_small']}")
    ours = face_search.HnswIndex.load(ours_hnsw, warmup="eager")
    ours.ef = 100
    out["overhead"] = overhead(ours, queries, args.calls)
    log(f"  {n} rows, ef=100: {out['overhead']}")

    del ours
    # The drop-in's own file, made as a notebook user makes it: init_index, add_items,
    # save_index (hnswlib's file plus the mapped .fs copy). Built once, then reused.
    ours_as_hnswlib = f"{r}/python-speed-dropin-M48-efc200.idx"
    if not os.path.exists(ours_as_hnswlib + ".fs.json"):
        log("  building the drop-in's index (M=48, ef_construction=200; once)...")
        p = fs_hnswlib.Index(space="cosine", dim=dim)
        p.init_index(max_elements=n, ef_construction=200, M=48)
        start = time.perf_counter()
        p.add_items(gallery, np.arange(n))
        out["dropin_build_s"] = time.perf_counter() - start
        p.save_index(ours_as_hnswlib)
        del p

    def fs_load():
        p = fs_hnswlib.Index(space="cosine", dim=dim)
        p.load_index(ours_as_hnswlib)
        return p

    def hl_load():
        p = hnswlib.Index(space="cosine", dim=dim)
        p.load_index(theirs_hnsw)
        return p

    def knn(p):
        p.set_ef(100)
        p.knn_query(queries[0], k=K)

    log("2. knn_query sweep")
    efs = [10, 20, 30, 40, 60, 80, 100, 150, 200, 300]
    fs, hl = fs_load(), hl_load()
    out["index_params"] = dict(ours=dict(M=fs.M, ef_construction=fs.ef_construction),
                               hnswlib=dict(M=hl.M, ef_construction=hl.ef_construction))
    log("  face_search.hnswlib:")
    out["knn_ours"] = knn_sweep(fs, queries, truth, efs, threads, args.repeats)
    log("  hnswlib:")
    out["knn_hnswlib"] = knn_sweep(hl, queries, truth, efs, threads, args.repeats)
    del fs, hl

    log("3. load_index")
    dropin_files = [ours_as_hnswlib + suffix for suffix in ("", ".fs", ".fs.json")]
    out["load_ours_hnswlib_format"] = load_times(fs_load, knn, dropin_files)
    out["load_hnswlib"] = load_times(hl_load, knn, [theirs_hnsw])
    out["load_ours_native"] = load_times(
        lambda: face_search.HnswIndex.load(ours_hnsw),
        lambda i: i.search(queries[0], K),
        [ours_hnsw],
    )
    for key in ("load_ours_hnswlib_format", "load_hnswlib", "load_ours_native"):
        log(f"  {key}: {out[key]}")

    out["annoy_ours"], out["annoy_annoy"], out["trees"] = forest_vs_annoy(ours_forest, theirs_annoy, dim, queries, truth)

    # The verdicts against issue 16's targets.
    verdict = {}
    o = out["overhead"]
    verdict["overhead_us"] = o["overhead_s"] * 1e6
    verdict["overhead_small_us"] = out["overhead_small"]["overhead_s"] * 1e6
    for t in threads:
        key = f"batch_qps_{t}t"
        a, b = first_at(out["knn_ours"], 0.99, key), first_at(out["knn_hnswlib"], 0.99, key)
        verdict[f"knn_{t}t"] = dict(ours=a, hnswlib=b, ratio=(a[key] / b[key]) if a and b else None)
    a, b = first_at(out["knn_ours"], 0.99, "single_qps"), first_at(out["knn_hnswlib"], 0.99, "single_qps")
    verdict["knn_single"] = dict(ours=a, hnswlib=b, ratio=(a["single_qps"] / b["single_qps"]) if a and b else None)
    lo, lh = out["load_ours_hnswlib_format"], out["load_hnswlib"]
    verdict["load_warm_ratio"] = lo["warm_load_s"] / lh["warm_load_s"]
    verdict["load_cold_ratio"] = lo["cold_total_s"] / lh["cold_total_s"]
    verdict["load_native_warm_ratio"] = out["load_ours_native"]["warm_load_s"] / lh["warm_load_s"]
    a, b = first_at(out["annoy_ours"], 0.95, "qps"), first_at(out["annoy_annoy"], 0.95, "qps")
    verdict["annoy"] = dict(ours=a, annoy=b, ratio=(a["qps"] / b["qps"]) if a and b else None)
    out["verdict"] = verdict

    print(json.dumps(verdict, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
