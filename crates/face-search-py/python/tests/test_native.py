"""The native API: LinearIndex, HnswIndex, ForestIndex, galleries, errors, threads."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import face_search
from face_search import FormatError, ForestIndex, HnswIndex, LinearIndex

from conftest import clustered, oracle

# Small builds: HNSW with a light graph, the forest with few trees.
PARAMS = {
    LinearIndex: {},
    HnswIndex: {"m": 12, "ef_construction": 80, "ef": 64},
    ForestIndex: {"n_trees": 8},
}
ALL = list(PARAMS)


def build(cls, vectors):
    return cls.build(vectors, **PARAMS[cls])


def recall(got, want):
    return len(set(got.tolist()) & set(want.tolist())) / len(want)


@pytest.mark.parametrize("cls", ALL)
def test_build_search_save_load(cls, gallery, tmp_path):
    index = build(cls, gallery)
    assert len(index) == len(gallery) and index.dim == gallery.shape[1]
    ids, scores = index.search(gallery[3], k=5)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    assert ids.shape == scores.shape == (5,)
    want, want_scores = oracle(gallery, gallery[3], 5)
    assert ids[0] == 3 and recall(ids, want) >= 0.8
    assert np.all(np.diff(scores) <= 0)
    path = tmp_path / "index.bin"
    index.save(path)
    back = cls.load(path)
    assert type(back) is cls and len(back) == len(index)
    ids2, scores2 = back.search(gallery[3], k=5)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_allclose(scores, scores2, atol=1e-6)
    assert type(face_search.load(path)) is cls


@pytest.mark.parametrize("cls", ALL)
def test_batches_match_single_queries_on_any_layout_and_dtype(cls, gallery):
    index = build(cls, gallery)
    queries = gallery[:20] + 0.01
    ids, scores = index.search(queries, k=4)
    assert ids.shape == scores.shape == (20, 4)
    for i, q in enumerate(queries):
        one_ids, _ = index.search(q, k=4)
        np.testing.assert_array_equal(ids[i], one_ids)
    for variant in (np.asfortranarray(queries), queries.astype(np.float64), queries.tolist()):
        np.testing.assert_array_equal(index.search(variant, k=4)[0], ids)
    np.testing.assert_array_equal(index.search(queries, k=4, num_threads=1)[0], ids)
    # A batch asking for more than the index holds gets len(index) columns.
    small = cls.build(gallery[:6], **PARAMS[cls])
    assert small.search(gallery[:2], k=10)[0].shape == (2, 6)


@pytest.mark.parametrize("cls", ALL)
def test_fortran_and_float64_galleries_build_the_same_index(cls, gallery):
    a = build(cls, gallery[:500])
    for g in (np.asfortranarray(gallery[:500]), gallery[:500].astype(np.float64)):
        b = build(cls, g)
        np.testing.assert_array_equal(a.search(gallery[7], 5)[0], b.search(gallery[7], 5)[0])


def test_threshold_search_is_exact_for_linear(gallery):
    index = LinearIndex.build(gallery)
    q = gallery[10]
    ids, scores = index.search_threshold(q, 0.35)
    cos = (gallery @ q) / (np.linalg.norm(gallery, axis=1) * np.linalg.norm(q))
    assert set(ids.tolist()) == set(np.flatnonzero(cos > 0.35).tolist())
    assert np.all(scores > 0.35) and np.all(np.diff(scores) <= 0)


@pytest.mark.parametrize("cls", ALL)
def test_bad_input_raises_value_error(cls, gallery):
    index = build(cls, gallery[:300])
    bad = [
        (gallery[0][:10], 4),                       # wrong dimension
        (np.full(64, np.nan, np.float32), 4),       # NaN
        (np.zeros(64, np.float32), 4),              # zero vector
        (gallery[0], 0),                            # k = 0
        (gallery[0], -3),                           # k < 0
        (gallery[0].astype(np.int32), 4),           # wrong dtype
        (gallery[:2].reshape(1, 2, 64), 4),         # wrong ndim
    ]
    for q, k in bad:
        with pytest.raises(ValueError):
            index.search(q, k)
    for tau in (1.5, -1.01, float("nan")):
        with pytest.raises(ValueError):
            index.search_threshold(gallery[0], tau)
    with pytest.raises(ValueError):
        cls.build(np.zeros((0, 64), np.float32))
    with pytest.raises(ValueError, match="row 2"):
        g = gallery[:10].copy()
        g[2] = 0
        cls.build(g)
    with pytest.raises(ValueError):
        cls.build(gallery[:10], no_such_parameter=1)
    with pytest.raises(ValueError):
        cls.build(gallery[0])
    with pytest.raises(ValueError):
        cls.build(["not", "numbers"])


@pytest.mark.parametrize("cls", ALL)
def test_files_missing_corrupt_and_failed_writes(cls, gallery, tmp_path):
    with pytest.raises(FileNotFoundError):
        cls.load(tmp_path / "missing.bin")
    index = build(cls, gallery[:300])
    path = tmp_path / "index.bin"
    index.save(path)
    good = path.read_bytes()
    for damaged in (good[: len(good) // 2], good[:40], b"garbage" * 10):
        bad = tmp_path / "bad.bin"
        bad.write_bytes(damaged)
        with pytest.raises(FormatError) as e:
            cls.load(bad)
        assert "bad.bin" in str(e.value)
        assert isinstance(e.value, ValueError)
    # A failed write raises OSError and leaves the previous file as it was.
    with pytest.raises(OSError):
        index.save(tmp_path / "no_such_dir" / "index.bin")
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "index.bin").write_bytes(good)
    os.chmod(ro, 0o500)
    try:
        if os.geteuid() != 0:  # root writes anywhere
            with pytest.raises(OSError):
                build(cls, gallery[:50]).save(ro / "index.bin")
    finally:
        os.chmod(ro, 0o700)
    assert (ro / "index.bin").read_bytes() == good


def test_loading_another_engines_file_is_a_format_error(gallery, tmp_path):
    path = tmp_path / "linear.bin"
    LinearIndex.build(gallery[:50]).save(path)
    with pytest.raises(FormatError, match="linear"):
        HnswIndex.load(path)


def test_hnsw_add_delete_and_knob(gallery):
    index = HnswIndex.build(gallery[:1000], m=12, ef_construction=80)
    assert index.ef == 100
    index.ef = 20
    assert index.ef == 20
    ids = index.add(gallery[1000:1100])
    np.testing.assert_array_equal(ids, np.arange(1000, 1100))
    assert len(index) == 1100
    assert index.search(gallery[1050], 1)[0][0] == 1050
    index.delete(1050)
    assert len(index) == 1099
    assert 1050 not in index.search(gallery[1050], 10)[0]
    with pytest.raises(ValueError):
        index.delete(1050)
    np.testing.assert_allclose(
        index.get_vectors([3])[0], gallery[3] / np.linalg.norm(gallery[3]), atol=1e-6
    )
    with pytest.raises(ValueError):
        index.ef = 0


def test_forest_knob(gallery):
    index = ForestIndex.build(gallery, n_trees=4)
    index.search_k = len(gallery) * 4
    assert index.search_k == len(gallery) * 4
    want, _ = oracle(gallery, gallery[11] + 0.1, 10)
    np.testing.assert_array_equal(index.search(gallery[11] + 0.1, 10)[0], want)


def test_engines_lists_every_engine_and_its_parameters():
    e = face_search.engines()
    assert list(e) == ["linear", "hnsw", "forest"]
    assert e["hnsw"]["params"]["m"][0] == "48"


def test_gallery_files_round_trip_with_numpy(tmp_path, gallery):
    labels = [f"id{i:03d}_{j}" for i in range(10) for j in range(5)]
    path = tmp_path / "search_data.npy"
    face_search.write_gallery(path, gallery[:50].astype(np.float64), labels)
    with open(path, "rb") as f:
        v, l = np.load(f), np.load(f)
    np.testing.assert_allclose(v, gallery[:50], atol=1e-6)
    assert l.tolist() == labels
    # And the notebook's own file reads back.
    with open(tmp_path / "nb.npy", "wb") as f:
        np.save(f, gallery[:50].astype(np.float64))
        np.save(f, np.asarray(labels))
    vectors, got = face_search.read_gallery(tmp_path / "nb.npy")
    assert vectors.dtype == np.float32 and vectors.shape == (50, 64)
    assert got.dtype.kind == "U" and got.tolist() == labels
    (tmp_path / "cut.npy").write_bytes((tmp_path / "nb.npy").read_bytes()[:300])
    with pytest.raises(FormatError, match="cut.npy"):
        face_search.read_gallery(tmp_path / "cut.npy")
    with pytest.raises(FileNotFoundError):
        face_search.read_gallery(tmp_path / "none.npy")
    with pytest.raises(ValueError):
        face_search.write_gallery(tmp_path / "x.npy", gallery[:3], ["a"])


@pytest.mark.parametrize("cls", ALL)
def test_threads_querying_one_index_agree_with_one_thread(cls, gallery):
    index = build(cls, gallery)
    queries = gallery[::7] + 0.05
    want = [index.search(q, 5)[0] for q in queries]
    results = {}

    def worker(t):
        results[t] = [index.search(q, 5)[0] for q in queries]

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in results.values():
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_the_gil_is_released_during_a_search():
    """A Python thread keeps running while another thread runs a long batch search."""
    rng = np.random.default_rng(3)
    g = rng.normal(size=(20000, 128)).astype(np.float32)
    index = LinearIndex.build(g)
    ticks = []
    done = threading.Event()

    def ticker():
        while not done.is_set():
            ticks.append(1)
            done.wait(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    for _ in range(3):
        index.search(g[:2000], 10, num_threads=1)
    done.set()
    t.join()
    assert len(ticks) > 20


CTRL_C = r"""
import signal, sys, threading, time, os
import numpy as np, face_search
# A shell that starts the tests in the background makes them ignore SIGINT: undo that, as
# an interactive Python has it.
signal.signal(signal.SIGINT, signal.default_int_handler)
g = np.random.default_rng(0).normal(size=(60000, 128)).astype(np.float32)
threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
t = time.time()
try:
    face_search.HnswIndex.build(g, m=48, ef_construction=400, quantize=False)
    print("finished", time.time() - t)
except KeyboardInterrupt:
    print("interrupted", time.time() - t)
"""


def test_ctrl_c_stops_a_long_build():
    out = subprocess.run([sys.executable, "-c", CTRL_C], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    word, seconds = out.stdout.split()
    assert word == "interrupted"
    assert float(seconds) < 5.0


@settings(max_examples=40, deadline=None)
@given(
    data=st.integers(min_value=1, max_value=60).flatmap(
        lambda n: st.tuples(
            hnp.arrays(np.float32, (n, 8), elements=st.floats(-10, 10, width=32, allow_subnormal=False)),
            hnp.arrays(np.float32, (8,), elements=st.floats(-10, 10, width=32, allow_subnormal=False)),
            st.integers(1, 70),
        )
    )
)
def test_linear_equals_the_numpy_oracle(data):
    g, q, k = data
    norms = np.linalg.norm(g.astype(np.float64), axis=1)
    if np.any(norms == 0) or not np.any(q):
        with pytest.raises(ValueError):
            LinearIndex.build(g).search(q, k)
        return
    ids, scores = LinearIndex.build(g).search(q, k)
    want_ids, want_scores = oracle(g, q, k)
    assert len(ids) == min(k, len(g))
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    # Ids agree except where scores tie within rounding.
    for a, b, s in zip(ids, want_ids, want_scores):
        if a != b:
            assert abs(scores[list(ids).index(a)] - s) < 1e-5


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(5, 200),
    k=st.integers(1, 10),
    seed=st.integers(0, 2**32 - 1),
    cls=st.sampled_from([HnswIndex, ForestIndex]),
)
def test_approximate_engines_are_exact_with_the_knob_at_its_maximum(n, k, seed, cls):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(n, 16)).astype(np.float32)
    q = rng.normal(size=16).astype(np.float32)
    # Parallel builds (the default): every row must be reachable (a parallel build of a
    # handful of rows once left rows without an incoming link).
    index = cls.build(g, **PARAMS[cls])
    if cls is HnswIndex:
        index.ef = n
    else:
        index.search_k = n * 8 * 4
    ids, scores = index.search(q, k)
    want, want_scores = oracle(g, q, k)
    np.testing.assert_allclose(scores, want_scores, atol=1e-4)
    assert recall(ids, want) >= (1.0 if cls is ForestIndex else 0.9)


@settings(max_examples=30, deadline=None)
@given(tau=st.floats(-1, 1), seed=st.integers(0, 1000))
def test_threshold_search_matches_the_oracle(tau, seed):
    g = clustered(n_people=5, per_person=3, distractors=100, dim=16, seed=seed)
    q = g[0]
    ids, scores = LinearIndex.build(g).search_threshold(q, tau)
    cos = (g.astype(np.float64) @ q) / (np.linalg.norm(g, axis=1) * np.linalg.norm(q))
    sure = set(np.flatnonzero(cos > tau + 1e-5).tolist())
    maybe = set(np.flatnonzero(cos > tau - 1e-5).tolist())
    assert sure <= set(ids.tolist()) <= maybe
