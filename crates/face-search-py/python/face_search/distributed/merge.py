"""Merging per-shard answers into the global ranking."""

from __future__ import annotations

from typing import List, Tuple

import numpy as np


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
