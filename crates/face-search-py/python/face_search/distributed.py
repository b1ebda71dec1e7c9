"""face_search.distributed: one gallery sharded over a Ray cluster.

A gallery too large for one machine (or one that must survive the loss of one) is split into
*shards*, each an ordinary face_search index file, and served by Ray actors: one actor per
*replica* of each shard, replicas of one shard on different nodes. A query goes to one replica
of every shard and the per-shard answers are merged into the global top-k, exactly as one index
over the whole gallery would rank them (score descending, ties to the smaller id).

Needs ``ray`` (``pip install ray==2.60.0``; ``scripts/pyenv.sh --package`` installs it). It is
imported only when this module needs it, so ``import face_search`` works without it.

**Sharding** (:func:`build_sharded`): rows are split into ``shards`` contiguous row ranges of
balanced size (``by="range"``; sizes differ by at most one): shard ``i`` holds rows
``[i * n // S, (i + 1) * n // S)``. Each shard's index is built by a Ray task on some node and
written (atomically) into ``folder``, beside a JSON manifest and each shard's labels.

**Global ids** are int64 *offsets*: a shard has a ``base`` (the global id of its row 0) and
global id = ``base + local row``. A gallery built by :func:`build_sharded` therefore answers
with the row numbers of the array it was built from, the same ids one unsharded index gives.
Enrolled faces get the next ids (:meth:`ShardedIndex.add`); ids are never reused.
:meth:`ShardedIndex.labels` maps ids to the labels kept with the gallery.

**The folder** must be readable (and, for enrolment, writable) under the same path by every
node and by the driver: a local folder when the cluster is one machine, shared storage
(an NFS export, a cluster file system, a mounted object-store bucket with POSIX semantics)
mounted at the same path on every node of a real cluster. Actors memory-map their shard
file from it, so the page cache of each node holds what its replicas read.

**Serving** (:meth:`ShardedIndex.open`): one actor per shard replica. Replica ``r`` of shard
``s`` is placed on node ``(s + r) mod N`` of the cluster's N nodes that offer CPUs (sorted by
node id), with a soft node-affinity scheduling strategy: replicas of one shard land on
different nodes when there are at least as many nodes as replicas, shards are spread evenly,
and a restarted actor goes to another node if its node is gone. Actors ask for
``num_cpus=0`` by default (they mostly wait; a 2-core machine holds 4 shards x 2 replicas) and
are restarted by Ray when they die (``max_restarts``).

**Faults**: a replica that dies or does not answer within ``timeout`` seconds while a query is
in flight is given up for that call and its shard's part is sent to another replica; the
query still answers. A shard none of whose replicas answers raises
:class:`ShardUnavailableError` naming the shard, unless ``allow_partial=True``: then the answer
lists the missing shards (:attr:`SearchResult.missing`). A missing or corrupt shard file
raises :class:`ShardFileError` (naming the shard and the file) at :meth:`ShardedIndex.open`,
and is the reason given when an actor cannot load it later.

**Enrolment**: :meth:`ShardedIndex.add` appends to the last shard when its engine supports
adding (HNSW), else builds a new shard from the added rows; :meth:`ShardedIndex.delete`
deletes from the shard holding the id (natively for HNSW, through a tombstone list for the
other engines). Each change writes new files for the changed shard, then the manifest (the
commit point, replaced atomically), then every replica reloads; the change survives
``close()`` and ``open()``. One process at a time may enrol into a folder.

Example (a cluster of two local nodes; on a real cluster call ``ray.init(address=...)``
instead of starting a :class:`LocalCluster`)::

    import numpy as np
    from face_search.distributed import LocalCluster, ShardedIndex, build_sharded

    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(20_000, 512)).astype(np.float32)
    labels = [f"person{i}" for i in range(len(gallery))]
    with LocalCluster(nodes=2):
        build_sharded(gallery, labels, "/shared/faces", engine="hnsw", shards=4,
                      params={"m": 16, "ef_construction": 100})
        with ShardedIndex.open("/shared/faces", replicas=2) as index:
            ids, scores = index.search(gallery[:5], k=4)     # (5, 4) int64, float32
            names = index.labels(ids)
            new = index.add(rng.normal(size=(3, 512)), ["ann", "bob", "eve"])
            index.delete(int(new[0]))
"""

from __future__ import annotations

import atexit
import bisect
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

import face_search
from face_search import FormatError

__all__ = [
    "LocalCluster",
    "SearchResult",
    "ShardError",
    "ShardFileError",
    "ShardUnavailableError",
    "ShardedIndex",
    "build_sharded",
    "read_manifest",
]

PathLike = Union[str, "os.PathLike[str]"]

MANIFEST = "manifest.json"
FORMAT = "face_search.sharded/1"
# Queries at least this large go through the object store once (ray.put); smaller ones are
# sent inline with each shard's call, which Ray does for small arguments anyway.
_PUT_BYTES = 64 * 1024


def _ray():
    try:
        import ray
    except ImportError as e:  # pragma: no cover - exercised only without ray
        raise ImportError(
            "face_search.distributed needs ray: pip install ray==2.60.0 "
            "(scripts/pyenv.sh --package installs it)"
        ) from e
    return ray


# ---------------------------------------------------------------------------------------
# Errors and results


class ShardError(RuntimeError):
    """A shard of a sharded gallery failed; :attr:`shard` is its number."""

    def __init__(self, message: str, shard: int):
        super().__init__(message)
        self.shard = shard

    def __reduce__(self):  # pickles (Ray sends these between processes) with every field
        return (_rebuild_error, (type(self), self.__dict__, self.args))


class ShardUnavailableError(ShardError):
    """No replica of shard :attr:`shard` answered; :attr:`reasons` says why each failed."""

    def __init__(self, shard: int, reasons: Sequence[str] = (), message: Optional[str] = None):
        self.reasons = list(reasons)
        if message is None:
            message = f"shard {shard} is unavailable: no replica answered"
            if self.reasons:
                message += " (" + "; ".join(self.reasons) + ")"
        super().__init__(message, shard)


class ShardFileError(ShardUnavailableError):
    """The file of shard :attr:`shard` (:attr:`path`) is missing or cannot be loaded."""

    def __init__(self, shard: int, path: str, problem: str):
        self.path = path
        super().__init__(shard, [problem], f"shard {shard}: {path}: {problem}")


def _rebuild_error(cls, fields, args):
    e = Exception.__new__(cls)
    e.args = args
    e.__dict__.update(fields)
    return e


class SearchResult(tuple):
    """``(ids, scores)`` of a sharded search (unpacks like the single-index answer), with
    :attr:`missing`: the shards that did not answer (only ever non-empty when the search was
    asked with ``allow_partial=True``) and :attr:`partial` (``bool(missing)``)."""

    missing: Tuple[int, ...]

    def __new__(cls, ids: np.ndarray, scores: np.ndarray, missing: Iterable[int] = ()):
        self = super().__new__(cls, (ids, scores))
        self.missing = tuple(sorted(missing))
        return self

    @property
    def ids(self) -> np.ndarray:
        """The int64 global ids (``self[0]``)."""
        return self[0]

    @property
    def scores(self) -> np.ndarray:
        """The float32 cosine similarities (``self[1]``)."""
        return self[1]

    @property
    def partial(self) -> bool:
        """Whether some shard did not answer (see :attr:`missing`)."""
        return bool(self.missing)

    def __repr__(self) -> str:
        return f"SearchResult(ids={self[0]!r}, scores={self[1]!r}, missing={self.missing})"


# ---------------------------------------------------------------------------------------
# Files: atomic writes, the manifest


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _share(path: str) -> None:
    """Gives a file the permissions of a plain new file (0666 less the umask): the engines'
    atomic save and mkstemp make 0600 files, which nodes running as another user of the
    shared folder could not read."""
    try:
        os.chmod(path, 0o666 & ~_umask())
    except OSError:
        pass


def _atomic_write(path: str, write) -> None:
    """Writes ``path`` through a temporary file in the same folder renamed over it."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _share(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)


def _save_array(path: str, array: np.ndarray) -> None:
    _atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def _write_manifest(folder: str, manifest: dict) -> None:
    data = json.dumps(manifest, indent=1).encode()
    _atomic_write(os.path.join(folder, MANIFEST), lambda f: f.write(data))


def read_manifest(folder: PathLike) -> dict:
    """The manifest of the sharded gallery in ``folder`` (a dict, see :func:`build_sharded`).
    ``FileNotFoundError`` when there is none, :class:`face_search.FormatError` (naming the
    file) when it is not one."""
    path = os.path.join(os.fspath(folder), MANIFEST)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        m = json.loads(raw)
        if m.get("format") != FORMAT:
            raise ValueError(f"format is {m.get('format')!r}, not {FORMAT!r}")
        for key in ("engine", "dim", "shards", "generation"):
            if key not in m:
                raise ValueError(f"no {key!r}")
        for i, s in enumerate(m["shards"]):
            if s.get("shard") != i:
                raise ValueError(f"shard entry {i} is numbered {s.get('shard')!r}")
            for key in ("file", "engine", "count", "len", "live", "dim", "base", "labels", "generation"):
                if key not in s:
                    raise ValueError(f"shard {i} has no {key!r}")
    except (ValueError, TypeError, AttributeError) as e:
        raise FormatError(f"{path}: not a sharded-gallery manifest: {e}") from None
    return m


def _shard_file(shard: int, generation: int, suffix: str) -> str:
    return f"shard-{shard:04d}.g{generation}.{suffix}"


def _load_shard(folder: str, entry: dict, warmup: str):
    """Opens one shard's index file, checked against its manifest entry; any problem is a
    :class:`ShardFileError` naming the shard and the file."""
    shard = entry["shard"]
    path = os.path.join(folder, entry["file"])
    try:
        index = face_search.load(path, warmup=warmup)
    except FileNotFoundError:
        raise ShardFileError(shard, path, "the file is missing") from None
    except (OSError, ValueError) as e:
        raise ShardFileError(shard, path, f"cannot be loaded: {type(e).__name__}: {e}") from None
    engine = type(index)._engine
    if engine != entry["engine"] or index.dim != entry["dim"] or len(index) != entry["len"]:
        raise ShardFileError(
            shard,
            path,
            f"holds a {engine} index of {len(index)} x {index.dim}, the manifest says "
            f"{entry['engine']} of {entry['len']} x {entry['dim']}",
        )
    return index


def _load_deleted(folder: str, entry: dict) -> np.ndarray:
    if not entry.get("deleted"):
        return np.zeros(0, np.int64)
    path = os.path.join(folder, entry["deleted"])
    try:
        return np.sort(np.load(path, allow_pickle=False).astype(np.int64))
    except (OSError, ValueError) as e:
        raise ShardFileError(entry["shard"], path, f"cannot read the deleted ids: {e}") from None


# ---------------------------------------------------------------------------------------
# What runs on the cluster: build and change tasks, the shard server actor


def _can_change(engine: str) -> bool:
    """Whether the engine's index takes added rows and deletions (has ``add``/``delete``)."""
    cls = face_search._CLASSES.get(engine)
    return cls is not None and hasattr(cls, "add") and hasattr(cls, "delete")


def _engine_class(engine: str):
    try:
        return face_search._CLASSES[engine]
    except KeyError:
        raise ValueError(f"unknown engine {engine!r}: one of {sorted(face_search._CLASSES)}") from None


def _build_shard_task(vectors: np.ndarray, start: int, stop: int, engine: str, params: dict, path: str) -> dict:
    """Ray task: builds the index of rows ``[start, stop)`` and saves it (atomically)."""
    t = time.perf_counter()
    index = _engine_class(engine).build(vectors[start:stop], **params)
    index.save(path)
    _share(path)
    return {"len": len(index), "dim": index.dim, "seconds": time.perf_counter() - t}


def _change_shard_task(old_path: str, new_path: str, op: str, vectors: Optional[np.ndarray], ids: List[int]) -> dict:
    """Ray task: opens an HNSW shard, adds (``vectors`` under local ``ids``) or deletes
    (``ids``), and saves the result to ``new_path`` (atomically); the old file is untouched."""
    index = face_search.load(old_path, warmup="lazy")
    if op == "add":
        index.add(vectors, ids=ids)
    elif op == "delete":
        for i in ids:
            index.delete(i)
    else:
        raise ValueError(op)
    index.save(new_path)
    _share(new_path)
    return {"len": len(index)}


class _ShardServer:
    """Ray actor: serves one replica of one shard. It reads the manifest itself (also when Ray
    restarts it), and reloads when a call names a newer generation of its shard."""

    def __init__(self, folder: str, shard: int, warmup: str, threads: int):
        self._folder = folder
        self._shard = shard
        self._warmup = warmup
        self._threads = threads
        self._lock = threading.Lock()
        self._state = None
        self._load(None)

    def _load(self, generation: Optional[int]) -> None:
        # Two tries: a change may replace the manifest and remove an older file between our
        # reading the manifest and opening the file.
        for attempt in range(2):
            m = read_manifest(self._folder)
            if self._shard >= len(m["shards"]):
                raise ShardError(f"shard {self._shard}: not in {self._folder}/{MANIFEST}", self._shard)
            entry = m["shards"][self._shard]
            if generation is not None and entry["generation"] < generation:
                raise ShardError(
                    f"shard {self._shard}: the manifest holds generation {entry['generation']}, "
                    f"asked for {generation}",
                    self._shard,
                )
            try:
                index = _load_shard(self._folder, entry, self._warmup)
                deleted = _load_deleted(self._folder, entry)
                break
            except ShardFileError:
                if attempt == 1:
                    raise
        self._state = (entry["generation"], index, int(entry["base"]), deleted)

    def _current(self, generation: int, knob: Optional[int]):
        state = self._state
        if state[0] < generation:  # a change this replica has not loaded yet
            with self._lock:
                if self._state[0] < generation:
                    self._load(generation)
            state = self._state
        index = state[1]
        if knob is not None and index._e.knob_name is not None and index._e.knob != knob:
            index._e.knob = knob
        return state

    def ready(self) -> dict:
        """Where this replica runs and what it serves."""
        ray = _ray()
        generation, index, base, deleted = self._state
        return {
            "node": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "generation": generation,
            "len": len(index) - (0 if _can_change(type(index)._engine) else len(deleted)),
        }

    def reload(self, generation: int) -> int:
        """Loads the shard's files of ``generation`` (or newer) from the manifest."""
        with self._lock:
            if self._state[0] < generation:
                self._load(generation)
        return self._state[0]

    def search(self, queries: np.ndarray, k: int, generation: int, knob: Optional[int]):
        """Top-k of a 2-d batch, as global ids (int64, -1 padding) and float32 scores."""
        _, index, base, deleted = self._current(generation, knob)
        ask = min(k + len(deleted), len(index))
        if ask == 0:  # every item deleted
            return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
        if len(queries) == 1:  # one query: the engines' single-query path, no thread pool
            ids, scores = index.search(queries[0], ask)
            ids, scores = ids.reshape(1, -1), scores.reshape(1, -1)
        else:
            ids, scores = index.search(queries, ask, num_threads=self._threads)
        if len(deleted):
            dead = np.isin(ids, deleted)
            if dead.any():
                ids, scores = _drop(ids, scores, dead)
            ids, scores = ids[:, :k], scores[:, :k]
        ids = np.where(ids >= 0, ids + base, -1)
        return ids, scores

    def search_threshold(self, query: np.ndarray, tau: float, generation: int, knob: Optional[int]):
        _, index, base, deleted = self._current(generation, knob)
        if len(index) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        ids, scores = index.search_threshold(query, tau)
        if len(deleted):
            keep = ~np.isin(ids, deleted)
            ids, scores = ids[keep], scores[keep]
        return ids + base, scores


def _drop(ids: np.ndarray, scores: np.ndarray, dead: np.ndarray):
    """Removes the ``dead`` cells of each row, shifting the rest left, padding -1 / NaN."""
    order = np.argsort(dead, axis=1, kind="stable")
    ids = np.take_along_axis(np.where(dead, -1, ids), order, axis=1)
    scores = np.take_along_axis(np.where(dead, np.float32(np.nan), scores), order, axis=1)
    return ids, scores


_REMOTES: Dict[str, Any] = {}


def _remote(name: str):
    """The Ray remote versions of this module's tasks and actor, made on first use."""
    if not _REMOTES:
        ray = _ray()
        _REMOTES["build"] = ray.remote(_build_shard_task)
        _REMOTES["change"] = ray.remote(_change_shard_task)
        _REMOTES["server"] = ray.remote(_ShardServer)
    return _REMOTES[name]


# ---------------------------------------------------------------------------------------
# Merging per-shard answers


def _order_keys(ids: np.ndarray, scores: np.ndarray):
    """Sort keys (for np.lexsort, last is primary) giving Rust's ``Hit::ranking``: score
    descending by IEEE total order (``f32::total_cmp``), then id ascending; -1 padding last."""
    bits = np.ascontiguousarray(scores, dtype=np.float32).view(np.int32).astype(np.int64)
    total = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # ascending in total_cmp order
    return (ids, -total, ids < 0)


def _merge(parts: List[Tuple[np.ndarray, np.ndarray]], k: int) -> Tuple[np.ndarray, np.ndarray]:
    ids = np.concatenate([p[0] for p in parts], axis=1)
    scores = np.concatenate([p[1] for p in parts], axis=1)
    order = np.lexsort(_order_keys(ids, scores), axis=-1)[:, :k]
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)


def _merge_flat(parts: List[Tuple[np.ndarray, np.ndarray]]) -> Tuple[np.ndarray, np.ndarray]:
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    ids = np.concatenate([np.asarray(p[0], np.int64) for p in parts])
    scores = np.concatenate([np.asarray(p[1], np.float32) for p in parts])
    order = np.lexsort(_order_keys(ids, scores))
    return ids[order], scores[order]


# ---------------------------------------------------------------------------------------
# Building


def _wait_all(refs: Dict[Any, Any], timeout: float, what: str) -> Dict[Any, Any]:
    """ray.get of every ref (a dict ref -> key), bounded by ``timeout``; cancels the rest and
    raises on the first failure."""
    ray = _ray()
    done: Dict[Any, Any] = {}
    deadline = time.monotonic() + timeout
    pending = list(refs)
    try:
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what}: not finished within {timeout:g} s ({len(pending)} left)")
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=left)
            for ref in ready:
                done[refs[ref]] = ray.get(ref)
    finally:
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:
                pass
    return done


def _as_labels(labels: Sequence[Any], n: int) -> np.ndarray:
    out = np.asarray([str(s) for s in labels], dtype=str)
    if out.ndim != 1 or len(out) != n:
        raise ValueError(f"{len(out)} labels for {n} vectors")
    if out.dtype.itemsize == 0:
        out = out.astype("<U1")
    return out


def _as_vectors(vectors: Any, dim: Optional[int] = None) -> np.ndarray:
    v = np.asarray(vectors)
    if v.ndim == 1:
        v = v.reshape(1, -1)
    if v.ndim != 2 or v.shape[0] == 0:
        raise ValueError(f"vectors must be a non-empty 2-d array, not of shape {v.shape}")
    if v.dtype not in (np.float32, np.float64):
        v = v.astype(np.float32)
    if dim is not None and v.shape[1] != dim:
        raise ValueError(f"vectors have {v.shape[1]} components, the gallery {dim}")
    return np.ascontiguousarray(v, dtype=np.float32)


def _with_threads(engine: str, params: Dict[str, str], cpus: float) -> Dict[str, str]:
    """``params`` with ``threads`` set to the CPUs a build task has, for engines that take a
    ``threads`` parameter and when the caller did not set it."""
    if "threads" not in params and "threads" in face_search.engines()[engine]["params"]:
        params["threads"] = str(max(1, int(cpus)))
    return params


def _str_params(params: Optional[dict]) -> Dict[str, str]:
    return face_search._params(dict(params or {}))


def build_sharded(
    vectors: Any,
    labels: Sequence[Any],
    folder: PathLike,
    engine: str = "hnsw",
    shards: int = 2,
    params: Optional[Dict[str, Any]] = None,
    by: str = "range",
    *,
    build_cpus: float = 1,
    overwrite: bool = False,
    timeout: float = 6 * 3600.0,
) -> dict:
    """Splits ``vectors`` (2-d, one row per face) into ``shards`` balanced row ranges, builds
    each shard's index as a Ray task (in parallel, wherever the cluster has room) and writes
    the sharded gallery into ``folder``; returns its manifest.

    ``by="range"`` (the only scheme): shard ``i`` holds rows ``[i*n//S, (i+1)*n//S)`` and the
    global id of a row is its row number (shard ``base`` + local row). ``labels`` (one per
    row, kept as strings) are saved per shard beside the manifest. ``params`` are the
    engine's build parameters (see :func:`face_search.engines`); an HNSW build uses
    ``build_cpus`` threads unless ``params`` say ``threads``. Each task asks Ray for
    ``build_cpus`` CPUs.

    ``folder`` must be one every node can read (and write) under the same path (see the
    module's docstring). It gets, for shard ``i`` at generation ``g``,
    ``shard-000i.gG.<engine>`` (the index file, written atomically by the task),
    ``shard-000i.gG.labels.npy`` and then ``manifest.json`` (atomic: temp file + rename),
    which lists the gallery's engine, params, dim, and per shard its file, engine, count,
    dim and global id base. A folder holding a gallery is refused unless ``overwrite``; the
    old gallery's files are removed once the new manifest is in place. ``timeout`` bounds the
    wait for the builds (seconds); on a failure or timeout no manifest is written.

    Example::

        >>> build_sharded(vectors, labels, "/shared/faces", engine="hnsw", shards=4,
        ...               params={"m": 16, "ef_construction": 100})   # doctest: +SKIP
    """
    ray = _ray()
    if by != "range":
        raise ValueError(f"by={by!r}: only 'range' sharding is supported")
    if not isinstance(shards, int) or shards < 1:
        raise ValueError(f"shards must be a positive int, not {shards!r}")
    _engine_class(engine)
    v = _as_vectors(vectors)
    n, dim = v.shape
    if shards > n:
        raise ValueError(f"{shards} shards for {n} vectors")
    lab = _as_labels(labels, n)
    folder = os.path.abspath(os.fspath(folder))
    os.makedirs(folder, exist_ok=True)
    old = None
    if os.path.exists(os.path.join(folder, MANIFEST)):
        if not overwrite:
            raise FileExistsError(f"{folder} already holds a sharded gallery (overwrite=True replaces it)")
        try:
            old = read_manifest(folder)
        except (OSError, ValueError):
            old = None
    generation = (old["generation"] + 1) if old else 0
    sparams = _str_params(params)
    build_params = _with_threads(engine, dict(sparams), build_cpus)
    bounds = [i * n // shards for i in range(shards + 1)]
    ref = ray.put(v)
    task = _remote("build").options(num_cpus=build_cpus, max_retries=1)
    refs = {}
    entries = []
    for i in range(shards):
        name = _shard_file(i, generation, engine)
        refs[task.remote(ref, bounds[i], bounds[i + 1], engine, build_params, os.path.join(folder, name))] = i
        entries.append(
            {
                "shard": i,
                "engine": engine,
                "file": name,
                "labels": _shard_file(i, generation, "labels.npy"),
                "deleted": None,
                "count": bounds[i + 1] - bounds[i],
                "dim": dim,
                "base": bounds[i],
                "generation": generation,
            }
        )
    for e in entries:
        _save_array(os.path.join(folder, e["labels"]), lab[e["base"] : e["base"] + e["count"]])
    try:
        built = _wait_all(refs, timeout, f"building {shards} shards")
    except BaseException:
        for e in entries:
            for f in (e["file"], e["labels"]):
                try:
                    os.unlink(os.path.join(folder, f))
                except OSError:
                    pass
        raise
    finally:
        del ref
    for e in entries:
        info = built[e["shard"]]
        e["len"] = e["live"] = info["len"]
        e["build_seconds"] = round(info["seconds"], 3)
    manifest = {
        "format": FORMAT,
        "engine": engine,
        "params": sparams,
        "dim": dim,
        "by": by,
        "generation": generation,
        "shards": entries,
    }
    _write_manifest(folder, manifest)
    if old:
        _remove_files(folder, _files_of(old))
    return manifest


def _files_of(manifest: dict) -> List[str]:
    files = []
    for e in manifest["shards"]:
        files += [e.get("file"), e.get("labels"), e.get("deleted")]
        files += list(e.get("previous") or [])
    return [f for f in files if f]


def _remove_files(folder: str, files: Iterable[str], keep: Iterable[str] = ()) -> None:
    keep = set(keep)
    for f in set(files) - keep:
        try:
            os.unlink(os.path.join(folder, f))
        except OSError:
            pass


# ---------------------------------------------------------------------------------------
# Serving


def _alive_nodes() -> List[str]:
    ray = _ray()
    nodes = [
        n["NodeID"]
        for n in ray.nodes()
        if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0
    ]
    return sorted(nodes)


class ShardedIndex:
    """A sharded gallery served by Ray actors; open one with :meth:`open`.

    ``search``/``search_threshold`` answer like one index over the whole gallery (global
    int64 ids, float32 cosine scores); ``add``/``delete`` change it; ``close()`` (or leaving a
    ``with`` block) stops the actors. Methods may be called from several threads.
    """

    def __init__(self, folder: str, manifest: dict, replicas: int, timeout: float, options: dict):
        self._folder = folder
        self._manifest = manifest
        self._replicas = replicas
        self._timeout = timeout
        self._options = options
        self._knob: Optional[int] = options.get("knob")
        self._actors: List[List[Any]] = []
        self._lock = threading.RLock()
        self._change_lock = threading.Lock()
        self._next = [0] * len(manifest["shards"])
        self._inflight: List[List[int]] = []
        self._down: List[List[float]] = []  # until when a replica is tried last
        self._fails: List[List[int]] = []
        self._labels: Dict[int, Tuple[int, np.ndarray]] = {}
        self._nodes: List[str] = []
        self.failovers = 0
        """How many times a replica failed a call (died, raised a shard error or did not
        answer in time); its shard's part then went to another replica if one was left."""
        self._closed = False

    # -- opening and closing -------------------------------------------------------------

    @classmethod
    def open(
        cls,
        folder: PathLike,
        replicas: int = 1,
        *,
        knob: Optional[int] = None,
        timeout: float = 30.0,
        warmup: str = "background",
        num_cpus: float = 0.01,
        threads: int = 0,
        max_restarts: int = -1,
        max_concurrency: int = 4,
    ) -> "ShardedIndex":
        """Serves the sharded gallery in ``folder`` (built by :func:`build_sharded`) on the
        Ray cluster this process is connected to (``ray.init``): ``replicas`` actors per
        shard, replica ``r`` of shard ``s`` on node ``(s + r) mod N`` (see the module's
        docstring). Each actor memory-maps its shard file (``face_search.load(path,
        warmup)``) from the folder, which every node must see under the same path.

        ``knob``: the engines' speed/recall knob for every shard (HNSW ``ef``, forest
        ``search_k``; None keeps the files' own). ``timeout``: seconds a replica has to answer
        one call (and every actor to start here) before its shard's part goes to another
        replica. ``num_cpus``: the CPUs each actor reserves in Ray (0: none, they share the
        node). ``threads``: threads of one batch search in an actor (0: every core of its
        node). ``max_restarts``: how often Ray restarts a dead actor (-1: always).
        ``max_concurrency``: calls one actor runs at once (threads; the engines release the
        GIL).

        Every shard file is checked first: a missing or corrupt one raises
        :class:`ShardFileError` naming the shard and the file, as does an actor that cannot
        load its file; an actor not ready within ``timeout`` raises
        :class:`ShardUnavailableError`.
        """
        ray = _ray()
        if not ray.is_initialized():
            raise RuntimeError("ray is not initialized: ray.init(address=...) first")
        if replicas < 1:
            raise ValueError(f"replicas must be at least 1, not {replicas}")
        folder = os.path.abspath(os.fspath(folder))
        manifest = read_manifest(folder)
        for entry in manifest["shards"]:
            # A cheap check (only the header is read) before any actor starts.
            _load_shard(folder, entry, "lazy")
            _load_deleted(folder, entry)
        self = cls(folder, manifest, replicas, timeout,
                   {"knob": knob, "warmup": warmup, "num_cpus": num_cpus, "threads": threads,
                    "max_restarts": max_restarts, "max_concurrency": max_concurrency})
        self._nodes = _alive_nodes()
        if not self._nodes:
            raise RuntimeError("the Ray cluster has no alive node with CPUs")
        try:
            for s in range(len(manifest["shards"])):
                self._start_shard(s)
            self._wait_ready(range(len(manifest["shards"])))
        except BaseException:
            self.close()
            raise
        return self

    def _start_shard(self, s: int) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        o = self._options
        actors = []
        for r in range(self._replicas):
            node = self._nodes[(s + r) % len(self._nodes)]
            actors.append(
                _remote("server")
                .options(
                    num_cpus=o["num_cpus"],
                    max_restarts=o["max_restarts"],
                    max_task_retries=0,
                    max_concurrency=o["max_concurrency"],
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True),
                )
                .remote(self._folder, s, o["warmup"], o["threads"])
            )
        with self._lock:
            while len(self._actors) <= s:
                self._actors.append([])
                self._inflight.append([])
                self._down.append([])
                self._fails.append([])
            while len(self._next) <= s:
                self._next.append(0)
            self._actors[s] = actors
            self._inflight[s] = [0] * len(actors)
            self._down[s] = [0.0] * len(actors)
            self._fails[s] = [0] * len(actors)

    def _wait_ready(self, shards: Iterable[int]) -> None:
        ray = _ray()
        refs = {}
        for s in shards:
            for r, a in enumerate(self._actors[s]):
                refs[a.ready.remote()] = (s, r)
        deadline = time.monotonic() + self._timeout
        pending = list(refs)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                s, r = refs[pending[0]]
                raise ShardUnavailableError(
                    s, [f"replica {r} not ready within {self._timeout:g} s"]
                )
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=left)
            for ref in ready:
                s, r = refs[ref]
                try:
                    ray.get(ref)
                except Exception as e:
                    raise self._load_failure(s, r, e) from None

    def _load_failure(self, s: int, r: int, e: BaseException) -> ShardError:
        """The error for an actor that could not start: a :class:`ShardFileError` when it
        could not load its file."""
        entry = self._manifest["shards"][s]
        path = os.path.join(self._folder, entry["file"])
        reason, is_file = _reason(r, e)
        if is_file:
            return ShardFileError(s, path, reason)
        return ShardUnavailableError(s, [reason])

    def close(self) -> None:
        """Stops every actor (idempotent). The files stay."""
        ray = _ray()
        with self._lock:
            actors, self._actors = self._actors, []
            self._closed = True
        for shard in actors:
            for a in shard:
                try:
                    ray.kill(a, no_restart=True)
                except Exception:
                    pass

    def __enter__(self) -> "ShardedIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what it serves ------------------------------------------------------------------

    @property
    def folder(self) -> str:
        """The gallery's folder (absolute)."""
        return self._folder

    @property
    def manifest(self) -> dict:
        """The manifest as last written (a copy)."""
        return json.loads(json.dumps(self._manifest))

    @property
    def engine(self) -> str:
        """The gallery's engine ("linear", "hnsw" or "forest")."""
        return self._manifest["engine"]

    @property
    def dim(self) -> int:
        """Components per vector."""
        return self._manifest["dim"]

    @property
    def num_shards(self) -> int:
        """Shards the gallery has now (enrolment into a non-HNSW gallery adds some)."""
        return len(self._manifest["shards"])

    @property
    def replicas(self) -> int:
        """Actors serving each shard."""
        return self._replicas

    def __len__(self) -> int:
        """Faces in the gallery, deleted ones not counted."""
        return sum(e["live"] for e in self._manifest["shards"])

    def __repr__(self) -> str:
        return (
            f"<face_search.distributed.ShardedIndex {self.engine} len={len(self)} "
            f"shards={self.num_shards} replicas={self._replicas}>"
        )

    @property
    def knob(self) -> Optional[int]:
        """The speed/recall knob sent with every query (HNSW ``ef``, forest ``search_k``;
        None: each shard file's own). Settable."""
        return self._knob

    @knob.setter
    def knob(self, value: Optional[int]) -> None:
        if value is not None and int(value) < 0:
            raise ValueError(f"the knob must not be negative, not {value}")
        self._knob = None if value is None else int(value)

    def placement(self) -> List[List[str]]:
        """The Ray node id of every replica, per shard (asks each actor)."""
        ray = _ray()
        refs = [[a.ready.remote() for a in shard] for shard in self._actors]
        return [[info["node"] for info in ray.get(row, timeout=self._timeout)] for row in refs]

    def labels(self, ids: Any) -> np.ndarray:
        """The labels of global ``ids`` (any shape), as a numpy str array of that shape;
        ``""`` for -1 padding. ``KeyError`` for an id in no shard."""
        ids = np.asarray(ids, dtype=np.int64)
        flat = ids.reshape(-1)
        entries = self._manifest["shards"]
        bases = np.asarray([e["base"] for e in entries], np.int64)
        ends = bases + np.asarray([e["count"] for e in entries], np.int64)
        shard = np.searchsorted(bases, flat, side="right") - 1
        valid = flat >= 0
        bad = valid & ((shard < 0) | (flat >= ends[np.maximum(shard, 0)]))
        if bad.any():
            raise KeyError(f"id {int(flat[bad][0])} is in no shard")
        found = []
        for s in np.unique(shard[valid]).tolist():
            rows = np.flatnonzero(valid & (shard == s))
            found.append((rows, np.asarray(self._shard_labels(s)[flat[rows] - bases[s]])))
        width = max([1] + [v.dtype.itemsize // 4 for _, v in found])
        out = np.full(flat.shape, "", dtype=f"<U{width}")
        for rows, values in found:
            out[rows] = values
        return out.reshape(ids.shape)

    def _shard_labels(self, s: int) -> np.ndarray:
        entry = self._manifest["shards"][s]
        cached = self._labels.get(s)
        if cached is None or cached[0] != entry["generation"]:
            path = os.path.join(self._folder, entry["labels"])
            try:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as e:
                raise ShardFileError(s, path, f"cannot read the labels: {e}") from None
            cached = (entry["generation"], arr)
            self._labels[s] = cached
        return cached[1]

    # -- calls to the replicas -----------------------------------------------------------

    def _pick(self, s: int, tried: set) -> Optional[int]:
        """The replica of shard ``s`` to ask next: not tried in this call, healthy first,
        then least loaded, then round-robin."""
        with self._lock:
            n = len(self._actors[s])
            start = self._next[s]
            self._next[s] = (start + 1) % n
            now = time.monotonic()
            best = None
            for j in range(n):
                r = (start + j) % n
                if r in tried:
                    continue
                key = (self._down[s][r] > now, self._inflight[s][r], j)
                if best is None or key < best[0]:
                    best = (key, r)
            if best is None:
                return None
            self._inflight[s][best[1]] += 1
            return best[1]

    def _done(self, s: int, r: int, ok: bool) -> None:
        with self._lock:
            if s >= len(self._inflight):
                return
            self._inflight[s][r] -= 1
            if ok:
                self._fails[s][r] = 0
                self._down[s][r] = 0.0
            else:
                self._fails[s][r] += 1
                backoff = min(30.0, 0.5 * 2 ** (self._fails[s][r] - 1))
                self._down[s][r] = time.monotonic() + backoff

    def _fanout(self, method: str, args: Tuple, shards: Sequence[int], allow_partial: bool) -> Tuple[Dict[int, Any], List[int]]:
        """Calls ``method(*args, generation, knob)`` on one replica of every shard in
        ``shards``, moving a shard's part to another replica when one fails or does not
        answer within the timeout. Returns ({shard: answer}, [shards that failed]); raises
        :class:`ShardUnavailableError` for a failed shard unless ``allow_partial``."""
        if self._closed:
            raise RuntimeError("the ShardedIndex is closed")
        call = _FanOut(self, method, args, shards)
        try:
            call.run()
        finally:
            call.abandon()
        if call.failed and not allow_partial:
            s = min(call.failed)
            if s in call.file_failed:
                path = os.path.join(self._folder, self._manifest["shards"][s]["file"])
                raise ShardFileError(s, path, "; ".join(call.reasons[s]))
            raise ShardUnavailableError(s, call.reasons[s])
        return call.results, sorted(call.failed)

    @staticmethod
    def _cancel(refs: Dict[Any, Any]) -> None:
        ray = _ray()
        for ref in list(refs):
            try:
                ray.cancel(ref)
            except Exception:
                pass

    # -- queries -------------------------------------------------------------------------

    def _queries(self, queries: Any) -> np.ndarray:
        q = np.asarray(queries)
        if q.dtype not in (np.float32, np.float64):
            try:
                q = q.astype(np.float32)
            except (TypeError, ValueError) as e:
                raise ValueError(f"queries must be an array of numbers: {e}") from None
        if q.ndim not in (1, 2) or q.shape[-1] != self.dim:
            raise ValueError(f"queries must be 1-d or 2-d with {self.dim} components, not of shape {q.shape}")
        return np.ascontiguousarray(q, dtype=np.float32)

    def search(self, queries: Any, k: int = 4, *, allow_partial: bool = False) -> SearchResult:
        """The ``k`` most similar faces of the whole gallery, best first: ``(ids, scores)``
        (a :class:`SearchResult`), int64 global ids and float32 cosine similarities, shaped
        like :meth:`face_search.LinearIndex.search`: 1-d for one query (fewer than ``k`` when
        the gallery holds fewer), ``(n, min(k, len))`` for a 2-d batch (padded with -1 / NaN
        where approximate shards find fewer).

        The batch is sent once to one replica of every shard (through the object store when
        large); the per-shard top-k are merged by score descending, ties to the smaller id.
        A shard with no replica answering raises :class:`ShardUnavailableError`; with
        ``allow_partial=True`` the answer covers the shards that answered and
        ``result.missing`` lists the others."""
        if isinstance(k, bool) or int(k) != k or k <= 0:
            raise ValueError(f"k must be a positive int, not {k!r}")
        k = int(k)
        q = self._queries(queries)
        one = q.ndim == 1
        batch = q.reshape(1, -1) if one else q
        n = len(batch)
        ray = _ray()
        arg = ray.put(batch) if batch.nbytes >= _PUT_BYTES else batch
        shards = list(range(self.num_shards))
        results, failed = self._fanout("search", (arg, k), shards, allow_partial)
        parts = [results[s] for s in shards if s in results]
        if parts:
            ids, scores = _merge(parts, k)
        else:
            ids, scores = np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32)
        width = min(k, sum(self._manifest["shards"][s]["live"] for s in shards if s in results))
        ids, scores = ids[:, :width], scores[:, :width]
        if one:
            keep = ids[0] >= 0
            return SearchResult(ids[0][keep], scores[0][keep], failed)
        return SearchResult(ids, scores, failed)

    def search_threshold(self, query: Any, tau: float = 0.35, *, allow_partial: bool = False) -> SearchResult:
        """Every face of the whole gallery whose cosine similarity to ``query`` (1-d) is
        greater than ``tau``, best first (the union of every shard's hits), as a
        :class:`SearchResult`; shards that do not answer as in :meth:`search`."""
        q = self._queries(query)
        if q.ndim != 1:
            raise ValueError("search_threshold takes one query (1-d)")
        tau = float(tau)
        if not (-1.0 <= tau <= 1.0):
            raise ValueError(f"tau must be in [-1, 1], not {tau}")
        shards = list(range(self.num_shards))
        results, failed = self._fanout("search_threshold", (q, tau), shards, allow_partial)
        ids, scores = _merge_flat([results[s] for s in shards if s in results])
        return SearchResult(ids, scores, failed)

    # -- enrolment -----------------------------------------------------------------------

    def add(self, vectors: Any, labels: Sequence[Any]) -> np.ndarray:
        """Enrols ``vectors`` (2-d, or 1-d for one) with their ``labels``; returns their
        global ids (the next unused ones). An HNSW gallery grows its last shard; a gallery
        of another engine gets a new shard built from these rows (with the gallery's build
        parameters) and served by ``replicas`` new actors. The shard's new files are
        written, then the manifest, then every replica of the shard reloads."""
        v = _as_vectors(vectors, self.dim)
        lab = _as_labels(labels, len(v))
        with self._change_lock:
            m = self._manifest
            last = m["shards"][-1]
            generation = m["generation"] + 1
            if _can_change(m["engine"]) and _can_change(last["engine"]):
                s = last["shard"]
                local = list(range(last["count"], last["count"] + len(v)))
                entry = dict(last)
                entry["file"] = _shard_file(s, generation, last["engine"])
                entry["labels"] = _shard_file(s, generation, "labels.npy")
                info = self._run_change(
                    os.path.join(self._folder, last["file"]),
                    os.path.join(self._folder, entry["file"]), "add", v, local,
                )
                old_labels = np.asarray(self._shard_labels(s))
                _save_array(os.path.join(self._folder, entry["labels"]), np.concatenate([old_labels, lab]))
                entry["count"] = last["count"] + len(v)
                entry["len"] = info["len"]
                entry["live"] = last["live"] + len(v)
                entry["generation"] = generation
                entry["previous"] = [last["file"], last["labels"]]
                new = dict(m, generation=generation, shards=m["shards"][:-1] + [entry])
                self._commit(new, [s], superseded=last.get("previous") or [])
                return np.arange(last["base"] + last["count"], last["base"] + entry["count"], dtype=np.int64)
            # A new shard.
            s = len(m["shards"])
            base = last["base"] + last["count"]
            entry = {
                "shard": s,
                "engine": m["engine"],
                "file": _shard_file(s, generation, m["engine"]),
                "labels": _shard_file(s, generation, "labels.npy"),
                "deleted": None,
                "count": len(v),
                "dim": self.dim,
                "base": base,
                "generation": generation,
            }
            _save_array(os.path.join(self._folder, entry["labels"]), lab)
            params = _with_threads(m["engine"], dict(m.get("params") or {}), 1)
            ref = _remote("build").options(num_cpus=1, max_retries=1).remote(
                v, 0, len(v), m["engine"], params, os.path.join(self._folder, entry["file"])
            )
            info = _wait_all({ref: s}, max(self._timeout, 600.0), f"building shard {s}")[s]
            entry["len"] = entry["live"] = info["len"]
            new = dict(m, generation=generation, shards=m["shards"] + [entry])
            # The manifest on disk first (the actors read it), the one searches use after the
            # shard's actors are up.
            _write_manifest(self._folder, new)
            try:
                self._start_shard(s)
                self._wait_ready([s])
            finally:
                self._manifest = new
            return np.arange(base, base + len(v), dtype=np.int64)

    def delete(self, ids: Union[int, Sequence[int]]) -> None:
        """Deletes faces by global id (one or a sequence): they are never returned again.
        ``KeyError`` for an id in no shard, ``ValueError`` for one already deleted. HNSW
        shards delete in their file; other engines keep a list of deleted ids beside it
        (each query of that shard then asks for ``k`` + that many)."""
        wanted = np.unique(np.atleast_1d(np.asarray(ids, dtype=np.int64)))
        with self._change_lock:
            m = self._manifest
            bases = [e["base"] for e in m["shards"]]
            by_shard: Dict[int, List[int]] = {}
            for g in wanted.tolist():
                s = bisect.bisect_right(bases, g) - 1
                if s < 0 or g >= m["shards"][s]["base"] + m["shards"][s]["count"]:
                    raise KeyError(f"id {g} is in no shard")
                by_shard.setdefault(s, []).append(g - m["shards"][s]["base"])
            generation = m["generation"] + 1
            shards = list(m["shards"])
            superseded: List[str] = []
            for s, local in sorted(by_shard.items()):
                old = shards[s]
                entry = dict(old, generation=generation)
                if _can_change(old["engine"]):
                    entry["file"] = _shard_file(s, generation, old["engine"])
                    info = self._run_change(
                        os.path.join(self._folder, old["file"]),
                        os.path.join(self._folder, entry["file"]), "delete", None, local,
                    )
                    entry["len"] = info["len"]
                    entry["previous"] = [old["file"]]
                else:
                    dead = _load_deleted(self._folder, old)
                    again = np.intersect1d(dead, local)
                    if len(again):
                        raise ValueError(f"id {old['base'] + int(again[0])} is already deleted")
                    entry["deleted"] = _shard_file(s, generation, "deleted.npy")
                    _save_array(os.path.join(self._folder, entry["deleted"]),
                                np.union1d(dead, np.asarray(local, np.int64)))
                    entry["previous"] = [old["deleted"]] if old.get("deleted") else []
                entry["live"] = old["live"] - len(local)
                superseded += old.get("previous") or []
                shards[s] = entry
            new = dict(m, generation=generation, shards=shards)
            self._commit(new, sorted(by_shard), superseded)

    def _run_change(self, old_path: str, new_path: str, op: str, vectors, local: List[int]) -> dict:
        ray = _ray()
        ref = _remote("change").options(num_cpus=1, max_retries=1).remote(old_path, new_path, op, vectors, local)
        try:
            return ray.get(ref, timeout=max(self._timeout, 600.0))
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, ValueError):
                raise ValueError(str(cause)) from None
            raise
        except ray.exceptions.GetTimeoutError:
            ray.cancel(ref, force=True)
            raise

    def _commit(self, new: dict, shards: Sequence[int], superseded: Sequence[str]) -> None:
        """Writes the manifest (the commit point), tells every replica of ``shards`` to
        reload (one that cannot reloads on its next call, which names the new generation),
        then removes the files two generations old."""
        ray = _ray()
        _write_manifest(self._folder, new)
        self._manifest = new
        refs = []
        for s in shards:
            gen = new["shards"][s]["generation"]
            refs += [a.reload.remote(gen) for a in self._actors[s]]
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=self._timeout)
        _remove_files(self._folder, superseded, keep=_files_of(new))


class _FanOut:
    """One call of a :class:`ShardedIndex` to one replica of every shard: which replica each
    shard's part went to, and what came back. Every replica gets ``timeout`` seconds; the
    whole call gives up on a shard after ``timeout x (replicas + 1)`` seconds."""

    def __init__(self, index: "ShardedIndex", method: str, args: Tuple, shards: Sequence[int]):
        self.index = index
        self.method = method
        self.args = args
        self.timeout = index._timeout
        self.deadline = time.monotonic() + self.timeout * (index._replicas + 1)
        self.tried: Dict[int, set] = {s: set() for s in shards}
        self.reasons: Dict[int, List[str]] = {s: [] for s in shards}
        self.transient: Dict[int, bool] = {s: False for s in shards}
        self.pending: Dict[Any, Tuple[int, int, float]] = {}  # ref -> (shard, replica, deadline)
        self.retry_at: Dict[int, float] = {}
        self.results: Dict[int, Any] = {}
        self.failed: List[int] = []
        self.file_failed: set = set()
        self.shards = list(shards)

    def submit(self, s: int) -> bool:
        """Sends shard ``s``'s part to a replica not tried yet; False when none is left."""
        index = self.index
        r = index._pick(s, self.tried[s])
        if r is None:
            return False
        self.tried[s].add(r)
        generation = index._manifest["shards"][s]["generation"]
        try:
            ref = getattr(index._actors[s][r], self.method).remote(*self.args, generation, index._knob)
        except Exception as e:  # the handle itself failed
            index._done(s, r, False)
            self.reasons[s].append(f"replica {r}: {type(e).__name__}: {_short(str(e))}")
            return self.submit(s)
        self.pending[ref] = (s, r, min(time.monotonic() + self.timeout, self.deadline))
        return True

    def failure(self, s: int, r: int, reason: str) -> None:
        """Replica ``r`` of shard ``s`` failed: another replica, a later round, or give up."""
        self.index._done(s, r, False)
        self.reasons[s].append(reason)
        with self.index._lock:
            self.index.failovers += 1
        if self.submit(s):
            return
        now = time.monotonic()
        if self.transient[s] and now + 0.1 < self.deadline:
            # Every replica failed, some only for the moment (restarting): try them again.
            self.transient[s] = False
            self.tried[s].clear()
            self.retry_at[s] = now + 0.1
        else:
            self.failed.append(s)

    def run(self) -> None:
        """Sends every shard's part and waits until each has an answer or has failed."""
        ray = _ray()
        from ray.exceptions import ActorUnavailableError, RayError, RayTaskError

        for s in self.shards:
            if not self.submit(s):
                self.failed.append(s)
        while self.pending or self.retry_at:
            now = time.monotonic()
            for s, t in list(self.retry_at.items()):
                if t <= now:
                    del self.retry_at[s]
                    if not self.submit(s):
                        self.failed.append(s)
            wake = min([d for _, _, d in self.pending.values()] + list(self.retry_at.values()) or [now])
            if not self.pending:
                time.sleep(max(0.0, wake - now))
                continue
            ready, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=max(0.0, wake - now))
            for ref in ready:
                s, r, _ = self.pending.pop(ref)
                try:
                    self.results[s] = ray.get(ref, timeout=self.timeout)
                    self.index._done(s, r, True)
                    continue
                except RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    if not isinstance(cause, ShardError):
                        # The caller's error (a bad query), raised as the actor raised it.
                        self.index._done(s, r, True)
                        if isinstance(cause, BaseException):
                            raise cause from None
                        raise
                    reason = f"replica {r}: {cause}"
                    if isinstance(cause, ShardFileError):
                        self.file_failed.add(s)
                except RayError as e:
                    if isinstance(e, ActorUnavailableError):
                        self.transient[s] = True
                    reason, is_file = _reason(r, e)
                    if is_file:
                        self.file_failed.add(s)
                self.failure(s, r, reason)
            now = time.monotonic()
            for ref, (s, r, d) in list(self.pending.items()):
                if d <= now:
                    del self.pending[ref]
                    ShardedIndex._cancel({ref: None})
                    self.failure(s, r, f"replica {r}: no answer within {self.timeout:g} s")

    def abandon(self) -> None:
        """Calls still pending when the call ends early (an error raised, Ctrl-C): cancelled,
        and not counted against their replicas."""
        for s, r, _ in self.pending.values():
            self.index._done(s, r, True)
        ShardedIndex._cancel(self.pending)
        self.pending = {}


def _reason(r: int, e: BaseException) -> Tuple[str, bool]:
    """Why replica ``r`` failed, in one line, and whether it was because it could not load
    its shard's file (the actor's constructor raised :class:`ShardFileError`)."""
    text = str(e)
    if getattr(e, "actor_init_failed", False) or "ShardFileError" in text:
        lines = [line.strip() for line in text.splitlines() if "ShardFileError" in line]
        if lines:
            problem = lines[-1].split("ShardFileError:", 1)[-1].strip()
            return f"replica {r} cannot load its file: {_short(problem, 600)}", True
    return f"replica {r}: {type(e).__name__}: {_short(text)}", False


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------
# A Ray cluster of several nodes on this machine (tests, measurements, trying it out)


def _proc_table() -> Dict[int, Tuple[int, int, int, str]]:
    """pid -> (ppid, pgid, start time, state) of every process, from /proc."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read().decode(errors="replace")
        except OSError:
            continue
        rest = raw[raw.rfind(")") + 2 :].split()
        # state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
        # cutime cstime priority nice threads itrealvalue starttime
        out[int(name)] = (int(rest[1]), int(rest[2]), int(rest[19]), rest[0])
    return out


class LocalCluster:
    """A Ray cluster of ``nodes`` nodes on this machine, each a ``ray start --block``
    process (the first the head) with its own temp dir, for tests, measurements and trying
    :class:`ShardedIndex` out. :meth:`start` starts them and connects this process
    (``ray.init``); :meth:`stop` (also at exit, and when leaving a ``with`` block)
    disconnects and stops exactly the processes it started and their descendants, by pid:
    SIGTERM, then SIGKILL after ``stop_grace`` seconds.

    Every address given to Ray is 127.0.0.1 (Ray itself advertises the machine's own address
    for its nodes). ``temp_dir`` (default: a new folder under /tmp) gets one sub-folder per
    node, each node's ``--temp-dir`` (``0`` is the head; Ray accepts a temp dir per node), and
    the ``ray start`` logs (``node0.log``...); :meth:`stop` removes them (and ``temp_dir`` if
    :meth:`start` made it) unless ``keep_logs`` or a process survived. Ray's Unix socket paths
    must stay under 107 characters, so a ``temp_dir`` longer than 38 characters is replaced
    by a short folder under /tmp. ``object_store_bytes`` is each node's object store (at
    least 75 MB). The ``ray start`` processes are also asked to end with the thread that
    started them (``PR_SET_PDEATHSIG``), so a killed run leaves no node behind: start the
    cluster from a thread that outlives it (the main thread).

    Example::

        with LocalCluster(nodes=2) as cluster:
            print(cluster.address, cluster.node_ids())
    """

    def __init__(
        self,
        nodes: int = 2,
        *,
        cpus_per_node: int = 2,
        object_store_bytes: int = 200_000_000,
        temp_dir: Optional[PathLike] = None,
        start_timeout: float = 120.0,
        stop_grace: float = 5.0,
        connect: bool = True,
        keep_logs: bool = False,
    ):
        if nodes < 1:
            raise ValueError("nodes must be at least 1")
        self.nodes = nodes
        self.cpus_per_node = cpus_per_node
        self.object_store_bytes = int(object_store_bytes)
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.connect = connect
        self.keep_logs = keep_logs
        self._created_root = False
        self._temp_arg = None if temp_dir is None else os.path.abspath(os.fspath(temp_dir))
        self.temp_dir: Optional[str] = None
        self.port: Optional[int] = None
        self._procs: List[subprocess.Popen] = []
        self._logs: List[str] = []
        self._known: Dict[int, int] = {}  # pid -> start time
        self._connected = False
        self._stopped = False
        self.survivors: List[int] = []

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>`` of the head, for ``ray.init(address=...)``."""
        return f"127.0.0.1:{self.port}"

    @property
    def pids(self) -> List[int]:
        """Every pid recorded so far: the ``ray start`` processes and their descendants."""
        self._record()
        return sorted(self._known)

    def _ray_command(self) -> List[str]:
        ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
        if os.access(ray_bin, os.X_OK):
            return [ray_bin]
        return [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"]

    def start(self) -> "LocalCluster":
        """Starts the head, waits for it, starts the other nodes, connects (``ray.init``)
        and waits until every node is alive. On any failure it stops what it started and
        raises, quoting the end of the failing node's log."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        root = self._temp_arg
        if root is None or len(root) > 38:
            root = tempfile.mkdtemp(prefix="fsray", dir="/tmp")
        self._created_root = self._created_root or not os.path.exists(root)
        os.makedirs(root, exist_ok=True)
        self.temp_dir = root
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        atexit.register(self.stop)
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
        common = [
            "--node-ip-address=127.0.0.1",
            "--block",
            f"--num-cpus={self.cpus_per_node}",
            f"--object-store-memory={self.object_store_bytes}",
            "--disable-usage-stats",
        ]
        preexec = _parent_death_signal()
        for i in range(self.nodes):
            if i == 0:
                args = ["start", "--head", f"--port={self.port}", "--include-dashboard=false"]
            else:
                args = ["start", f"--address={self.address}"]
            node_dir = os.path.join(root, str(i))
            os.makedirs(node_dir, exist_ok=True)
            log = os.path.join(root, f"node{i}.log")
            self._logs.append(log)
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    self._ray_command() + args + common + [f"--temp-dir={node_dir}"],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    preexec_fn=preexec,
                )
            self._procs.append(proc)
            self._record()
            if i == 0:
                self._wait_for_port()
        if self.connect:
            ray = _ray()
            ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=True)
            self._connected = True
            deadline = time.monotonic() + self.start_timeout
            while len(self.node_ids()) < self.nodes:
                self._check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"only {len(self.node_ids())} of {self.nodes} Ray nodes alive after "
                        f"{self.start_timeout:g} s; logs in {root}"
                    )
                time.sleep(0.2)
        self._record()

    def _wait_for_port(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            self._check_alive()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Ray head did not listen on {self.address} within {self.start_timeout:g} s")
            time.sleep(0.2)

    def _check_alive(self) -> None:
        for i, p in enumerate(self._procs):
            if p.poll() is not None:
                tail = ""
                try:
                    with open(self._logs[i], "rb") as f:
                        tail = f.read()[-3000:].decode(errors="replace")
                except OSError:
                    pass
                raise RuntimeError(f"ray start (node {i}) exited with {p.returncode}:\n{tail}")

    def node_ids(self) -> List[str]:
        """Node ids of the cluster's alive nodes (needs the connection)."""
        ray = _ray()
        return sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))

    def _record(self) -> None:
        """Adds the started processes, their descendants and the members of their process
        groups to the pids to stop."""
        table = _proc_table()
        roots = {p.pid for p in self._procs}
        children: Dict[int, List[int]] = {}
        for pid, (ppid, _, _, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        seen = set()
        todo = [p for p in roots if p in table]
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            todo += children.get(pid, [])
        seen |= {pid for pid, (_, pgid, _, _) in table.items() if pgid in roots}
        seen.discard(os.getpid())
        for pid in seen:
            if table[pid][3] != "Z":
                self._known.setdefault(pid, table[pid][2])

    def alive_pids(self) -> List[int]:
        """The recorded pids still running (checked by pid and start time; zombies count
        as gone). Empty after :meth:`stop`."""
        return sorted(self._living())

    def _living(self) -> List[int]:
        """Recorded pids still running (same pid and start time, not a zombie)."""
        for p in self._procs:
            p.poll()  # reaps our direct children
        table = _proc_table()
        return [
            pid
            for pid, started in self._known.items()
            if pid in table and table[pid][2] == started and table[pid][3] != "Z"
        ]

    def _signal(self, pids: Iterable[int], sig: int) -> None:
        table = _proc_table()
        for pid in pids:
            if pid in table and table[pid][2] == self._known.get(pid):
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass

    def stop(self) -> List[int]:
        """Disconnects and stops every recorded process: SIGTERM, then SIGKILL to those left
        after ``stop_grace`` seconds. Returns (and keeps in :attr:`survivors`) the pids still
        alive afterwards, which should be none. Idempotent."""
        if self._stopped:
            return self.survivors
        self._stopped = True
        try:
            atexit.unregister(self.stop)
        except Exception:
            pass
        if self._connected:
            try:
                _ray().shutdown()
            except Exception:
                pass
            self._connected = False
        self._record()
        self._signal(self._living(), signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace
        while self._living() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = self._living()
        if left:
            self._signal(left, signal.SIGKILL)
            deadline = time.monotonic() + 10.0
            while self._living() and time.monotonic() < deadline:
                time.sleep(0.05)
        for p in self._procs:
            try:
                p.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
        self.survivors = self._living()
        if self.survivors:
            print(f"LocalCluster: pids still alive after SIGKILL: {self.survivors}", file=sys.stderr)
        elif not self.keep_logs:
            self._remove_temp()
        return self.survivors

    def _remove_temp(self) -> None:
        """Removes what :meth:`start` made in the temp dir: the nodes' folders and logs, and
        the temp dir itself when it made it."""
        if not self.temp_dir:
            return
        for i in range(self.nodes):
            shutil.rmtree(os.path.join(self.temp_dir, str(i)), ignore_errors=True)
        for log in self._logs:
            try:
                os.unlink(log)
            except OSError:
                pass
        if self._created_root:
            try:
                os.rmdir(self.temp_dir)
            except OSError:
                pass

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _parent_death_signal():
    """A function for Popen's preexec_fn setting PR_SET_PDEATHSIG to SIGTERM (the child gets
    SIGTERM when the thread that started it ends, so a killed test run leaves no Ray node
    behind), made in the parent: after fork only the prepared libc call runs."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
