"""A drop-in for Python annoy's ``AnnoyIndex``, served by face_search's forest engine.

Change ``from annoy import AnnoyIndex`` to ``from face_search.annoy import AnnoyIndex`` and
the rest of the code runs unchanged::

    >>> import numpy as np
    >>> from face_search.annoy import AnnoyIndex
    >>> data = np.random.default_rng(2).normal(size=(300, 16))
    >>> t = AnnoyIndex(16, "angular")
    >>> for i, v in enumerate(data):
    ...     _ = t.add_item(i, v)
    >>> t.build(10)
    True
    >>> t.get_nns_by_vector(data[5], 1)
    [5]

Files are Annoy's own: :meth:`AnnoyIndex.save` writes Annoy's format (Python annoy's
``load`` opens it) and :meth:`AnnoyIndex.load` memory-maps files written by annoy.

Where this differs from annoy 1.17.3:

- Only the ``"angular"`` metric (cosine; annoy's distance ``sqrt(2 - 2 cos)``). Annoy's
  other metrics raise ``ValueError``.
- Items are stored scaled to unit length, so :meth:`AnnoyIndex.get_item_vector` returns
  the unit vector (annoy returns the vector as added; the angular distances are the same).
- Every item from 0 to the largest id must be added, finite and non-zero (annoy fills gaps
  with zero vectors); a bad vector raises ``ValueError`` (annoy: ``IndexError`` for a wrong
  length).
- The trees split down to leaves of 64 items (annoy: ``dim + 2``), so with the default
  ``search_k=-1`` a query examines ``max(n * n_trees, 5% of the items)`` candidates: better
  recall than annoy's default, the file still an ordinary Annoy file.
- ``n_jobs`` is ignored (the build uses every core); ``n_trees=-1`` builds 20 trees.
"""

from __future__ import annotations

import math
import os
from typing import Any, List, Optional, Tuple, Union

import numpy as np

from . import _native

__all__ = ["AnnoyIndex"]


class AnnoyIndex:
    """annoy's ``AnnoyIndex(f, metric)``: a forest of random-projection trees over vectors of
    ``f`` components. Add items with :meth:`add_item`, :meth:`build`, then query; or
    :meth:`load` a file."""

    def __init__(self, f: int, metric: str = "angular"):
        f = int(f)
        if f <= 0:
            raise ValueError(f"f must be at least 1, got {f}")
        if metric != "angular":
            raise ValueError(
                f"metric {metric!r} is not supported: face_search's forest answers cosine "
                "similarity, annoy's 'angular'"
            )
        self.f = f
        self.metric = metric
        self._seed: Optional[int] = None
        self._on_disk: Optional[str] = None
        self._reset()

    def _reset(self) -> None:
        self._e: Optional[_native.Engine] = None
        self._buf = np.zeros((0, self.f), dtype=np.float32)
        self._n = 0
        self._n_trees = 0

    def __repr__(self) -> str:
        return f"<face_search.annoy.AnnoyIndex f={self.f} metric='{self.metric}' items={self.get_n_items()}>"

    # --- building ------------------------------------------------------------------------

    def add_item(self, i: int, vector: Any) -> None:
        """Stores ``vector`` (``f`` numbers) as item ``i``."""
        if self._e is not None:
            raise RuntimeError("You can't add an item to a built index")
        i = int(i)
        if i < 0:
            raise ValueError(f"item ids must be non-negative, got {i}")
        v = np.asarray(vector, dtype=np.float32)
        if v.shape != (self.f,):
            raise ValueError(f"Vector has wrong length (expected {self.f}, got {v.size})")
        if i >= self._buf.shape[0]:
            grown = np.zeros((max(2 * self._buf.shape[0], i + 1, 1024), self.f), dtype=np.float32)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[i] = v
        self._n = max(self._n, i + 1)

    def set_seed(self, seed: int) -> None:
        """Seeds the build: the same seed and items give the same trees."""
        self._seed = int(seed)

    def verbose(self, v: bool) -> bool:
        """Accepted for compatibility; the build prints nothing."""
        return True

    def on_disk_build(self, fn: str) -> bool:
        """Makes :meth:`build` write the index to ``fn`` and serve it from there."""
        self._on_disk = os.fspath(fn)
        return True

    def build(self, n_trees: int, n_jobs: int = -1) -> bool:
        """Builds ``n_trees`` trees over the items added (every core; ``n_jobs`` is
        ignored). The GIL is released; Ctrl-C stops the build."""
        if self._e is not None:
            raise RuntimeError("You can't build a built index")
        n_trees = int(n_trees)
        if n_trees == -1:
            n_trees = 20
        if n_trees <= 0:
            raise ValueError(f"n_trees must be at least 1, got {n_trees}")
        params = {"n_trees": str(n_trees)}
        if self._seed is not None:
            params["seed"] = str(self._seed)
        self._e = _native.Engine.build("forest", self._buf[: self._n], params)
        self._n_trees = n_trees
        self._buf = np.zeros((0, self.f), dtype=np.float32)
        if self._on_disk is not None:
            self.save(self._on_disk)
        return True

    def unbuild(self) -> bool:
        """Not supported (annoy drops the trees to add more items): build a new index."""
        raise NotImplementedError("unbuild is not supported: add the items to a new index")

    # --- files ---------------------------------------------------------------------------

    def save(self, fn: str, prefault: bool = False) -> bool:
        """Writes the index in Annoy's file format (atomically), then serves it from that
        file, as annoy does."""
        if self._e is None:
            raise RuntimeError("You can't save an index that hasn't been built")
        path = os.fspath(fn)
        self._e.save_foreign(path)
        n_trees = self._n_trees
        self.load(path, prefault)
        self._n_trees = n_trees
        return True

    def load(self, fn: str, prefault: bool = False) -> bool:
        """Memory-maps an Annoy file of this index's ``f`` (written by annoy or by
        :meth:`save`): nothing is read until a query needs it, unless ``prefault``."""
        path = os.fspath(fn)
        e = _native.Engine.open_foreign("forest", path, self.f, {"metric": self.metric})
        self._reset()
        self._e = e
        self._n_trees = _count_roots(path, self.f)
        if prefault:
            # Annoy maps with MAP_POPULATE; reading the file through fills the page cache the
            # mapping reads from.
            with open(path, "rb", buffering=0) as f:
                while f.read(1 << 20):
                    pass
        return True

    def unload(self) -> bool:
        """Closes the file and forgets every item."""
        self._reset()
        return True

    # --- queries -------------------------------------------------------------------------

    def _built(self) -> _native.Engine:
        if self._e is None:
            raise RuntimeError("the index is not built or loaded")
        return self._e

    def get_nns_by_vector(
        self, vector: Any, n: int, search_k: int = -1, include_distances: bool = False
    ) -> Union[List[int], Tuple[List[int], List[float]]]:
        """The ``n`` nearest items to ``vector``, nearest first; with their angular distances
        (``sqrt(2 - 2 cos)``) when ``include_distances``. ``search_k`` candidates are
        examined (-1: the default, see the module's notes)."""
        e = self._built()
        q = np.asarray(vector, dtype=np.float32)
        if q.shape != (self.f,):
            raise ValueError(f"Vector has wrong length (expected {self.f}, got {q.size})")
        knob = None if int(search_k) < 0 else int(search_k)
        ids, scores = e.search(q, int(n), knob)
        if include_distances:
            d = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * scores.astype(np.float64)))
            return ids.tolist(), d.tolist()
        return ids.tolist()

    def get_nns_by_item(
        self, i: int, n: int, search_k: int = -1, include_distances: bool = False
    ) -> Union[List[int], Tuple[List[int], List[float]]]:
        """:meth:`get_nns_by_vector` for item ``i``'s vector."""
        v = self._built().vectors([int(i)])[0]
        return self.get_nns_by_vector(v, n, search_k, include_distances)

    def get_item_vector(self, i: int) -> List[float]:
        """Item ``i``'s stored vector (scaled to unit length)."""
        if self._e is None:
            if 0 <= int(i) < self._n:
                v = self._buf[int(i)]
                norm = float(np.linalg.norm(v))
                return (v / norm if norm else v).tolist()
            raise IndexError(f"no item {i}")
        return self._e.vectors([int(i)])[0].tolist()

    def get_distance(self, i: int, j: int) -> float:
        """The angular distance ``sqrt(2 - 2 cos)`` between items ``i`` and ``j``."""
        e = self._built()
        a, b = e.vectors([int(i), int(j)]).astype(np.float64)
        cos = float(a @ b) / (float(np.linalg.norm(a)) * float(np.linalg.norm(b)))
        return math.sqrt(max(0.0, 2.0 - 2.0 * cos))

    def get_n_items(self) -> int:
        """Number of items (one past the largest id added)."""
        return len(self._e) if self._e is not None else self._n

    def get_n_trees(self) -> int:
        """Number of trees, as annoy counts the roots of the file."""
        return self._n_trees


def _count_roots(path: str, f: int) -> int:
    """Annoy's root count: scan back from the last node while the descendant count matches
    the last node's, dropping the last one found when it repeats the first (annoy's fix)."""
    words = 3 + f  # angular node: n_descendants, children[2], v[f]
    data = np.memmap(path, dtype="<i4", mode="r")
    n_nodes = data.shape[0] // words
    roots = []
    m = None
    for node in range(n_nodes - 1, -1, -1):
        k = int(data[node * words])
        if m is None or k == m:
            roots.append(node)
            m = k
        else:
            break
    if len(roots) > 1 and data[roots[0] * words + 1] == data[roots[-1] * words + 1]:
        roots.pop()
    del data
    return len(roots)
