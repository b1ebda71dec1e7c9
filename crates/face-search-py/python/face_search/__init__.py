"""face_search: find who a face embedding matches, with three engines written in Rust.

Engines (all answer cosine similarity; ids are row numbers of the gallery they were built from):

- :class:`LinearIndex`: exact search.
- :class:`HnswIndex`: an HNSW graph (hnswlib's algorithm), ``ef`` trades speed for recall;
  items can be added and deleted after the build.
- :class:`ForestIndex`: an Annoy forest (random-projection trees) in Annoy's own file
  format, ``search_k`` trades speed for recall.

Every index is built from a float32 or float64 numpy array (``build(vectors, **params)``),
saved to one file (``save(path)``) and opened again by memory-mapping it (``load(path)``:
milliseconds, whatever the size). ``search(queries, k)`` returns ``(ids, scores)`` numpy
arrays for one query (1-d) or a batch (2-d, on every core); ``search_threshold(query, tau)``
returns every row with cosine similarity above ``tau``. The GIL is released while an index
builds or searches, so Python threads can query one index at once; Ctrl-C stops a build.

Bad input raises ``ValueError`` (wrong dimension, dtype or ndim, NaN or zero vectors,
``k <= 0``, ``tau`` outside [-1, 1]); a missing or unwritable file ``OSError`` (a failed save
leaves the previous file intact); a corrupt or truncated index :class:`FormatError` (a
``ValueError`` naming the file).

Drop-in replacements for the notebook's libraries live in :mod:`face_search.hnswlib`
(``Index``) and :mod:`face_search.annoy` (``AnnoyIndex``).

Example::

    >>> import numpy as np, face_search
    >>> rng = np.random.default_rng(0)
    >>> gallery = rng.normal(size=(1000, 64)).astype(np.float32)
    >>> index = face_search.HnswIndex.build(gallery, m=16, ef_construction=100)
    >>> ids, scores = index.search(gallery[7], k=3)
    >>> int(ids[0])
    7
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._native import FormatError

__all__ = [
    "FormatError",
    "ForestIndex",
    "HnswIndex",
    "LinearIndex",
    "engines",
    "load",
    "read_gallery",
    "write_gallery",
]

__version__ = "0.1.0"

PathLike = Union[str, "os.PathLike[str]"]


def _floats(x: Any, what: str) -> np.ndarray:
    """numpy arrays pass through (the native side checks dtype and ndim); other sequences
    become float32 arrays."""
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be an array of numbers: {e}") from None


def _params(params: dict) -> dict:
    out = {}
    for name, value in params.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        out[name] = str(value)
    return out


class _Index:
    """What every engine's index offers; see the subclasses."""

    _engine = ""

    def __init__(self, native: "_native.Engine"):
        if native.name != self._engine:
            raise TypeError(f"a {native.name} index is not a {type(self).__name__}")
        self._e = native

    @classmethod
    def build(cls, vectors: Any, **params: Any):
        """Builds an index over the rows of ``vectors`` (a 2-d float32 or float64 array,
        C- or F-ordered; C-ordered float32 is read in place). Row ``i`` gets id ``i``.
        ``params`` are the engine's build parameters (see :func:`engines`); unknown names
        raise ``ValueError``. Releases the GIL; Ctrl-C stops the build (KeyboardInterrupt).
        """
        native = _native.Engine.build(cls._engine, _floats(vectors, "vectors"), _params(params))
        return cls(native)

    @classmethod
    def load(cls, path: PathLike, warmup: str = "auto"):
        """Opens an index saved by :meth:`save`, memory-mapped: only the header is read now,
        the rest as queries touch it. ``warmup`` says how the parts every query reads come
        into memory: ``"auto"`` (the default: read before returning when the file is not in
        memory, else as ``"background"``), ``"lazy"`` (as queries need them),
        ``"background"`` (the kernel reads them ahead while queries run) or ``"eager"``
        (read before returning)."""
        native = _native.Engine.open(os.fspath(path), warmup)
        if native.name != cls._engine:
            raise FormatError(f"{os.fspath(path)}: holds a {native.name} index, not a {cls._engine} index")
        return cls(native)

    def save(self, path: PathLike) -> None:
        """Writes the index to ``path`` atomically (a temporary file renamed over it): a
        failed write raises ``OSError`` and leaves any previous file intact."""
        self._e.save(os.fspath(path))

    def search(
        self, queries: Any, k: int = 4, *, num_threads: int = 0
    ) -> Tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar rows, best first, as ``(ids, scores)``: int64 ids and
        float32 cosine similarities. A 1-d query gives 1-d arrays (fewer than ``k`` when the
        index holds fewer); a 2-d batch gives ``(n, min(k, len(index)))`` arrays, computed on
        ``num_threads`` threads (0: every core), padded with -1 / NaN where an approximate
        index finds fewer."""
        return self._e.search(_floats(queries, "queries"), k, None, num_threads)

    def search_threshold(self, query: Any, tau: float = 0.35) -> Tuple[np.ndarray, np.ndarray]:
        """Every row whose cosine similarity to ``query`` (1-d) is greater than ``tau`` (in
        [-1, 1]), best first, as ``(ids, scores)``. Approximate engines may miss some."""
        return self._e.search_threshold(_floats(query, "query"), tau)

    def get_vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of items ``ids`` (scaled to unit length), ``(len(ids), dim)``."""
        return self._e.vectors([int(i) for i in ids])

    def __len__(self) -> int:
        return len(self._e)

    @property
    def dim(self) -> int:
        """Components per vector."""
        return self._e.dim

    def __repr__(self) -> str:
        return f"<face_search.{type(self).__name__} len={len(self)} dim={self.dim}>"


class LinearIndex(_Index):
    """Exact cosine search over every row.

    Build parameters: ``compact_codes`` (keep int8 codes that let a single query skip most
    float reads while staying exact; default true). A batch search is one blocked matrix
    product.

    Example::

        >>> import numpy as np, face_search
        >>> g = np.eye(3, dtype=np.float32)
        >>> face_search.LinearIndex.build(g).search_threshold(np.array([1.0, 0.1, 0.0]), 0.5)[0]
        array([0])
    """

    _engine = "linear"


class HnswIndex(_Index):
    """Hierarchical Navigable Small World graph (Malkov & Yashunin), hnswlib's algorithm.

    Build parameters (hnswlib's names in brackets):

    - ``m`` (M): links per node on the upper layers, 2m on layer 0. Default 48.
    - ``ef_construction``: candidate list size while building. Default 200.
    - ``ef``: candidate list size while searching, the speed/recall knob; also the
      :attr:`ef` property. Default 100.
    - ``seed`` (random_seed): levels and insertion order. Default 100.
    - ``threads``: build threads, 0 for every core.
    - ``quantize``: walk the graph on int8 codes, re-rank in float32. Default true.
    - ``space``: ``"cosine"`` (default), ``"ip"`` (inner product) or ``"l2"`` (scores are
      minus the squared distance).

    Items can be added (:meth:`add`) and deleted (:meth:`delete`) after the build.
    """

    _engine = "hnsw"

    @property
    def ef(self) -> int:
        """Size of the candidate list of a search (at least ``k`` is used)."""
        return self._e.knob

    @ef.setter
    def ef(self, value: int) -> None:
        self._e.knob = int(value)

    def add(self, vectors: Any, ids: Optional[Sequence[int]] = None) -> np.ndarray:
        """Adds rows (2-d) to the graph and returns their ids: ``ids`` when given (distinct,
        none already in the index), else the next row numbers."""
        v = _floats(vectors, "vectors")
        return self._e.add(v, None if ids is None else [int(i) for i in ids])

    def delete(self, id: int) -> None:
        """Marks item ``id`` deleted: it is never returned again. ``ValueError`` when there
        is no such live item."""
        self._e.delete(int(id))

    @classmethod
    def load_hnswlib(cls, path: PathLike, dim: int, space: str = "cosine") -> "HnswIndex":
        """Opens a file written by hnswlib's ``save_index`` (copied into memory; ids are
        hnswlib's labels)."""
        return cls(_native.Engine.open_foreign("hnsw", os.fspath(path), dim, {"space": space}))

    def save_hnswlib(self, path: PathLike) -> None:
        """Writes the index in hnswlib's format (``hnswlib.Index(space, dim).load_index``)."""
        self._e.save_foreign(os.fspath(path))


class ForestIndex(_Index):
    """An Annoy forest (random-projection trees), stored in Annoy's own file format.

    Build parameters: ``n_trees`` (default 20), ``seed`` (42), ``metric`` (``"angular"`` or
    ``"euclidean"`` node layout; the index answers cosine either way), ``split``,
    ``two_means_iterations``, ``leaf_size`` (64, or ``"annoy"`` for Annoy's dim + 2).

    :attr:`search_k` is the speed/recall knob: candidates examined per query; 0 is the
    default, Annoy's ``k * n_trees`` but at least 5% of the items. Files written by
    :meth:`save` open in Python's ``annoy.AnnoyIndex(dim, "angular").load(path)``, and
    :meth:`load` opens Annoy's files.
    """

    _engine = "forest"

    @property
    def search_k(self) -> int:
        """Candidates a query examines; 0 for the default."""
        return self._e.knob

    @search_k.setter
    def search_k(self, value: int) -> None:
        self._e.knob = int(value)

    @classmethod
    def load_annoy(cls, path: PathLike, dim: int, metric: str = "angular") -> "ForestIndex":
        """Opens an Annoy file of ``dim`` components and ``metric`` (angular or euclidean)."""
        return cls(_native.Engine.open_foreign("forest", os.fspath(path), dim, {"metric": metric}))


_CLASSES = {c._engine: c for c in (LinearIndex, HnswIndex, ForestIndex)}


def load(path: PathLike, warmup: str = "auto") -> Union[LinearIndex, HnswIndex, ForestIndex]:
    """Opens any index file of ours (the engine is read from the file's header; a file
    without our header is taken for an Annoy file)."""
    native = _native.Engine.open(os.fspath(path), warmup)
    return _CLASSES[native.name](native)


def engines() -> dict:
    """Every engine: ``{name: {"about": str, "params": {param: (default, about)}}}``."""
    return {
        name: {"about": about, "params": {p: (d, a) for p, d, a in params}}
        for name, about, params in _native.engines()
    }


def read_gallery(path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """Reads the notebook's gallery file (``np.save`` of the vectors, then of the labels, on
    one file): ``(vectors, labels)``, float32 ``(n, d)`` and a numpy unicode array."""
    vectors, labels = _native.read_gallery(os.fspath(path))
    return vectors, np.asarray(labels, dtype=str)


def write_gallery(path: PathLike, vectors: Any, labels: Sequence[str]) -> None:
    """Writes the notebook's gallery file: ``vectors`` (2-d) then ``labels`` (one str per
    row), readable by two ``np.load`` calls on one open file. Atomic."""
    _native.write_gallery(os.fspath(path), _floats(vectors, "vectors"), [str(s) for s in labels])
