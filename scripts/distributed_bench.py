#!/usr/bin/env python3
"""Measures face_search.distributed: the bench's gallery sharded over a Ray cluster of
``--nodes`` nodes started on this machine, beside the same engine unsharded in this process.

Run with the project's Python after scripts/test-python.sh has installed the package
(``cargo xtask distributed`` does both and merges the output into the bench's JSON):

    bash scripts/test-python.sh --install-only
    target/pyenv/bin/python scripts/distributed_bench.py --results results

Data: ``--results``/search_data.npy (the gallery: vectors then labels, the notebook's file) and
``--results``/queries.npy (held-out queries), both written by ``cargo xtask bench``;
``--limit N`` keeps the first N gallery rows (a quick run).

For each engine of ``--engines`` (build parameters from ``--param ENGINE.NAME=VALUE``,
default the bench's: hnsw m=48 ef_construction=200 ef=100; the knob from ``--knob
ENGINE=VALUE``, default hnsw ef=100):

- ``local``: one index built and loaded in this process, no Ray;
- ``ray``: the gallery built by ``build_sharded`` into ``--shards`` shards and served by
  ``ShardedIndex.open(replicas=R)`` for every R of ``--replicas``, on a ``LocalCluster`` of
  ``--nodes`` nodes (the helper the tests use).

Figures, each point: recall@k of the batch answers against exact search (LinearIndex over the
same rows); q/s with one query per call (every query in turn, after ``--warmup`` untimed
queries) and with the whole query set in one call (median of 3 calls); p50/p99 seconds of the
single queries; build seconds (measured when built; shard builds and local indexes are cached
in ``--cache``, keyed by the data, engine, params and shard count, and a cached build reports
the seconds it took then); open seconds (loading the index, or starting every actor until all
are ready).

Prints one JSON object per line on stdout with the keys engine, params, knob, mode, shards,
replicas, nodes, k, queries, build_s, open_s, single_qps, batch_qps, batch_size, p50_s, p99_s,
recall_at_k; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from typing import Dict, List, Optional

import numpy as np

import face_search
from face_search.distributed import FORMAT, LocalCluster, ShardedIndex, build_sharded, read_manifest

DEFAULT_PARAMS = {"hnsw": {"m": "48", "ef_construction": "200", "ef": "100"}, "linear": {}, "forest": {}}
DEFAULT_KNOBS = {"hnsw": 100}
KNOB_NAMES = {"hnsw": "ef", "forest": "search_k"}


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def ints(text: str) -> List[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="results", help="folder with search_data.npy and queries.npy (default: results)")
    p.add_argument("--data", help="gallery file (default: RESULTS/search_data.npy)")
    p.add_argument("--queries", help="query file (default: RESULTS/queries.npy)")
    p.add_argument("--cache", help="folder for shard builds and local indexes (default: RESULTS/distributed)")
    p.add_argument("--engines", default="hnsw,linear", help="engines, comma-separated (default: hnsw,linear)")
    p.add_argument("--shards", type=ints, default=[1, 2, 4], help="shard counts (default: 1,2,4)")
    p.add_argument("--replicas", type=ints, default=[1, 2], help="replica counts (default: 1,2)")
    p.add_argument("--k", type=int, default=4, help="neighbours per query (default: 4)")
    p.add_argument("--limit", type=int, help="use only the first N gallery rows")
    p.add_argument("--param", action="append", default=[], metavar="ENGINE.NAME=VALUE", help="a build parameter (repeatable)")
    p.add_argument("--knob", action="append", default=[], metavar="ENGINE=VALUE", help="an engine's search knob (hnsw ef, forest search_k)")
    p.add_argument("--nodes", type=int, default=2, help="Ray nodes to start on this machine (default: 2)")
    p.add_argument("--cpus-per-node", type=int, help="CPUs each node offers Ray (default: cores / nodes, at least 1)")
    p.add_argument("--warmup", type=int, default=20, help="untimed queries before timing (default: 20)")
    p.add_argument("--no-local", action="store_true", help="skip the unsharded in-process figures")
    return p.parse_args(argv)


def engine_settings(args) -> Dict[str, dict]:
    engines = [e for e in args.engines.split(",") if e]
    params = {e: dict(DEFAULT_PARAMS.get(e, {})) for e in engines}
    knobs: Dict[str, Optional[int]] = {e: DEFAULT_KNOBS.get(e) for e in engines}
    for item in args.param:
        name, _, value = item.partition("=")
        engine, _, pname = name.partition(".")
        if not pname or not value or engine not in params:
            raise SystemExit(f"--param {item!r}: want ENGINE.NAME=VALUE for one of {engines}")
        params[engine][pname] = value
    for item in args.knob:
        engine, _, value = item.partition("=")
        if engine not in knobs or engine not in KNOB_NAMES:
            raise SystemExit(f"--knob {item!r}: want ENGINE=VALUE for one of {sorted(KNOB_NAMES)}")
        knobs[engine] = int(value)
    out = {}
    for e in engines:
        if e not in face_search._CLASSES:
            raise SystemExit(f"unknown engine {e!r}: one of {sorted(face_search._CLASSES)}")
        knob = knobs.get(e)
        out[e] = {
            "params": params[e],
            "params_text": " ".join(f"{n}={v}" for n, v in params[e].items()),
            "knob": knob,
            "knob_text": None if knob is None else f"{KNOB_NAMES[e]}={knob}",
        }
    return out


def data_key(vectors: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str(vectors.shape).encode())
    h.update(memoryview(np.ascontiguousarray(vectors)).cast("B"))
    h.update("\n".join(labels.tolist()).encode())
    return h.hexdigest()[:16]


def build_key(dkey: str, engine: str, params: dict, shards: Optional[int]) -> str:
    text = json.dumps([FORMAT, dkey, engine, sorted(params.items()), shards])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def recall_at_k(ids: np.ndarray, exact: np.ndarray) -> float:
    k = exact.shape[1]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ids.tolist(), exact.tolist())]))


def time_queries(search, queries: np.ndarray, k: int, warmup: int):
    """(single-query latencies, batch seconds, batch ids)."""
    for q in queries[: min(warmup, len(queries))]:
        search(q, k)
    latencies = []
    for q in queries:
        t = time.perf_counter()
        search(q, k)
        latencies.append(time.perf_counter() - t)
    batch_times = []
    ids = None
    for _ in range(3):
        t = time.perf_counter()
        ids, _ = search(queries, k)
        batch_times.append(time.perf_counter() - t)
    return np.asarray(latencies), float(np.median(batch_times)), np.asarray(ids)


def point(engine, s, mode, shards, replicas, nodes, k, queries, build_s, open_s, latencies, batch_s, recall) -> dict:
    n = len(queries)
    return {
        "engine": engine,
        "params": s["params_text"],
        "knob": s["knob_text"],
        "mode": mode,
        "shards": shards,
        "replicas": replicas,
        "nodes": nodes,
        "k": k,
        "queries": n,
        "build_s": round(build_s, 4),
        "open_s": round(open_s, 4),
        "single_qps": round(n / float(np.sum(latencies)), 2),
        "batch_qps": round(n / batch_s, 2),
        "batch_size": n,
        "p50_s": float(np.percentile(latencies, 50)),
        "p99_s": float(np.percentile(latencies, 99)),
        "recall_at_k": round(recall, 5),
    }


def emit(p: dict) -> None:
    print(json.dumps(p), flush=True)
    log(
        f"  {p['engine']} {p['mode']} shards={p['shards']} replicas={p['replicas']}: recall@{p['k']} "
        f"{p['recall_at_k']:.4f}, {p['single_qps']:.0f} q/s single (p50 {p['p50_s'] * 1e3:.2f} ms, "
        f"p99 {p['p99_s'] * 1e3:.2f} ms), {p['batch_qps']:.0f} q/s batched, open {p['open_s']:.2f} s"
    )


def local_point(engine, s, vectors, queries, exact, k, cache, dkey, warmup) -> dict:
    key = build_key(dkey, engine, s["params"], None)
    path = os.path.join(cache, f"local-{engine}-{key}.idx")
    meta = path + ".json"
    if os.path.exists(path) and os.path.exists(meta):
        with open(meta) as f:
            build_s = json.load(f)["build_s"]
        log(f"{engine} local: cached {path}")
    else:
        log(f"{engine} local: building {len(vectors)} rows...")
        t = time.perf_counter()
        index = face_search._CLASSES[engine].build(vectors, **s["params"])
        build_s = time.perf_counter() - t
        index.save(path)
        del index
        with open(meta, "w") as f:
            json.dump({"build_s": build_s}, f)
    t = time.perf_counter()
    index = face_search.load(path)
    open_s = time.perf_counter() - t
    if s["knob"] is not None:
        setattr(index, KNOB_NAMES[engine], s["knob"])
    latencies, batch_s, ids = time_queries(index.search, queries, k, warmup)
    return point(engine, s, "local", 1, 1, 0, k, queries, build_s, open_s, latencies, batch_s, recall_at_k(ids, exact))


def sharded_folder(engine, s, vectors, labels, shards, cache, dkey) -> tuple:
    key = build_key(dkey, engine, s["params"], shards)
    folder = os.path.join(cache, f"{engine}-s{shards}-{key}")
    meta = os.path.join(folder, "bench-build.json")
    if os.path.exists(meta):
        try:
            read_manifest(folder)
            with open(meta) as f:
                build_s = json.load(f)["build_s"]
            log(f"{engine} x{shards} shards: cached {folder}")
            return folder, build_s
        except (OSError, ValueError, KeyError):
            pass
    shutil.rmtree(folder, ignore_errors=True)
    log(f"{engine} x{shards} shards: building {len(vectors)} rows...")
    t = time.perf_counter()
    build_sharded(vectors, labels, folder, engine=engine, shards=shards, params=s["params"])
    build_s = time.perf_counter() - t
    with open(meta, "w") as f:
        json.dump({"build_s": build_s}, f)
    return folder, build_s


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = engine_settings(args)
    data = args.data or os.path.join(args.results, "search_data.npy")
    qfile = args.queries or os.path.join(args.results, "queries.npy")
    cache = os.path.abspath(args.cache or os.path.join(args.results, "distributed"))
    os.makedirs(cache, exist_ok=True)
    vectors, labels = face_search.read_gallery(data)
    queries, _ = face_search.read_gallery(qfile)
    if args.limit:
        vectors, labels = vectors[: args.limit], labels[: args.limit]
    vectors = np.ascontiguousarray(vectors)
    k = args.k
    log(f"gallery {vectors.shape} from {data}, {len(queries)} queries, k={k}")
    dkey = data_key(vectors, labels)
    exact, _ = face_search.LinearIndex.build(vectors).search(queries, k)

    if not args.no_local:
        for engine, s in settings.items():
            emit(local_point(engine, s, vectors, queries, exact, k, cache, dkey, args.warmup))

    cpus = args.cpus_per_node or max(1, (os.cpu_count() or 2) // args.nodes)
    store = max(200_000_000, int(vectors.nbytes * 1.5))
    # Ray's temp dirs: short (Unix socket paths), under target/ (LocalCluster falls back to /tmp
    # when the path is too long).
    temp = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "target", f"ray{os.getpid()}")
    cluster = LocalCluster(nodes=args.nodes, cpus_per_node=cpus, object_store_bytes=store, temp_dir=temp)
    log(f"starting a Ray cluster of {args.nodes} nodes x {cpus} CPUs on this machine...")
    try:
        cluster.start()
        nodes = len(cluster.node_ids())
        for engine, s in settings.items():
            for shards in args.shards:
                folder, build_s = sharded_folder(engine, s, vectors, labels, shards, cache, dkey)
                for replicas in args.replicas:
                    t = time.perf_counter()
                    index = ShardedIndex.open(folder, replicas=replicas, knob=s["knob"])
                    open_s = time.perf_counter() - t
                    try:
                        latencies, batch_s, ids = time_queries(index.search, queries, k, args.warmup)
                    finally:
                        index.close()
                    emit(point(engine, s, "ray", shards, replicas, nodes, k, queries, build_s, open_s,
                               latencies, batch_s, recall_at_k(ids, exact)))
    finally:
        survivors = cluster.stop()
    if survivors:
        log(f"Ray processes left running: {survivors}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
