"""What runs on the cluster: the build and change tasks, the shard server actor."""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Dict, List, Optional

import numpy as np

import face_search

from .errors import ShardError, ShardFileError
from .files import MANIFEST, _load_deleted, _load_shard, _share, read_manifest
from .lazy_ray import _ray


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
