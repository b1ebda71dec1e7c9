#!/usr/bin/env python3
"""One Python peer of `cargo xtask peers`, run in its own process (so its peak memory is its own).

usage: peers.py PEER --results DIR --key KEY [--k 4] [--min-seconds 0.5] [--rounds 3] [--rebuild] [--build-only]
PEER: hnswlib | annoy | faiss-flat | faiss-hnsw | faiss-hnsw-sq8 | usearch | usearch-f16 |
      symqg | vsag | ngt-onng

Reads DIR/search_data.npy and DIR/queries.npy (the notebook's layout: vectors, then labels, in
one file) and DIR/headline.npy, all written by `cargo xtask bench`; scales every row to unit
length (cosine = inner product); builds the peer's index on all cores (or reuses the one cached
in DIR/peers/ for the same data key and parameters), saves it, then opens it twice, as the bench
opens ours: cold (the index file evicted from the page cache with posix_fadvise DONTNEED, then
loaded and asked the headline query, timed; and the file read whole from cold, for scale; the
medians of three rounds) and
warm (the file read into the page cache first). Then every held-out query one at a time (median
latency), then sweeps the
peer's knob: recall@k against exact numpy search and queries/s on one thread and on all threads
(the peer's own batch call over all queries; annoy has none, so a thread pool over the queries),
timed like the Rust side: repeated passes until --min-seconds, the fastest pass counts.
Prints one JSON object (the fields of the bench's "engines" entries) as the last line of stdout.
With --build-only: builds once into a temporary file, uncached, and prints {"build_s": ...}: the
library's own build call alone where it has one apart from adding the items (annoy's build(),
faiss's add, hnswlib's add_items), for `cargo xtask build-time`.
"""
import argparse, gc, json, os, statistics, sys, time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pagecache import evict, files_of, read_through

EF = [10, 20, 40, 80, 100, 120, 150, 200, 300, 400]
# Swept after a peer's `values` only while its recall stays below --stop-recall: a 1M gallery
# needs them, 100k does not.
EF_FAR = [600, 800]
SEARCH_K = [100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000, 400000]
M, EF_CONSTRUCTION, EF_DEFAULT, TREES = 48, 200, 100, 20
REFINE_K_FACTOR = 4
THREADS = os.cpu_count() or 1

p = argparse.ArgumentParser()
p.add_argument("peer")
p.add_argument("--results", default="results")
p.add_argument("--key", required=True)
p.add_argument("--k", type=int, default=4)
p.add_argument("--min-seconds", type=float, default=0.5)
p.add_argument("--rounds", type=int, default=3,
               help="visits of the whole knob list; each point keeps its fastest pass over all")
p.add_argument("--refine", type=int, default=3,
               help="knob values added between the two around each crossing of recall 0.90 and 0.99")
p.add_argument("--stop-recall", type=float, default=0.995)
p.add_argument("--rebuild", action="store_true")
p.add_argument("--build-only", action="store_true")
a = p.parse_args()
K = a.k


def per_query(one, index, q, k, threads):
    """Asks `one(index, x, k)` for each query row: in order on one thread, or split into
    `threads` chunks on a thread pool (for libraries without a batch call)."""
    if threads == 1:
        return [one(index, x, k) for x in q]
    with ThreadPoolExecutor(threads) as pool:
        chunks = np.array_split(np.arange(len(q)), threads)
        parts = pool.map(lambda c: [one(index, q[i], k) for i in c], chunks)
        return [r for part in parts for r in part]


def log(*x):
    print(f"[{a.peer}]", *x, file=sys.stderr, flush=True)


def read_pair(path):
    with open(path, "rb") as f:
        vectors = np.load(f)
        labels = np.load(f)
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    del vectors
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v, [str(x) for x in labels]


gallery, labels = read_pair(os.path.join(a.results, "search_data.npy"))
queries, _ = read_pair(os.path.join(a.results, "queries.npy"))
headline, _ = read_pair(os.path.join(a.results, "headline.npy"))
n, dim = gallery.shape
nq = len(queries)

# Exact top-k by numpy (float32 inner products of unit rows), ties by lower id.
exact = []
for s in range(0, nq, 256):
    sims = queries[s:s + 256] @ gallery.T
    top = np.argpartition(-sims, K - 1, axis=1)[:, :K]
    exact.extend(set(map(int, row)) for row in top)


def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return None


# Peak memory of this peer alone: the data above is already resident (reported apart).
try:
    open("/proc/self/clear_refs", "w").write("5")
    rss_reset = True
except OSError:
    rss_reset = False
rss_before = rss("VmRSS:")

cache = os.path.join(a.results, "peers")
os.makedirs(cache, exist_ok=True)


def read_cold_seconds(path):
    evict(path)
    t = time.perf_counter()
    read_through(path)
    seconds = time.perf_counter() - t
    evict(path)
    return seconds


def size_of(path):
    return sum(os.path.getsize(f) for f in files_of(path))


def set_threads(t):
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(t)


# ---- the peers: build(path) -> None, load(path) -> index, search(index, Q, k, threads) -> ids,
# ---- set_knob(index, v), and the knob's name and values.

def peer_hnswlib():
    import hnswlib

    def build(path):
        index = hnswlib.Index(space="cosine", dim=dim)
        index.init_index(max_elements=n, ef_construction=EF_CONSTRUCTION, M=M, random_seed=42)
        index.add_items(gallery, np.arange(n), num_threads=THREADS)
        index.save_index(path)

    def load(path):
        index = hnswlib.Index(space="cosine", dim=dim)
        index.load_index(path, max_elements=n)
        index.set_ef(EF_DEFAULT)
        return index

    def search(index, q, k, threads):
        ids, _ = index.knn_query(q, k=k, num_threads=threads)
        return ids

    return dict(version=getattr(hnswlib, "__version__", "?"), params=f"space=cosine M={M} ef_construction={EF_CONSTRUCTION}",
                build=build, load=load, search=search, knob="ef", values=EF, more=EF_FAR, default=EF_DEFAULT,
                set_knob=lambda i, v: i.set_ef(v))


def peer_annoy():
    import annoy

    def build(path, timer=None):
        index = annoy.AnnoyIndex(dim, "angular")
        index.set_seed(42)
        for i in range(n):
            index.add_item(i, gallery[i])
        t = time.perf_counter()
        index.build(TREES, n_jobs=-1)
        if timer is not None:
            timer.append(time.perf_counter() - t)
        index.save(path)

    class Loaded:  # annoy's objects take no attributes: keep the knob beside it
        def __init__(self, index):
            self.index, self.search_k = index, -1

    def load(path):
        index = annoy.AnnoyIndex(dim, "angular")
        index.load(path)
        return Loaded(index)

    def one(index, q, k):
        return index.index.get_nns_by_vector(q, k, search_k=index.search_k)

    def search(index, q, k, threads):
        return per_query(one, index, q, k, threads)

    def set_knob(index, v):
        index.search_k = v

    return dict(version=getattr(annoy, "__version__", "1.17"), params=f"angular n_trees={TREES}",
                build=build, load=load, search=search, knob="search_k", values=SEARCH_K, default=-1,
                set_knob=set_knob, stop=True)


def faiss_peer(kind):
    import faiss

    def make():
        if kind == "flat":
            return faiss.IndexFlatIP(dim)
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = EF_CONSTRUCTION
            return index
        base = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, M, faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efConstruction = EF_CONSTRUCTION
        return faiss.IndexRefineFlat(base)

    def build(path):
        set_threads(THREADS)
        index = make()
        if not index.is_trained:
            index.train(gallery)
        index.add(gallery)
        faiss.write_index(index, path)

    def hnsw_of(index):
        if kind == "hnsw":
            return index.hnsw
        return faiss.downcast_index(index.base_index).hnsw

    def load(path):
        # read_index returns the concrete class; do not rebind a downcast copy (the original
        # would be collected and free the index under it).
        index = faiss.read_index(path)
        if kind == "sq8":
            index.k_factor = REFINE_K_FACTOR
        if kind != "flat":
            hnsw_of(index).efSearch = EF_DEFAULT
        return index

    def search(index, q, k, threads):
        set_threads(threads)
        _, ids = index.search(q, k)
        return ids

    def set_knob(index, v):
        hnsw_of(index).efSearch = v

    params = {"flat": "IndexFlatIP",
              "hnsw": f"IndexHNSWFlat M={M} efConstruction={EF_CONSTRUCTION} inner product",
              "sq8": f"IndexRefineFlat(IndexHNSWSQ QT_8bit M={M} efConstruction={EF_CONSTRUCTION}) k_factor={REFINE_K_FACTOR}"}[kind]
    peer = dict(version=faiss.__version__, params=params, build=build, load=load, search=search)
    if kind != "flat":
        peer.update(knob="efSearch", values=EF, more=EF_FAR, default=EF_DEFAULT, set_knob=set_knob)
    return peer


def usearch_peer(dtype):
    import usearch
    from usearch.index import Index

    def build(path):
        index = Index(ndim=dim, metric="cos", dtype=dtype, connectivity=M,
                      expansion_add=EF_CONSTRUCTION, expansion_search=EF_DEFAULT)
        index.add(np.arange(n), gallery, threads=THREADS)
        index.save(path)

    def load(path):
        index = Index.restore(path)
        index.expansion_search = EF_DEFAULT
        return index

    def search(index, q, k, threads):
        keys = index.search(q, k, threads=threads if threads > 0 else 0).keys
        return np.asarray(keys).reshape(len(q), -1)

    def set_knob(index, v):
        index.expansion_search = v

    return dict(version=usearch.__version__, params=f"metric=cos dtype={dtype} connectivity={M} expansion_add={EF_CONSTRUCTION}",
                build=build, load=load, search=search, knob="expansion_search", values=EF, more=EF_FAR,
                default=EF_DEFAULT, set_knob=set_knob)


def symqg_peer():
    import rabitqlib
    degree = 64

    def build(path):
        index = rabitqlib.SymqgIndex(dim, degree, "ip")
        index.build(gallery, EF_CONSTRUCTION, THREADS)
        index.save(path)

    def load(path):
        return Knobbed(rabitqlib.SymqgIndex.load(path), EF_DEFAULT)

    def search(index, q, k, threads):
        ids = index.index.search(q, k, index.knob, threads)[0]
        return np.asarray(ids).reshape(len(q), -1)

    def set_knob(index, v):
        index.knob = v

    return dict(version=rabitqlib_version(), params=f"SymqgIndex(dim, {degree}, 'ip') ef_construction={EF_CONSTRUCTION}",
                # Its recall per ef is lower than the others': a finer grid where it crosses 0.99
                # at 100k, and further out for 1M (0.90 at ef 400 there).
                build=build, load=load, search=search, knob="ef",
                values=sorted(EF + [110, 130]), more=EF_FAR + [1200, 1600],
                default=EF_DEFAULT, set_knob=set_knob)


def rabitqlib_version():
    try:
        from importlib.metadata import version
        return version("rabitqlib")
    except Exception:
        return "?"


def vsag_peer():
    import pyvsag
    params = json.dumps({"dtype": "float32", "metric_type": "ip", "dim": dim,
                         "index_param": {"base_quantization_type": "sq8", "max_degree": M,
                                         "ef_construction": EF_CONSTRUCTION, "use_reorder": True,
                                         "precise_quantization_type": "fp32"}})

    def build(path):
        index = pyvsag.Index("hgraph", params)
        index.build(np.ascontiguousarray(gallery).reshape(-1), np.arange(n, dtype=np.int64), n, dim)
        index.save(path)

    def load(path):
        index = pyvsag.Index("hgraph", params)
        index.load(path)
        return Knobbed(index, EF_DEFAULT)

    def one(index, x, k):
        ids, _ = index.index.knn_search(x, k, json.dumps({"hgraph": {"ef_search": index.knob}}))
        return list(ids)

    def search(index, q, k, threads):
        return per_query(one, index, q, k, threads)

    def set_knob(index, v):
        index.knob = v

    return dict(version=getattr(pyvsag, "__version__", "?"),
                params=f"hgraph sq8 + fp32 reorder, max_degree={M} ef_construction={EF_CONSTRUCTION} ip",
                build=build, load=load, search=search, knob="ef_search", values=EF, more=EF_FAR,
                default=EF_DEFAULT, set_knob=set_knob)


def ngt_peer():
    """NGT's ONNG (an ANNG refined by ngtpy's Optimizer). Its quantised graph (QG) needs the
    `qbg` command-line tool, which the PyPI package does not ship."""
    import shutil
    import ngtpy

    def build(path):
        shutil.rmtree(path, ignore_errors=True)
        anng = path + ".anng"
        shutil.rmtree(anng, ignore_errors=True)
        ngtpy.create(anng, dim, edge_size_for_creation=M, distance_type="Normalized Cosine")
        index = ngtpy.Index(anng, log_disabled=True)
        index.batch_insert(gallery, num_threads=THREADS)
        index.save()
        index.close()
        ngtpy.Optimizer(log_disabled=True).execute(anng, path)
        shutil.rmtree(anng, ignore_errors=True)

    def load(path):
        return Knobbed(ngtpy.Index(path, read_only=True, log_disabled=True), 0.1)

    def one(index, x, k):
        return [int(i) for i, _ in index.index.search(x, k, epsilon=index.knob)]

    def search(index, q, k, threads):
        return per_query(one, index, q, k, threads)

    def set_knob(index, v):
        index.knob = v / 1000.0

    return dict(version=getattr(ngtpy, "__version__", "?"),
                params=f"ONNG (ANNG edge_size_for_creation={M}, ngtpy Optimizer), Normalized Cosine; knob = epsilon x 1000",
                build=build, load=load, search=search, knob="epsilon_x1000",
                values=[0, 20, 50, 100, 150, 200, 300], default=100, set_knob=set_knob)


class Knobbed:
    """A peer's index with its search knob beside it (some peers take the knob per call)."""

    def __init__(self, index, knob):
        self.index, self.knob = index, knob


PEERS = {
    "hnswlib": peer_hnswlib,
    "annoy": peer_annoy,
    "faiss-flat": lambda: faiss_peer("flat"),
    "faiss-hnsw": lambda: faiss_peer("hnsw"),
    "faiss-hnsw-sq8": lambda: faiss_peer("sq8"),
    "usearch": lambda: usearch_peer("f32"),
    "usearch-f16": lambda: usearch_peer("f16"),
    "symqg": symqg_peer,
    "vsag": vsag_peer,
    "ngt-onng": ngt_peer,
}
if a.peer not in PEERS:
    sys.exit(f"unknown peer {a.peer}; one of {', '.join(PEERS)}")
peer = PEERS[a.peer]()

if a.build_only:
    import tempfile
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        timer = []
        t = time.perf_counter()
        if a.peer == "annoy":
            peer["build"](os.path.join(tmp, "index"), timer)
        else:
            peer["build"](os.path.join(tmp, "index"))
        total = time.perf_counter() - t
    print(json.dumps({"name": a.peer, "build_s": timer[0] if timer else total,
                      "build_call_only": bool(timer)}))
    sys.exit(0)

path = os.path.join(cache, f"{a.peer}-{a.key}.idx")
record = path + ".build-seconds"
params_record = path + ".params"
cached = (not a.rebuild and os.path.exists(path) and os.path.exists(record)
          and os.path.exists(params_record) and open(params_record).read() == peer["params"])
if cached:
    build_s = float(open(record).read())
    log(f"reusing {path} (built in {build_s:.1f} s)")
else:
    log(f"building ({peer['params']}) on {THREADS} threads...")
    t = time.perf_counter()
    peer["build"](path)
    build_s = time.perf_counter() - t
    os.sync()  # dirty pages cannot be evicted: the cold measurement needs them on disk
    log(f"built in {build_s:.1f} s")
    open(record, "w").write(repr(build_s))
    open(params_record, "w").write(peer["params"])

search = peer["search"]


def open_and_ask():
    """The notebook's Load and Query columns: open the file, ask the headline query."""
    t = time.perf_counter()
    index = peer["load"](path)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    ids = search(index, headline[:1], K, 1)[0]
    return index, load_s, time.perf_counter() - t, ids


# Cold first: evict the file (nothing maps it now), load, ask; then the same from warm. One
# cold read swings with the disk, so the file read and the cold open alternate COLD_ROUNDS
# times and each figure is the median, as bench-runner's (run.rs) are.
COLD_ROUNDS = 3
cold_rounds = []
for _ in range(COLD_ROUNDS):
    file_read_s = read_cold_seconds(path)  # leaves the file evicted for the open
    index, cold_load_s, cold_query_s, _ = open_and_ask()
    del index
    gc.collect()
    cold_rounds.append((cold_load_s, cold_query_s, cold_load_s + cold_query_s, file_read_s))
cold_load_s, cold_query_s, cold_total_s, file_read_s = (
    statistics.median(r[i] for r in cold_rounds) for i in range(4)
)
read_through(path)
index, load_s, query_s, head_ids = open_and_ask()

lat = []
for i in range(nq):
    t = time.perf_counter()
    search(index, queries[i:i + 1], K, 1)
    lat.append(time.perf_counter() - t)
median_s = statistics.median(lat)


def recall_of(ids):
    return sum(len(exact[i] & set(int(x) for x in ids[i])) for i in range(nq)) / sum(map(len, exact))


def timed(threads):
    passes, first, started = [], None, time.perf_counter()
    while not passes or (time.perf_counter() - started < a.min_seconds and len(passes) < 25):
        t = time.perf_counter()
        ids = search(index, queries, K, threads)
        passes.append(time.perf_counter() - t)
        if first is None:
            first = recall_of(ids)
    return first, nq / max(min(passes), 1e-9)


recall_at_k = recall_of(search(index, queries, K, THREADS))
sweep = []
# As the Rust side (bench-runner's `sweep`): the knob list is measured once, with values added
# around each crossing of recall 0.90 and 0.99 (`below` when the first value already reaches
# one, then `refinements`), then every point is timed again
# for --rounds rounds in all, each keeping its fastest pass; the points end in knob order.
def measure(v):
    if v is not None:
        peer["set_knob"](index, v)
    r, q1 = timed(1)
    _, qa = timed(THREADS)
    return {"param": peer.get("knob", "exact"), "value": v or 0, "recall_at_k": r,
            "qps_1t": q1, "qps_all": qa}


def refinements(points, targets, n):
    """Knob values between the largest measured value below each target recall and the next
    one, which reaches it: n evenly spaced (fewer when close), none already measured. The same
    rule as bench-runner's `sweep::refinements`."""
    pts = sorted(points, key=lambda p: p["value"])
    out = []
    for target in targets:
        hi = next((i for i, p in enumerate(pts) if p["recall_at_k"] >= target), None)
        if not hi:  # None, or 0: no value below it
            continue
        a_, b_ = pts[hi - 1]["value"], pts[hi]["value"]
        for i in range(1, n + 1):
            v = a_ + -(-(b_ - a_) * i // (n + 1))  # ceiling division, as the Rust side
            if a_ < v < b_ and v not in out and all(p["value"] != v for p in pts):
                out.append(v)
    return out


def below(points, targets, floor):
    """A knob value below every measured one when the lowest already reaches a target: half the
    lowest, not under `floor` (k); None when there is nothing lower to try. As bench-runner's
    `sweep::below`."""
    lowest = min(points, key=lambda p: p["value"])
    v = max(lowest["value"] // 2, floor)
    return v if any(lowest["recall_at_k"] >= t for t in targets) and v < lowest["value"] else None


values, more = peer.get("values", [None]), peer.get("more", [])
for i, v in enumerate(values + more):
    sweep.append(measure(v))
    # Peers marked `stop` end the sweep at --stop-recall; every peer ends it there before
    # its `more` values.
    if sweep[-1]["recall_at_k"] >= a.stop_recall and (peer.get("stop") or i + 1 >= len(values)):
        break
if values != [None]:
    while a.refine > 0 and (v := below(sweep, [0.90, 0.99], K)) is not None:
        sweep.append(measure(v))
    sweep += [measure(v) for v in refinements(sweep, [0.90, 0.99], a.refine)]
for rnd in range(1, max(a.rounds, 1)):
    for point in sweep:
        again = measure(point["value"] if values != [None] else None)
        point["qps_1t"] = max(point["qps_1t"], again["qps_1t"])
        point["qps_all"] = max(point["qps_all"], again["qps_all"])
sweep.sort(key=lambda p: p["value"])
for point in sweep:
    log(f"{point['param']}={point['value']:<7} recall@{K}={point['recall_at_k']:.4f} "
        f"qps 1 thread={point['qps_1t']:9.0f} all={point['qps_all']:9.0f}")

out = {
    "name": a.peer,
    "version": str(peer["version"]),
    "params": peer["params"],
    "build_s": build_s,
    "build_reused": cached,
    "load_s": load_s,
    "query_s": query_s,
    "total_s": load_s + query_s,
    "cold": {"load_s": cold_load_s, "query_s": cold_query_s, "total_s": cold_total_s,
             "file_read_s": file_read_s},
    "warmup": None,
    "query_median_s": median_s,
    "labels": [labels[int(i)] for i in head_ids if 0 <= int(i) < n],
    "recall_at_k": recall_at_k,
    "threshold_recall": None,
    "index_bytes": size_of(path),
    "knob": f"{peer['knob']}={peer['default']}" if "knob" in peer else None,
    "index_origin": "cached" if cached else "built",
    "index_file": path,
    "peak_rss_bytes": rss("VmHWM:") if rss_reset else None,
    "rss_before_bytes": rss_before,
    "threads": THREADS,
    "sweep": sweep,
}
print(json.dumps(out))
