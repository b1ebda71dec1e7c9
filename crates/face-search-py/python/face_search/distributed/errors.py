"""The errors of a sharded gallery and the answer of a sharded search.

The errors pickle with every field (``__reduce__`` and :func:`_rebuild_error`): Ray sends
them from the actors to the driver, which gets them as the same classes."""

from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple

import numpy as np


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
