"""face_search.annoy.AnnoyIndex against Python annoy 1.17.3: API and files both ways."""

import math

import numpy as np
import pytest

from annoy import AnnoyIndex as RealAnnoy
from face_search import FormatError
from face_search.annoy import AnnoyIndex

from conftest import clustered, oracle


@pytest.fixture(scope="module")
def data():
    return clustered(n_people=30, per_person=4, distractors=1500, dim=40, seed=9)


def make(data, n_trees=10):
    t = AnnoyIndex(data.shape[1], "angular")
    for i, v in enumerate(data):
        t.add_item(i, v)
    t.set_seed(3)
    assert t.build(n_trees) is True
    return t


def test_the_notebooks_calls(data, tmp_path):
    t = make(data)
    assert t.get_n_items() == len(data) and t.get_n_trees() == 10 and t.f == 40
    path = str(tmp_path / "forest.ann")
    assert t.save(path) is True
    u = AnnoyIndex(40, "angular")
    assert u.load(path) is True
    assert u.get_n_items() == len(data) and u.get_n_trees() == 10
    labels = u.get_nns_by_vector(data[5], n=4)
    assert isinstance(labels, list) and labels[0] == 5
    ids, dist = u.get_nns_by_vector(data[5], 4, search_k=len(data) * 10, include_distances=True)
    want, scores = oracle(data, data[5], 4)
    assert ids == want.tolist()
    np.testing.assert_allclose(dist, np.sqrt(np.maximum(0, 2 - 2 * scores)), atol=1e-4)
    assert u.get_nns_by_item(5, 4, search_k=len(data) * 10) == ids
    v = np.asarray(u.get_item_vector(5))
    np.testing.assert_allclose(v, data[5] / np.linalg.norm(data[5]), atol=1e-6)
    a, b = data[1].astype(np.float64), data[2].astype(np.float64)
    cos = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    assert math.isclose(u.get_distance(1, 2), math.sqrt(2 - 2 * cos), abs_tol=1e-5)
    assert u.unload() is True and u.get_n_items() == 0


def test_bad_input(data, tmp_path):
    with pytest.raises(ValueError):
        AnnoyIndex(40, "hamming")
    t = AnnoyIndex(40, "angular")
    with pytest.raises(ValueError):
        t.add_item(0, data[0][:5])
    with pytest.raises(ValueError):
        t.add_item(-1, data[0])
    t.add_item(0, data[0])
    t.add_item(2, data[2])  # item 1 missing: a zero vector
    with pytest.raises(ValueError, match="row 1"):
        t.build(2)
    with pytest.raises(FileNotFoundError):
        AnnoyIndex(40, "angular").load(str(tmp_path / "none.ann"))
    (tmp_path / "odd.ann").write_bytes(b"\1" * 1001)
    with pytest.raises(FormatError, match="odd.ann"):
        AnnoyIndex(40, "angular").load(str(tmp_path / "odd.ann"))


def test_on_disk_build(data, tmp_path):
    t = AnnoyIndex(40, "angular")
    t.on_disk_build(str(tmp_path / "disk.ann"))
    for i, v in enumerate(data[:300]):
        t.add_item(i, v)
    t.build(5)
    assert (tmp_path / "disk.ann").exists()
    r = RealAnnoy(40, "angular")
    r.load(str(tmp_path / "disk.ann"))
    assert r.get_n_items() == 300


def test_annoy_opens_our_files_and_finds_our_neighbours(data, tmp_path):
    t = make(data)
    path = str(tmp_path / "ours.ann")
    t.save(path)
    r = RealAnnoy(40, "angular")
    r.load(path)
    assert r.get_n_items() == len(data) and r.get_n_trees() == t.get_n_trees()
    big = len(data) * 10  # every candidate: both exact
    for q in data[::60] + 0.01:
        ours = t.get_nns_by_vector(q, 5, search_k=big, include_distances=True)
        theirs = r.get_nns_by_vector(q, 5, search_k=big, include_distances=True)
        assert ours[0] == theirs[0]
        np.testing.assert_allclose(ours[1], theirs[1], atol=1e-4)
    # Same file, same search_k: the same candidates, so the same answers.
    for q in data[::60] + 0.01:
        assert t.get_nns_by_vector(q, 5, search_k=300) == r.get_nns_by_vector(q, 5, search_k=300)


def test_we_open_annoys_files_and_find_its_neighbours(data, tmp_path):
    r = RealAnnoy(40, "angular")
    for i, v in enumerate(data):
        r.add_item(i, v.tolist())
    r.set_seed(1)
    r.build(10)
    path = str(tmp_path / "theirs.ann")
    r.save(path)
    t = AnnoyIndex(40, "angular")
    t.load(path)
    assert t.get_n_items() == r.get_n_items() and t.get_n_trees() == r.get_n_trees()
    for q in data[::60] + 0.01:
        for sk in (200, 2000):
            assert t.get_nns_by_vector(q, 5, search_k=sk) == r.get_nns_by_vector(q, 5, search_k=sk)
    ids, dist = t.get_nns_by_item(3, 3, search_k=100000, include_distances=True)
    rids, rdist = r.get_nns_by_item(3, 3, search_k=100000, include_distances=True)
    assert ids == rids
    np.testing.assert_allclose(dist, rdist, atol=1e-4)
