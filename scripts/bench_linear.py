"""Peer side of scripts/bench_linear.sh: faiss IndexFlatIP (and a numpy scan for the memory
bandwidth) on the files the Rust example wrote, and the side-by-side report.

    python bench_linear.py faiss DIR --repeats R --k K --tau T   -> one JSON line of medians
    python bench_linear.py report RUST.jsonl FAISS.jsonl           -> the comparison table

Everything is timed in this process on the same gallery and queries as the Rust side, with
faiss's default threads (OpenMP, all cores).
"""
import json
import statistics
import sys
import time


def load_npy_gallery(path):
    import numpy as np

    with open(path, "rb") as f:
        vectors = np.load(f)
        np.load(f)  # the labels
    return vectors


def unit(x):
    import numpy as np

    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def faiss_side(directory, repeats, k, tau, single_queries):
    import faiss
    import numpy as np

    gallery = unit(load_npy_gallery(f"{directory}/gallery.npy"))
    queries = unit(load_npy_gallery(f"{directory}/queries.npy"))
    n, d = gallery.shape
    index = faiss.IndexFlatIP(d)
    index.add(gallery)
    path = f"{directory}/faiss_flat.index"
    faiss.write_index(index, path)
    loads = []
    for _ in range(max(repeats, 3)):
        t = time.perf_counter()
        loaded = faiss.read_index(path)
        loads.append(time.perf_counter() - t)
        del loaded
    single, ids = [], []
    cpu0 = time.process_time()
    for r in range(repeats):
        for q in queries[:single_queries]:
            t = time.perf_counter()
            _, i = index.search(q[None, :], k)
            single.append(time.perf_counter() - t)
            if r == 0:
                ids.append(i[0].tolist())
    single_cpu = (time.process_time() - cpu0) / len(single)
    thr = []
    for _ in range(repeats):
        for q in queries[:single_queries]:
            t = time.perf_counter()
            index.range_search(q[None, :], tau)
            thr.append(time.perf_counter() - t)
    batch = []
    cpu0 = time.process_time()
    for _ in range(repeats):
        t = time.perf_counter()
        index.search(queries, k)
        batch.append(time.perf_counter() - t)
    batch_cpu = (time.process_time() - cpu0) / len(batch)
    batch_thr = []
    for _ in range(repeats):
        t = time.perf_counter()
        index.range_search(queries, tau)
        batch_thr.append(time.perf_counter() - t)
    # The memory-bandwidth yardstick: numpy's matrix-vector product over the f32 gallery.
    matvec = []
    for r in range(repeats):
        for q in queries[:10]:
            t = time.perf_counter()
            gallery @ q
            matvec.append(time.perf_counter() - t)
    gemm = []
    for _ in range(repeats):
        t = time.perf_counter()
        queries @ gallery.T
        gemm.append(time.perf_counter() - t)
    print(json.dumps({
        "engine": "faiss.IndexFlatIP", "faiss": faiss.__version__, "numpy": np.__version__,
        "n": n, "dim": d, "queries": len(queries), "k": k, "tau": tau,
        "load_s": statistics.median(loads), "single_s": statistics.median(single), "single_cpu_s": single_cpu,
        "threshold_s": statistics.median(thr), "batch_s": statistics.median(batch), "batch_cpu_s": batch_cpu,
        "batch_threshold_s": statistics.median(batch_thr),
        "numpy_matvec_s": statistics.median(matvec), "numpy_gemm_s": statistics.median(gemm),
        "ids": ids,
    }))


def report(rust_path, faiss_path):
    rust = [json.loads(l) for l in open(rust_path) if l.strip()]
    peer = [json.loads(l) for l in open(faiss_path) if l.strip()]
    med = lambda rows, key: statistics.median(r[key] for r in rows)
    r0, f0 = rust[0], peer[0]
    n, d, nq, k = r0["n"], r0["dim"], r0["queries"], r0["k"]
    f32_bytes = n * d * 4
    print(f"gallery {n} x {d}, {nq} queries, k = {k}, tau = {r0['tau']}; "
          f"{len(rust)} rounds, ours and faiss alternating; medians of per-round medians")
    print(f"ours: {r0['threads']} rayon threads, {r0['kernel']} kernels; faiss {f0['faiss']}")
    rows = [
        ("load (warm page cache)", "load_s", "load_s"),
        ("single query top-k", "single_s", "single_s"),
        ("single query cos > tau", "threshold_s", "threshold_s"),
        (f"batch of {nq} top-k", "batch_s", "batch_s"),
        (f"batch of {nq} cos > tau", "batch_threshold_s", "batch_threshold_s"),
    ]
    print(f"{'':28} {'ours (ms)':>11} {'faiss (ms)':>11} {'ours/faiss':>11}")
    for name, rk, fk in rows:
        a, b = med(rust, rk) * 1e3, med(peer, fk) * 1e3
        print(f"{name:28} {a:11.3f} {b:11.3f} {a / b:11.3f}")
    for name, key in [("single top-k, CPU time", "single_cpu_s"), (f"batch of {nq}, CPU time", "batch_cpu_s")]:
        if key in r0 and key in f0:
            a, b = med(rust, key) * 1e3, med(peer, key) * 1e3
            print(f"{name:28} {a:11.3f} {b:11.3f} {a / b:11.3f}")
    a = med(rust, "load_first_query_s") * 1e3
    print(f"{'load + first query (ours)':28} {a:11.3f}")
    a = med(rust, "single_f32_s") * 1e3
    print(f"{'single, plain f32 scan':28} {a:11.3f} {med(peer, 'single_s') * 1e3:11.3f} "
          f"{a / (med(peer, 'single_s') * 1e3):11.3f}")
    mv, gm = med(peer, "numpy_matvec_s"), med(peer, "numpy_gemm_s")
    single, single32 = med(rust, "single_s"), med(rust, "single_f32_s")
    print("bytes scanned per second (single query):")
    print(f"  ours, compact scan: {r0['single_bytes'] / 1e6:8.1f} MB/query -> "
          f"{r0['single_bytes'] / single / 1e9:6.1f} GB/s read, "
          f"{f32_bytes / single / 1e9:6.1f} GB/s of f32 gallery answered")
    if "threshold_bytes" in r0:
        thr = med(rust, "threshold_s")
        print(f"  ours, compact, tau: {r0['threshold_bytes'] / 1e6:8.1f} MB/query -> "
              f"{r0['threshold_bytes'] / thr / 1e9:6.1f} GB/s read")
    print(f"  ours, f32 scan:     {r0['single_f32_bytes'] / 1e6:8.1f} MB/query -> "
          f"{r0['single_f32_bytes'] / single32 / 1e9:6.1f} GB/s")
    print(f"  faiss IndexFlatIP:  {f32_bytes / 1e6:8.1f} MB/query -> "
          f"{f32_bytes / med(peer, 'single_s') / 1e9:6.1f} GB/s")
    print(f"  numpy gallery @ q (memory-bandwidth yardstick): {mv * 1e3:.3f} ms -> "
          f"{f32_bytes / mv / 1e9:.1f} GB/s")
    print(f"  numpy queries @ gallery.T (GEMM yardstick): {gm * 1e3:.1f} ms -> "
          f"{2 * nq * n * d / gm / 1e9:.0f} GFLOP/s; ours batch "
          f"{2 * nq * n * d / med(rust, 'batch_s') / 1e9:.0f} GFLOP/s incl. selection")
    # Exactness: our top-k against faiss's (faiss may swap rows whose scores tie to rounding).
    nq = len(r0["ids"])
    same = sum(a == b for a, b in zip(r0["ids"], f0["ids"]))
    same_sets = sum(set(a) == set(b) for a, b in zip(r0["ids"], f0["ids"]))
    print(f"top-{k} lists identical to faiss: {same}/{nq} (same sets: {same_sets}/{nq})")
    print("per-round ratios ours/faiss: single " +
          " ".join(f"{r['single_s'] / f['single_s']:.2f}" for r, f in zip(rust, peer)) +
          "; batch " + " ".join(f"{r['batch_s'] / f['batch_s']:.2f}" for r, f in zip(rust, peer)))


if __name__ == "__main__":
    if sys.argv[1] == "faiss":
        args = dict(zip(sys.argv[3::2], sys.argv[4::2]))
        faiss_side(sys.argv[2], int(args.get("--repeats", 3)), int(args.get("--k", 10)),
                   float(args.get("--tau", 0.35)), int(args.get("--single-queries", 10**9)))
    elif sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")
