"""Building a sharded gallery (:func:`build_sharded`) and the argument checks enrolment
shares with it."""

from __future__ import annotations

import os
import time
from typing import Any, Dict, Optional, Sequence

import numpy as np

import face_search

from .files import (
    FORMAT,
    MANIFEST,
    PathLike,
    _files_of,
    _remove_files,
    _save_array,
    _shard_file,
    _write_manifest,
    read_manifest,
)
from .lazy_ray import _ray
from .server import _engine_class, _remote


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
