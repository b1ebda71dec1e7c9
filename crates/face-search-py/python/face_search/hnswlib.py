"""A drop-in for Python hnswlib's ``Index``, served by face_search's HNSW engine.

Change ``import hnswlib`` to ``from face_search import hnswlib`` and the rest of the code
runs unchanged::

    >>> import numpy as np
    >>> from face_search import hnswlib
    >>> data = np.random.default_rng(1).normal(size=(500, 32)).astype(np.float32)
    >>> p = hnswlib.Index(space="cosine", dim=32)
    >>> p.init_index(max_elements=500, ef_construction=100, M=16)
    >>> p.add_items(data, np.arange(500))
    >>> p.set_ef(50)
    >>> labels, distances = p.knn_query(data[:2], k=1)
    >>> labels.ravel().tolist()
    [0, 1]

Files are hnswlib's own: ``save_index`` writes hnswlib's format (Python hnswlib's
``load_index`` opens it) and ``load_index`` reads files written by hnswlib.

Where this differs from hnswlib 0.8.0:

- Labels must fit in 32 bits (hnswlib allows 64).
- The graph is built by face_search's own HNSW (same algorithm, different insertion order,
  int8 codes for the walk in the cosine space), so neighbours can differ from hnswlib's
  where both are approximate; recall at a given ``ef`` is as good or better.
- Vectors must be finite and non-zero, in every space (hnswlib accepts anything).
- Adding an existing label deletes the old item and inserts the new vector (hnswlib
  updates the item in place); ``replace_deleted``, ``allow_replace_deleted``,
  ``unmark_deleted``, ``filter`` and pickling are not supported.
- ``save_index`` on an index with no items raises ``RuntimeError``.
- ``save_index(path)`` also writes ``path + ".fs"``, the same graph in face_search's own
  format, and ``path + ".fs.json"``, a stamp naming the size and modification time of both
  files. ``load_index`` memory-maps the ``.fs`` file when the stamp still matches both files
  and the space (milliseconds, whatever the size, and the walk on int8 codes); otherwise
  (a file written by hnswlib, or replaced since) it copies hnswlib's file into memory and
  walks it with float32 distances as hnswlib does. The two extra files may be deleted.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any, Optional, Tuple

import numpy as np

from . import _floats, _native
from ._files import _atomic_write

__all__ = ["Index"]

_SPACES = ("l2", "ip", "cosine")


class Index:
    """hnswlib's ``Index(space, dim)``: an HNSW graph over vectors of ``dim`` components.

    ``space`` is ``"cosine"`` (distance ``1 - cos``), ``"ip"`` (``1 - dot``) or ``"l2"``
    (squared Euclidean distance). Call :meth:`init_index` (or :meth:`load_index`) first.
    """

    def __init__(self, space: str, dim: int):
        if space not in _SPACES:
            raise ValueError(f"space must be one of l2, ip or cosine, got {space!r}")
        dim = int(dim)
        if dim <= 0:
            raise ValueError(f"dim must be at least 1, got {dim}")
        self.space = space
        self.dim = dim
        self._e: Optional[_native.Engine] = None
        self._initialised = False
        self._max_elements = 0
        self._count = 0
        self._max_label = -1
        self._M = 16
        self._ef_construction = 200
        self._seed = 100
        self._ef = 10
        self._num_threads = -1

    def __repr__(self) -> str:
        return (
            f"<face_search.hnswlib.Index(space='{self.space}', dim={self.dim})"
            f" count={self._count} max_elements={self._max_elements}>"
        )

    # --- creating ------------------------------------------------------------------------

    def init_index(
        self,
        max_elements: int,
        M: int = 16,
        ef_construction: int = 200,
        random_seed: int = 100,
        allow_replace_deleted: bool = False,
    ) -> None:
        """Prepares an empty index for up to ``max_elements`` items (grow it with
        :meth:`resize_index`), with ``M`` links per node (2M on layer 0) and a build
        candidate list of ``ef_construction``. ``random_seed`` seeds the levels and the
        insertion order."""
        if allow_replace_deleted:
            raise NotImplementedError("allow_replace_deleted is not supported")
        if int(M) < 2:
            raise ValueError(f"M must be at least 2, got {M}")
        self._max_elements = int(max_elements)
        self._M = int(M)
        self._ef_construction = int(ef_construction)
        self._seed = int(random_seed)
        self._e = None
        self._count = 0
        self._max_label = -1
        self._initialised = True

    def _check_init(self) -> None:
        if not self._initialised:
            raise RuntimeError("Index not initialized: call init_index or load_index first")

    def add_items(
        self,
        data: Any,
        ids: Any = None,
        num_threads: int = -1,
        replace_deleted: bool = False,
    ) -> None:
        """Inserts the rows of ``data`` (``(n, dim)`` or one ``(dim,)`` vector) under labels
        ``ids`` (default: the next integers), building the graph on ``num_threads`` threads
        (-1: every core). The GIL is released; Ctrl-C stops the first build."""
        self._check_init()
        if replace_deleted:
            raise NotImplementedError("replace_deleted is not supported")
        data = _floats(data, "data")
        if data.ndim == 1:
            data = data.reshape(1, -1)
        if data.ndim != 2:
            raise ValueError(f"data must be a 1-d or 2-d array, got {data.ndim} dimensions")
        if data.shape[1] != self.dim:
            raise ValueError(f"data has {data.shape[1]} components per vector, the index {self.dim}")
        n = data.shape[0]
        if ids is None:
            labels = np.arange(self._count, self._count + n, dtype=np.int64)
        else:
            labels = np.asarray(ids).reshape(-1)
            if labels.shape[0] != n:
                raise ValueError(f"{labels.shape[0]} ids for {n} rows")
            if labels.size and (labels.min() < 0 or labels.max() >= 2**32):
                raise ValueError("labels must be in [0, 2**32)")
            labels = labels.astype(np.int64)
        if n == 0:
            return
        if self._e is not None and labels.min() <= self._max_label:
            # hnswlib replaces an existing label's vector: delete the old item first.
            live = [int(x) for x in labels if self._contains(int(x))]
            for x in live:
                self._e.delete(x)
                self._count -= 1
        if self._count + n > self._max_elements:
            raise RuntimeError("The number of elements exceeds the specified limit")
        identity = bool(np.array_equal(labels, np.arange(n)))
        if self._e is None:
            params = {
                "m": str(self._M),
                "ef_construction": str(self._ef_construction),
                "ef": str(self._ef),
                "seed": str(self._seed),
                "threads": str(_threads(num_threads, self._num_threads)),
                "space": self.space,
            }
            e = _native.Engine.build("hnsw", data, params)
            if not identity:
                e.set_ids(labels.tolist())
            self._e = e
        else:
            self._e.add(data, labels.tolist())
        self._count += n
        self._max_label = max(self._max_label, int(labels.max()))

    def _contains(self, label: int) -> bool:
        try:
            self._e.vectors([label])
            return True
        except ValueError:
            return False

    # --- settings ------------------------------------------------------------------------

    def set_ef(self, ef: int) -> None:
        """Sets the search candidate list size (at least ``k`` is used)."""
        ef = int(ef)
        if ef <= 0:
            raise ValueError(f"ef must be at least 1, got {ef}")
        self._ef = ef
        if self._e is not None:
            self._e.knob = ef

    @property
    def ef(self) -> int:
        """The search candidate list size (hnswlib's default after init or load: 10)."""
        return self._ef

    @ef.setter
    def ef(self, value: int) -> None:
        self.set_ef(value)

    def set_num_threads(self, num_threads: int) -> None:
        """Default threads for :meth:`add_items` and :meth:`knn_query` (-1: every core)."""
        self._num_threads = int(num_threads)

    @property
    def num_threads(self) -> int:
        """Default threads of :meth:`add_items` and :meth:`knn_query` (-1: every core)."""
        return self._num_threads

    @property
    def M(self) -> int:
        """Links per node on the upper layers (2M on layer 0)."""
        return self._M

    @property
    def ef_construction(self) -> int:
        """Candidate list size while building."""
        return self._ef_construction

    @property
    def max_elements(self) -> int:
        """The capacity (see :meth:`resize_index`)."""
        return self._max_elements

    @property
    def element_count(self) -> int:
        """Items inserted, deleted ones included (:meth:`get_current_count`)."""
        return self._count

    def get_max_elements(self) -> int:
        """The capacity set by :meth:`init_index` or :meth:`resize_index`."""
        return self._max_elements

    def get_current_count(self) -> int:
        """Items inserted, deleted ones included (as hnswlib counts them)."""
        return self._count

    def resize_index(self, new_size: int) -> None:
        """Changes the capacity; it cannot drop below the current count."""
        self._check_init()
        new_size = int(new_size)
        if new_size < self._count:
            raise RuntimeError("Cannot resize, max element is less than the current number of elements")
        self._max_elements = new_size

    # --- queries -------------------------------------------------------------------------

    def knn_query(
        self, data: Any, k: int = 1, num_threads: int = -1, filter: Any = None
    ) -> Tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest items of each row of ``data`` (``(n, dim)`` or one vector):
        ``(labels, distances)``, uint64 and float32 arrays of shape ``(n, k)``, nearest
        first. Distances are hnswlib's: ``1 - cos`` (cosine), ``1 - dot`` (ip), squared
        Euclidean distance (l2). Raises ``RuntimeError`` when fewer than ``k`` are found."""
        if filter is not None:
            raise NotImplementedError("filter is not supported")
        if self._e is None:
            raise RuntimeError("Cannot return the results in a contiguous 2D array. Probably ef or M is too small")
        data = _floats(data, "data")
        if data.ndim == 1:
            data = data.reshape(1, -1)
        k = int(k)
        ids, scores = self._e.search(data, k, None, _threads(num_threads, self._num_threads))
        if ids.shape[1] < k or (ids < 0).any():
            raise RuntimeError("Cannot return the results in a contiguous 2D array. Probably ef or M is too small")
        if self.space == "l2":
            distances = -scores
        else:
            distances = 1.0 - scores
        return ids.astype(np.uint64), distances.astype(np.float32, copy=False)

    def get_items(self, ids: Any = None, return_type: str = "numpy") -> Any:
        """The stored vectors of ``ids`` (cosine vectors are stored normalised, as hnswlib
        does): an ``(n, dim)`` float32 array, or a list of lists with ``return_type="list"``."""
        if self._e is None:
            raise RuntimeError("Label not found")
        if ids is None:
            raise NotImplementedError("get_items() needs the labels to return")
        labels = np.asarray(ids).reshape(-1)
        try:
            out = self._e.vectors([int(x) for x in labels])
        except ValueError as e:
            raise RuntimeError(f"Label not found: {e}") from None
        return out.tolist() if return_type == "list" else out

    def mark_deleted(self, label: int) -> None:
        """Marks ``label`` deleted: it is never returned again."""
        if self._e is None:
            raise RuntimeError("Label not found")
        try:
            self._e.delete(int(label))
        except ValueError as e:
            raise RuntimeError(f"Label not found: {e}") from None

    # --- files ---------------------------------------------------------------------------

    def save_index(self, path_to_index: str) -> None:
        """Writes the index in hnswlib's file format (atomically), plus the ``.fs`` copy in
        face_search's format and its ``.fs.json`` stamp that let :meth:`load_index` map it
        instead of reading it (see the module's notes)."""
        if self._e is None:
            raise RuntimeError("the index holds no items: there is nothing to save")
        path = os.fspath(path_to_index)
        stamp = path + _STAMP
        # No stamp while the files change: a half-done save never pairs old and new files.
        if os.path.exists(stamp):
            os.remove(stamp)
        self._e.save_foreign(path)
        self._e.save(path + _NATIVE)
        text = json.dumps(_stamp_of(path, self.space))
        _atomic_write(stamp, lambda f: f.write(text.encode()))

    def load_index(
        self, path_to_index: str, max_elements: int = 0, allow_replace_deleted: bool = False
    ) -> None:
        """Opens a file in hnswlib's format (written by hnswlib or by :meth:`save_index`)
        for this index's ``space`` and ``dim``. ``ef`` is reset to 10, as hnswlib does. A
        file saved by :meth:`save_index` opens memory-mapped from its ``.fs`` copy."""
        if allow_replace_deleted:
            raise NotImplementedError("allow_replace_deleted is not supported")
        path = os.fspath(path_to_index)
        e = _open_native_copy(path, self.dim, self.space)
        if e is None:
            e = _native.Engine.open_foreign("hnsw", path, self.dim, {"space": self.space})
        with open(path, "rb") as f:
            head = f.read(96)
        # The header was checked by the native loader; read what hnswlib reports from it.
        file_max, count = struct.unpack_from("<QQ", head, 8)
        (m,) = struct.unpack_from("<Q", head, 72)
        (efc,) = struct.unpack_from("<Q", head, 88)
        self._e = e
        self._count = int(count)
        # Labels of a file are unknown here: check every added label against the index.
        self._max_label = 2**32
        self._max_elements = max(int(max_elements), int(file_max), self._count)
        self._M = int(m)
        self._ef_construction = int(efc)
        self._ef = 10
        self._e.knob = 10
        self._initialised = True


_NATIVE = ".fs"
_STAMP = ".fs.json"


def _stamp_of(path: str, space: str) -> dict:
    """What ties ``path + ".fs"`` to the hnswlib file ``path``: both files' sizes and
    modification times, and the space."""
    main, native = os.stat(path), os.stat(path + _NATIVE)
    return {
        "space": space,
        "hnswlib": [main.st_size, main.st_mtime_ns],
        "native": [native.st_size, native.st_mtime_ns],
    }


def _open_native_copy(path: str, dim: int, space: str) -> Optional[_native.Engine]:
    """The memory-mapped ``.fs`` copy that :meth:`Index.save_index` wrote beside ``path``,
    when its stamp still matches both files; else None. Opened with background warm-up: a
    drop-in caller loads and asks at hnswlib's small default ef at once, and one such query
    touches few pages, so reading the graph first (``"auto"`` on a cold file) would only make
    it wait."""
    try:
        with open(path + _STAMP) as f:
            stamp = json.load(f)
        if stamp != _stamp_of(path, space):
            return None
        e = _native.Engine.open(path + _NATIVE, "background")
    except (OSError, ValueError):
        return None
    return e if e.name == "hnsw" and e.dim == dim else None


def _threads(num_threads: int, default: int) -> int:
    n = int(num_threads)
    if n <= 0:
        n = int(default)
    return 0 if n <= 0 else n
