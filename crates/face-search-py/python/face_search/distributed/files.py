"""The files of a sharded gallery: atomic writes, the manifest, the shard files."""

from __future__ import annotations

import json
import os
from typing import Iterable, List, Union

import numpy as np

import face_search
from face_search import FormatError

from .._files import _atomic_write, _share
from .errors import ShardFileError

PathLike = Union[str, "os.PathLike[str]"]

MANIFEST = "manifest.json"
FORMAT = "face_search.sharded/1"


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
