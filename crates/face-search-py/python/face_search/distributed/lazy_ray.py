"""The lazy import of ray: face_search.distributed imports it only when it needs it, so
``import face_search`` and ``import face_search.distributed`` work without it."""

from __future__ import annotations


def _ray():
    try:
        import ray
    except ImportError as e:  # pragma: no cover - exercised only without ray
        raise ImportError(
            "face_search.distributed needs ray: pip install ray==2.60.0 "
            "(scripts/pyenv.sh --package installs it)"
        ) from e
    return ray
