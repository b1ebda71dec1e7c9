"""Serving a sharded gallery: :class:`ShardedIndex` and its calls to the replicas."""

from __future__ import annotations

import bisect
import json
import os
import threading
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from .build import _as_labels, _as_vectors, _wait_all, _with_threads
from .errors import SearchResult, ShardError, ShardFileError, ShardUnavailableError
from .files import (
    PathLike,
    _files_of,
    _load_deleted,
    _load_shard,
    _remove_files,
    _save_array,
    _shard_file,
    _write_manifest,
    read_manifest,
)
from .lazy_ray import _ray
from .merge import _merge, _merge_flat
from .server import _can_change, _remote

# Queries at least this large go through the object store once (ray.put); smaller ones are
# sent inline with each shard's call, which Ray does for small arguments anyway.
_PUT_BYTES = 64 * 1024


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
        warmup: str = "auto",
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
