"""face_search.hnswlib.Index against Python hnswlib 0.8.0: API, distances and files both ways."""

import os

import numpy as np
import pytest

import hnswlib as real
from face_search import hnswlib

from conftest import clustered, oracle


@pytest.fixture(scope="module")
def data():
    return clustered(n_people=30, per_person=4, distractors=1500, dim=48, seed=5)


def make(data, space="cosine", M=16, efc=100):
    p = hnswlib.Index(space=space, dim=data.shape[1])
    p.init_index(max_elements=len(data), ef_construction=efc, M=M, random_seed=1)
    p.add_items(data, np.arange(len(data)))
    return p


def test_the_notebooks_calls_and_conventions(data):
    p = make(data)
    assert (p.space, p.dim, p.M, p.ef_construction) == ("cosine", 48, 16, 100)
    assert p.get_current_count() == p.element_count == len(data)
    assert p.max_elements == p.get_max_elements() == len(data)
    assert p.ef == 10
    p.set_ef(100)
    assert p.ef == 100
    labels, distances = p.knn_query(data[5], k=4)
    assert labels.shape == distances.shape == (1, 4)
    assert labels.dtype == np.uint64 and distances.dtype == np.float32
    assert labels[0, 0] == 5 and abs(distances[0, 0]) < 1e-5
    want, scores = oracle(data, data[5], 4)
    np.testing.assert_array_equal(labels[0], want)
    np.testing.assert_allclose(distances[0], 1 - scores, atol=1e-5)
    labels, distances = p.knn_query(data[:10], k=3, num_threads=1)
    assert labels.shape == (10, 3)


@pytest.mark.parametrize("space", ["cosine", "ip", "l2"])
def test_distances_are_hnswlibs_in_every_space(space, data):
    p = make(data[:400], space=space)
    p.set_ef(400)
    q = data[600]
    labels, distances = p.knn_query(q, k=5)
    g = data[:400].astype(np.float64)
    if space == "cosine":
        d = 1 - (g / np.linalg.norm(g, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    elif space == "ip":
        d = 1 - g @ q
    else:
        d = ((g - q) ** 2).sum(axis=1)
    want = np.argsort(d, kind="stable")[:5]
    np.testing.assert_array_equal(labels[0], want)
    np.testing.assert_allclose(distances[0], d[want], rtol=1e-4, atol=1e-3)
    # The real hnswlib agrees on the distances of the same labels.
    r = real.Index(space=space, dim=data.shape[1])
    r.init_index(max_elements=400, ef_construction=100, M=16)
    r.add_items(data[:400], np.arange(400))
    r.set_ef(400)
    rl, rd = r.knn_query(q, k=5)
    np.testing.assert_array_equal(rl[0], labels[0])
    np.testing.assert_allclose(rd[0], distances[0], rtol=1e-4, atol=1e-3)


def test_custom_labels_incremental_adds_deletes_and_items(data):
    p = hnswlib.Index(space="cosine", dim=48)
    p.init_index(max_elements=100, M=16, ef_construction=100)
    p.add_items(data[:50], np.arange(1000, 1050))
    with pytest.raises(RuntimeError):
        p.add_items(data[50:200], np.arange(2000, 2150))
    p.resize_index(300)
    p.add_items(data[50:200], np.arange(2000, 2150))
    assert p.get_current_count() == 200
    p.set_ef(200)
    assert p.knn_query(data[60], k=1)[0][0, 0] == 2010
    assert p.knn_query(data[7], k=1)[0][0, 0] == 1007
    items = p.get_items([1007, 2010])
    np.testing.assert_allclose(items[0], data[7] / np.linalg.norm(data[7]), atol=1e-6)
    assert isinstance(p.get_items([1007], return_type="list"), list)
    p.mark_deleted(1007)
    assert 1007 not in p.knn_query(data[7], k=5)[0][0]
    with pytest.raises(RuntimeError):
        p.get_items([1007])
    with pytest.raises(RuntimeError):
        p.mark_deleted(99999)
    # Adding an existing label replaces its vector.
    p.add_items(data[300], [2010])
    assert p.knn_query(data[300], k=1)[0][0, 0] == 2010
    with pytest.raises(RuntimeError):
        p.resize_index(10)


def test_bad_input(data):
    with pytest.raises(ValueError):
        hnswlib.Index(space="hamming", dim=4)
    p = hnswlib.Index(space="cosine", dim=48)
    with pytest.raises(RuntimeError):
        p.add_items(data[:5])
    p.init_index(max_elements=10)
    with pytest.raises(ValueError):
        p.add_items(data[:5, :10])
    with pytest.raises(ValueError):
        p.add_items(data[:5], [1, 2])
    p.add_items(data[:5])
    with pytest.raises(ValueError):
        p.knn_query(data[0], k=0)
    with pytest.raises(ValueError):
        p.set_ef(0)


@pytest.mark.parametrize("space", ["cosine", "ip", "l2"])
def test_hnswlib_opens_our_files_and_finds_our_neighbours(space, data, tmp_path):
    p = make(data, space=space)
    path = str(tmp_path / "ours.bin")
    p.save_index(path)
    r = real.Index(space=space, dim=48)
    r.load_index(path)
    assert r.get_current_count() == len(data)
    r.set_ef(200)
    p.set_ef(200)
    queries = data[::50] + 0.01
    rl, rd = r.knn_query(queries, k=4)
    pl, pd = p.knn_query(queries, k=4)
    agree = np.mean([len(set(a) & set(b)) / 4 for a, b in zip(rl, pl)])
    assert agree >= 0.98
    np.testing.assert_allclose(rd[:, 0], pd[:, 0], atol=1e-3)


@pytest.mark.parametrize("space", ["cosine", "ip", "l2"])
def test_we_open_hnswlibs_files_and_find_its_neighbours(space, data, tmp_path):
    r = real.Index(space=space, dim=48)
    r.init_index(max_elements=len(data) + 10, ef_construction=100, M=16)
    r.add_items(data, np.arange(len(data)) * 3 + 7)
    r.mark_deleted(7 + 3 * 11)
    path = str(tmp_path / "theirs.bin")
    r.save_index(path)
    p = hnswlib.Index(space=space, dim=48)
    p.load_index(path)
    assert (p.M, p.ef_construction, p.ef) == (16, 100, 10)
    assert p.get_current_count() == len(data)
    assert p.max_elements == len(data) + 10
    r.set_ef(10)
    queries = data[::40] + 0.01
    # Same ef, same graph, same f32 distances: the same walk and the same answers.
    rl, rd = r.knn_query(queries, k=4)
    pl, pd = p.knn_query(queries, k=4)
    np.testing.assert_array_equal(rl, pl)
    np.testing.assert_allclose(rd, pd, rtol=1e-4, atol=1e-4)
    assert 7 + 3 * 11 not in p.knn_query(data[11], k=10)[0]
    np.testing.assert_allclose(p.get_items([10]), r.get_items([10]), atol=1e-6)


def test_corrupt_hnswlib_files(data, tmp_path):
    from face_search import FormatError

    path = tmp_path / "x.bin"
    make(data[:100]).save_index(str(path))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 9])
    p = hnswlib.Index(space="cosine", dim=48)
    with pytest.raises(FormatError, match="x.bin"):
        p.load_index(str(path))
    path.write_bytes(raw)
    with pytest.raises(FormatError):
        hnswlib.Index(space="cosine", dim=47).load_index(str(path))
    with pytest.raises(FileNotFoundError):
        p.load_index(str(tmp_path / "none.bin"))


def test_a_saved_index_reopens_from_its_mapped_copy(data, tmp_path):
    p = make(data, space="cosine")
    p.resize_index(len(data) + 3)
    p.add_items(data[:3] + 0.5, [9000, 9001, 9002])
    p.mark_deleted(5)
    path = str(tmp_path / "ours.bin")
    p.save_index(path)
    assert os.path.exists(path + ".fs") and os.path.exists(path + ".fs.json")
    q = hnswlib.Index(space="cosine", dim=48)
    q.load_index(path)
    assert q.get_current_count() == p.get_current_count()
    p.set_ef(50)
    q.set_ef(50)
    queries = np.vstack([data[::25] + 0.01, data[:3] + 0.5])
    np.testing.assert_array_equal(q.knn_query(queries, k=4)[0], p.knn_query(queries, k=4)[0])
    assert 5 not in q.knn_query(data[5], k=10)[0]
    # Another space does not take the copy: it reads hnswlib's file for that space.
    l2 = hnswlib.Index(space="l2", dim=48)
    l2.load_index(path)
    unit = data[7] / np.linalg.norm(data[7])
    assert l2.knn_query(unit, k=1)[1][0, 0] == pytest.approx(0.0, abs=1e-4)


def test_a_stale_mapped_copy_is_ignored(data, tmp_path):
    path = str(tmp_path / "ours.bin")
    make(data[:200]).save_index(path)
    # hnswlib overwrites the file with another index: the old .fs copy must not answer.
    r = real.Index(space="cosine", dim=48)
    r.init_index(max_elements=100, ef_construction=100, M=16)
    r.add_items(data[200:300], np.arange(100) + 5000)
    r.save_index(path)
    p = hnswlib.Index(space="cosine", dim=48)
    p.load_index(path)
    assert p.get_current_count() == 100
    labels, _ = p.knn_query(data[250], k=1)
    assert labels[0, 0] == 5050
