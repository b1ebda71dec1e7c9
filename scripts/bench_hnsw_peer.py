#!/usr/bin/env python3
"""Python hnswlib's side of scripts/bench_hnsw.sh: same data, same settings, same measurements.

usage: bench_hnsw_peer.py DIR [--m 48] [--efc 200] [--efs 10,20,...] [--reps 5] [--reuse]
Reads DIR/{shape.txt,gallery.f32,queries.f32,truth.u32} (written by `bench_hnsw prepare`),
builds hnswlib (space cosine) on all cores, saves it, loads it back (timed), and sweeps ef on
one thread and on all threads. Writes DIR/hnswlib.json.
"""
import argparse, json, os, statistics, sys, time

import hnswlib
import numpy as np

K = 4
p = argparse.ArgumentParser()
p.add_argument("dir")
p.add_argument("--m", type=int, default=48)
p.add_argument("--efc", type=int, default=200)
p.add_argument("--efs", default="10,20,40,60,80,100,150,200,300,400")
p.add_argument("--reps", type=int, default=5)
p.add_argument("--reuse", action="store_true")
a = p.parse_args()

n, nq, dim = map(int, open(os.path.join(a.dir, "shape.txt")).read().split())
gallery = np.fromfile(os.path.join(a.dir, "gallery.f32"), dtype="<f4").reshape(n, dim)
queries = np.fromfile(os.path.join(a.dir, "queries.f32"), dtype="<f4").reshape(nq, dim)
truth = np.fromfile(os.path.join(a.dir, "truth.u32"), dtype="<u4").reshape(nq, K)
path = os.path.join(a.dir, "hnswlib.bin")

build_s = build_cpu_s = float("nan")
if not (a.reuse and os.path.exists(path)):
    t, c = time.perf_counter(), time.process_time()
    index = hnswlib.Index(space="cosine", dim=dim)
    index.init_index(max_elements=n, ef_construction=a.efc, M=a.m)
    index.add_items(gallery, np.arange(n))
    build_s = time.perf_counter() - t
    build_cpu_s = time.process_time() - c
    print(f"hnswlib: built in {build_s:.1f} s on {os.cpu_count()} threads", file=sys.stderr)
    index.save_index(path)
    del index

loads = []
for _ in range(3):
    t = time.perf_counter()
    index = hnswlib.Index(space="cosine", dim=dim)
    index.load_index(path)
    loads.append(time.perf_counter() - t)
    del index
load_s = statistics.median(loads)
index = hnswlib.Index(space="cosine", dim=dim)
index.load_index(path)

sweep = []
for ef in map(int, a.efs.split(",")):
    index.set_ef(ef)
    labels, _ = index.knn_query(queries, k=K, num_threads=1)
    recall = sum(len(set(labels[i]) & set(truth[i])) for i in range(nq)) / (nq * K)
    def qps(threads):
        runs = []
        for _ in range(a.reps):
            t = time.perf_counter()
            index.knn_query(queries, k=K, num_threads=threads)
            runs.append(nq / (time.perf_counter() - t))
        return statistics.median(runs)
    c = time.process_time()
    q1 = qps(1)
    q1_cpu = nq * a.reps / (time.process_time() - c)
    qa = qps(-1)
    print(f"hnswlib ef={ef:4} recall@4={recall:.4f} qps(1)={q1:9.0f} qps(1, per cpu s)={q1_cpu:9.0f} qps(all)={qa:9.0f}", file=sys.stderr)
    sweep.append({"ef": ef, "recall": recall, "qps_1": q1, "qps_1_cpu": q1_cpu, "qps_all": qa})

out = {"engine": "hnswlib", "version": getattr(hnswlib, "__version__", "?"), "build_s": build_s, "build_cpu_s": build_cpu_s,
       "load_s": load_s, "threads": os.cpu_count(), "index_bytes": os.path.getsize(path), "sweep": sweep}
json.dump(out, open(os.path.join(a.dir, "hnswlib.json"), "w"), indent=1)
print(json.dumps(out, indent=1))
