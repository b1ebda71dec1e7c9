"""The documentation a user reads with help(): every public name documented, every example in
a docstring runs and prints what it says."""

import doctest
import inspect
import pydoc

import pytest

import face_search
from face_search import annoy, distributed, hnswlib

MODULES = [face_search, hnswlib, annoy]
CLASSES = [
    face_search.LinearIndex,
    face_search.HnswIndex,
    face_search.ForestIndex,
    hnswlib.Index,
    annoy.AnnoyIndex,
    distributed.ShardedIndex,
    distributed.LocalCluster,
    distributed.SearchResult,
]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{module.__name__} has no example"
    assert result.failed == 0


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__qualname__)
def test_every_public_method_is_documented(cls):
    missing = [
        name
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_")
        and (inspect.isfunction(member) or inspect.ismethod(member) or isinstance(member, property))
        and not (member.__doc__ or "").strip()
    ]
    assert not missing, f"{cls.__qualname__}: no docstring for {missing}"


def test_the_distributed_module_shows_how():
    assert "Example" in distributed.__doc__ and "build_sharded(" in distributed.__doc__


def test_help_reads_like_hnswlibs_docs():
    text = pydoc.render_doc(hnswlib.Index, renderer=pydoc.plaintext)
    for phrase in ["init_index", "max_elements", "ef_construction", "knn_query", "1 - cos", "save_index"]:
        assert phrase in text
    text = pydoc.render_doc(face_search.HnswIndex, renderer=pydoc.plaintext)
    for phrase in ["Build parameters", "ef_construction", "search_threshold", "ValueError"]:
        assert phrase in text, phrase
