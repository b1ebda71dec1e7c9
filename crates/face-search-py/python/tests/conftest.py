"""Shared fixtures: small seeded galleries and an exact numpy oracle."""

import numpy as np
import pytest


def unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def oracle(gallery, query, k):
    """Exact cosine top-k (ids, scores) with the engines' order: score desc, then id."""
    scores = unit(gallery) @ unit(query)
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    return order, scores[order]


def clustered(n_people=40, per_person=5, distractors=2000, dim=64, seed=0):
    """Faces-like data: people with a few images each among random distractors."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, dim))
    people = np.repeat(centres, per_person, axis=0) + 0.7 * rng.normal(size=(n_people * per_person, dim))
    return np.concatenate([people, rng.normal(size=(distractors, dim))]).astype(np.float32)


@pytest.fixture(scope="session")
def gallery():
    return clustered()
