"""face_search.distributed on a real Ray cluster of two nodes started on this machine.

The session fixture ``cluster`` starts the nodes with :class:`LocalCluster` (the helper
scripts/distributed_bench.py uses too): ``ray start --head --block`` and ``ray start
--address=127.0.0.1:<port> --block``, each in its own process group and temp dir under
target/, then connects (``ray.init``). Its teardown, also when tests fail, disconnects and
stops exactly the processes it recorded (the two ``ray start`` processes and their
descendants, by pid: SIGTERM, SIGKILL after 5 s) and fails if any of them survives.

The tests that need the cluster are skipped (with the reason) only when ray is not installed;
scripts/pyenv.sh --package installs it, so `cargo test` runs them.
"""

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

try:
    import ray
except ImportError:
    ray = None

from face_search import HnswIndex, LinearIndex
from face_search.distributed import (
    LocalCluster,
    SearchResult,
    ShardedIndex,
    ShardFileError,
    ShardUnavailableError,
    build_sharded,
    read_manifest,
)

ROOT = pathlib.Path(__file__).resolve().parents[4]
DIM = 512
HNSW = {"m": 16, "ef_construction": 100}


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="session")
def cluster():
    if ray is None:
        pytest.skip("ray is not installed (scripts/pyenv.sh --package installs it)")
    temp = ROOT / "target" / f"ray{os.getpid()}"
    c = LocalCluster(nodes=2, cpus_per_node=2, object_store_bytes=200_000_000, temp_dir=temp, stop_grace=5.0)
    try:
        c.start()
        yield c
    finally:
        recorded = c.pids
        survivors = c.stop()
    # The two `ray start` processes, GCS, two raylets and more were recorded, and none is left.
    assert len(recorded) >= 5, recorded
    assert survivors == [], f"Ray processes left running: {survivors}"
    assert c.alive_pids() == []
    assert not temp.exists()  # its temp dirs and logs are gone too


@pytest.fixture(scope="session")
def faces():
    """20,000 x 512 face-like unit vectors (a 64-dimensional latent space spread over 512
    components, plus noise): 400 people with 10 images each (cosine ~0.6 to their other
    images) shuffled among 16,000 other faces; 60 queries (50 new images of gallery people,
    10 other faces) and every row's label."""
    rng = np.random.default_rng(17)
    basis = rng.normal(size=(64, DIM))

    def face(n):
        return _unit(rng.normal(size=(n, 64)) @ basis + 0.3 * np.sqrt(64 / DIM) * rng.normal(size=(n, DIM)))

    centres = face(400)
    people = _unit(np.repeat(centres, 10, axis=0) + 0.035 * rng.normal(size=(4000, DIM)))
    gallery = np.concatenate([people, face(16000)])
    labels = np.array([f"person{i // 10}" for i in range(4000)] + [f"face{i}" for i in range(16000)])
    order = rng.permutation(len(gallery))
    gallery, labels = np.ascontiguousarray(gallery[order]), labels[order]
    who = rng.integers(0, 400, size=50)
    queries = np.concatenate([_unit(centres[who] + 0.035 * rng.normal(size=(50, DIM))), face(10)])
    return gallery, labels, queries


@pytest.fixture(scope="session")
def exact(faces):
    return LinearIndex.build(faces[0])


@pytest.fixture(scope="session")
def linear_folders(cluster, faces, tmp_path_factory):
    """The faces sharded (linear engine) over 1, 2 and 4 shards: {shards: folder}."""
    gallery, labels, _ = faces
    out = {}
    for shards in (1, 2, 4):
        folder = tmp_path_factory.mktemp(f"linear{shards}")
        build_sharded(gallery, labels, folder, engine="linear", shards=shards)
        out[shards] = folder
    return out


def _copy(folder, tmp_path):
    dest = tmp_path / "gallery"
    shutil.copytree(folder, dest)
    return dest


def _replica_search(index, shard, replica, queries, k):
    """One replica's own answer (global ids, scores), bypassing the fan-out."""
    gen = index.manifest["shards"][shard]["generation"]
    actor = index._actors[shard][replica]
    return ray.get(actor.search.remote(np.atleast_2d(queries).astype(np.float32), k, gen, None), timeout=30)


# ---------------------------------------------------------------------------------------


def test_face_search_imports_without_ray():
    code = (
        "import sys; sys.modules['ray'] = None\n"  # makes `import ray` fail
        "import face_search, face_search.distributed as d\n"
        "try:\n    d._ray()\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "needs ray" in out.stdout


def test_build_writes_balanced_range_shards_and_a_manifest(linear_folders, faces):
    gallery, labels, _ = faces
    m = read_manifest(linear_folders[4])
    assert m["engine"] == "linear" and m["dim"] == DIM and m["by"] == "range"
    counts = [s["count"] for s in m["shards"]]
    assert counts == [5000] * 4 and sum(counts) == len(gallery)
    assert [s["base"] for s in m["shards"]] == [0, 5000, 10000, 15000]
    for s in m["shards"]:
        assert os.path.exists(linear_folders[4] / s["file"])
        shard_labels = np.load(linear_folders[4] / s["labels"])
        assert shard_labels.tolist() == labels[s["base"] : s["base"] + s["count"]].tolist()
    # No temporary file is left behind, and a folder holding a gallery is not overwritten.
    assert not [f for f in os.listdir(linear_folders[4]) if f.endswith(".tmp")]
    with pytest.raises(FileExistsError):
        build_sharded(gallery[:10], labels[:10], linear_folders[4], engine="linear", shards=2)


@pytest.mark.parametrize("shards", [1, 2, 4])
def test_exact_engine_sharded_answers_exactly_like_one_index(shards, linear_folders, faces, exact, cluster):
    gallery, labels, queries = faces
    replicas = 2 if shards == 4 else 1
    with ShardedIndex.open(linear_folders[shards], replicas=replicas) as index:
        assert len(index) == len(gallery) and index.num_shards == shards
        ids, scores = index.search(queries, k=10)
        want_ids, want_scores = exact.search(queries, k=10)
        assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == (60, 10)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_array_equal(scores, want_scores)
        assert index.labels(ids).tolist() == labels[ids].tolist()
        for q in queries[:5]:
            one = index.search(q, k=7)
            assert isinstance(one, SearchResult) and not one.partial
            np.testing.assert_array_equal(one.ids, exact.search(q, k=7)[0])
            np.testing.assert_array_equal(one.scores, exact.search(q, k=7)[1])
        hits = 0
        for q in queries[:50:5]:
            got = index.search_threshold(q, 0.35)
            want = exact.search_threshold(q, 0.35)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
            hits += len(got[0])
        assert hits >= 50  # the people give threshold search something to find
        if shards == 4:
            # Replicas of one shard run on different nodes, and every node serves.
            placement = index.placement()
            assert all(len(set(nodes)) == 2 for nodes in placement), placement
            assert {n for nodes in placement for n in nodes} == set(cluster.node_ids())


def test_bad_queries_raise_value_error(linear_folders, faces):
    with ShardedIndex.open(linear_folders[2]) as index:
        with pytest.raises(ValueError):
            index.search(faces[2][:, :10], 4)
        with pytest.raises(ValueError):
            index.search(faces[2], 0)
        with pytest.raises(ValueError):
            index.search(np.zeros(DIM, np.float32), 4)  # raised in the actors, re-raised here
        with pytest.raises(ValueError):
            index.search_threshold(faces[2][0], 1.5)


def test_hnsw_sharded_recall_is_within_a_point_of_one_index(cluster, faces, exact, tmp_path):
    gallery, labels, queries = faces
    rng = np.random.default_rng(5)
    more = _unit(gallery[rng.choice(len(gallery), 140, replace=False)] + 0.03 * rng.normal(size=(140, DIM)))
    q = np.concatenate([queries, more])
    want, _ = exact.search(q, 10)

    def recall(ids):
        return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), want.tolist())])

    single = recall(HnswIndex.build(gallery, **HNSW).search(q, 10)[0])
    build_sharded(gallery, labels, tmp_path, engine="hnsw", shards=2, params=HNSW)
    with ShardedIndex.open(tmp_path) as index:
        sharded = recall(index.search(q, 10)[0])
    # Sharding costs no recall (each shard is searched with the same ef, so it usually gains).
    assert single > 0.95
    assert sharded >= single - 0.01, (sharded, single)


def test_a_replica_killed_during_queries_changes_no_answer(linear_folders, faces, exact):
    gallery, _, queries = faces
    rng = np.random.default_rng(9)
    q = np.concatenate([queries, _unit(gallery[rng.choice(len(gallery), 140)] + 0.05 * rng.normal(size=(140, DIM)))])
    want_ids, want_scores = exact.search(q, 5)
    with ShardedIndex.open(linear_folders[2], replicas=2) as index:
        restarted, killed = index._actors[0][0], index._actors[1][1]
        pid_before = ray.get(restarted.ready.remote(), timeout=30)["pid"]
        done = [0]
        progress = threading.Condition()

        def killer():
            with progress:
                progress.wait_for(lambda: done[0] >= 30, timeout=60)
            ray.kill(restarted, no_restart=False)  # Ray restarts it
            with progress:
                progress.wait_for(lambda: done[0] >= 90, timeout=60)
            ray.kill(killed, no_restart=True)  # gone for good

        t = threading.Thread(target=killer)
        t.start()
        try:
            for i in range(len(q)):
                if i % 40 == 39:  # now and then a batch, in flight while a replica dies
                    ids, scores = index.search(q, 5)
                    np.testing.assert_array_equal(ids, want_ids)
                    np.testing.assert_array_equal(scores, want_scores)
                ids, scores = index.search(q[i], 5)
                np.testing.assert_array_equal(ids, want_ids[i])
                np.testing.assert_array_equal(scores, want_scores[i])
                with progress:
                    done[0] += 1
                    progress.notify_all()
        finally:
            t.join()
        # Both kills happened: one replica came back as a new process, the other is dead, and
        # queries went to the other replicas meanwhile.
        assert index.failovers >= 1
        deadline = time.monotonic() + 30
        while True:
            try:
                pid_after = ray.get(restarted.ready.remote(), timeout=30)["pid"]
                break
            except ray.exceptions.ActorUnavailableError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert pid_after != pid_before
        with pytest.raises(ray.exceptions.ActorDiedError):
            ray.get(killed.ready.remote(), timeout=30)
        ids, scores = index.search(q, 5)
        np.testing.assert_array_equal(ids, want_ids)


def test_a_frozen_replica_is_given_up_after_the_timeout(linear_folders, faces, exact):
    """A replica whose process is stopped (SIGSTOP) answers nothing: after ``timeout``
    seconds its part goes to the other replica, and the query still answers."""
    queries = faces[2]
    want_ids, _ = exact.search(queries, 5)
    with ShardedIndex.open(linear_folders[2], replicas=2, timeout=2) as index:
        pid = ray.get(index._actors[0][0].ready.remote(), timeout=30)["pid"]
        os.kill(pid, signal.SIGSTOP)
        try:
            for _ in range(3):  # round-robin reaches the frozen replica within two calls
                t = time.monotonic()
                ids, _ = index.search(queries, 5)
                np.testing.assert_array_equal(ids, want_ids)
                assert time.monotonic() - t < 10
            assert index.failovers >= 1
        finally:
            os.kill(pid, signal.SIGCONT)


def test_a_shard_without_live_replicas_fails_or_answers_marked_partial(linear_folders, faces):
    gallery, _, queries = faces
    with ShardedIndex.open(linear_folders[2], replicas=2, timeout=10) as index:
        for actor in index._actors[1]:
            ray.kill(actor, no_restart=True)
        t = time.monotonic()
        with pytest.raises(ShardUnavailableError) as e:
            index.search(queries, 10)
        assert e.value.shard == 1 and "shard 1" in str(e.value)
        assert not isinstance(e.value, ShardFileError)
        assert time.monotonic() - t < 10
        with pytest.raises(ShardUnavailableError, match="shard 1"):
            index.search_threshold(queries[0], 0.35)
        part = index.search(queries, 10, allow_partial=True)
        assert part.partial and part.missing == (1,)
        # Exactly shard 0's own answer: rows [0, 10000).
        want_ids, want_scores = LinearIndex.build(gallery[:10000]).search(queries, 10)
        np.testing.assert_array_equal(part.ids, want_ids)
        np.testing.assert_array_equal(part.scores, want_scores)
        th = index.search_threshold(queries[0], 0.35, allow_partial=True)
        assert th.missing == (1,) and np.all(th.ids < 10000)


def test_a_missing_or_corrupt_shard_file_is_an_error_naming_shard_and_file(linear_folders, faces, tmp_path):
    folder = _copy(linear_folders[2], tmp_path)
    m = read_manifest(folder)
    files = [folder / s["file"] for s in m["shards"]]
    good = [f.read_bytes() for f in files]

    files[1].unlink()
    with pytest.raises(ShardFileError) as e:
        ShardedIndex.open(folder)
    assert e.value.shard == 1 and str(files[1]) in str(e.value) and "missing" in str(e.value)

    files[1].write_bytes(good[1])
    files[0].write_bytes(good[0][: len(good[0]) // 2])
    with pytest.raises(ShardFileError) as e:
        ShardedIndex.open(folder)
    assert e.value.shard == 0 and e.value.path == str(files[0]) and str(files[0]) in str(e.value)

    # An actor that cannot load its file: shard 0's file goes bad (replaced, as a writer
    # would), then its only replica restarts and fails to load it.
    files[0].write_bytes(good[0])
    with ShardedIndex.open(folder, replicas=1, timeout=15) as index:
        np.testing.assert_array_equal(index.search(faces[2], 3)[0], LinearIndex.build(faces[0]).search(faces[2], 3)[0])
        bad = folder / "bad.tmp"
        bad.write_bytes(b"garbage" * 1000)
        os.replace(bad, files[0])
        ray.kill(index._actors[0][0], no_restart=False)
        with pytest.raises(ShardFileError) as e:
            index.search(faces[2], 3)
        assert e.value.shard == 0 and str(files[0]) in str(e.value) and "cannot load" in str(e.value)
        assert index.search(faces[2], 3, allow_partial=True).missing == (0,)


def test_hnsw_add_and_delete_reach_every_replica_and_survive_reopening(cluster, faces, tmp_path):
    gallery, labels, queries = faces
    gallery, labels = gallery[:4000], labels[:4000]
    rng = np.random.default_rng(11)
    new = _unit(rng.normal(size=(30, DIM)))
    new_labels = [f"enrolled{i}" for i in range(30)]
    build_sharded(gallery, labels, tmp_path, engine="hnsw", shards=2, params=HNSW)
    probe = np.concatenate([queries, new, gallery[:20]])
    with ShardedIndex.open(tmp_path, replicas=2) as index:
        ids = index.add(new, new_labels)
        np.testing.assert_array_equal(ids, np.arange(4000, 4030))
        assert len(index) == 4030 and index.num_shards == 2
        assert index.labels(ids).tolist() == new_labels
        for r in range(2):  # both replicas of the last shard serve the new faces
            got, _ = _replica_search(index, 1, r, new, 1)
            np.testing.assert_array_equal(got[:, 0], ids)
        np.testing.assert_array_equal(index.search(new, 1)[0][:, 0], ids)

        gone = [7, 2000 + 5, int(ids[3])]  # one in each shard and one just enrolled
        index.delete(gone)
        assert len(index) == 4027
        with pytest.raises(ValueError):
            index.delete(7)
        with pytest.raises(KeyError):
            index.delete(10**6)
        for g, shard in zip(gone, (0, 1, 1)):
            vec = gallery[g] if g < 4000 else new[g - 4000]
            for r in range(2):
                got, _ = _replica_search(index, shard, r, vec, 10)
                assert g not in got
            assert g not in index.search(vec, 10)[0]
        before = index.search(probe, 10)
        th_before = index.search_threshold(queries[0], 0.35)
        m = index.manifest
    # Two generations of files at most per shard: the current and the one before.
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".hnsw")]) <= 4
    with ShardedIndex.open(tmp_path, replicas=2) as index:
        assert index.manifest == m and len(index) == 4027
        after = index.search(probe, 10)
        np.testing.assert_array_equal(after[0], before[0])
        np.testing.assert_array_equal(after[1], before[1])
        th_after = index.search_threshold(queries[0], 0.35)
        np.testing.assert_array_equal(th_after[0], th_before[0])
        assert index.labels(ids[:3]).tolist() == new_labels[:3]
        assert index.add(new[:1], ["again"]).tolist() == [4030]  # ids are never reused


def test_linear_add_makes_a_shard_and_delete_stays_exact(linear_folders, faces, tmp_path):
    gallery, labels, queries = faces
    folder = _copy(linear_folders[2], tmp_path)
    rng = np.random.default_rng(12)
    new = _unit(rng.normal(size=(20, DIM)))
    whole = LinearIndex.build(np.concatenate([gallery, new]))
    gone = [int(i) for i in whole.search(queries[:3], 1)[0][:, 0]] + [20005]
    with ShardedIndex.open(folder, replicas=2) as index:
        ids = index.add(new, [f"n{i}" for i in range(20)])
        np.testing.assert_array_equal(ids, np.arange(20000, 20020))
        assert index.num_shards == 3 and index.manifest["shards"][2]["base"] == 20000
        assert len({n for n in index.placement()[2]}) == 2
        index.delete(gone)
        assert len(index) == 20020 - len(gone)
        with pytest.raises(ValueError):
            index.delete(gone[0])
        probe = np.concatenate([queries, new])
        got = index.search(probe, 10)
    # Exact: the whole gallery's answer without the deleted ids.
    want_ids, want_scores = whole.search(probe, 10 + len(gone))
    keep = ~np.isin(want_ids, gone)
    want_ids = np.array([row[k][:10] for row, k in zip(want_ids, keep)])
    want_scores = np.array([row[k][:10] for row, k in zip(want_scores, keep)])
    np.testing.assert_array_equal(got[0], want_ids)
    np.testing.assert_array_equal(got[1], want_scores)
    with ShardedIndex.open(folder) as index:
        again = index.search(probe, 10)
        np.testing.assert_array_equal(again[0], got[0])
        np.testing.assert_array_equal(again[1], got[1])
        assert index.labels([20003, 5])[0] == "n3" and index.labels([5])[0] == labels[5]
