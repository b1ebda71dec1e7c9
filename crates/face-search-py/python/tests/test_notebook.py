"""python/examples/notebook.py: the seed notebook on our engines prints its table and labels."""

import os
import pathlib
import re
import subprocess
import sys

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "notebook.py"
SEED_IMPORTS = ("import hnswlib", "from annoy import AnnoyIndex")


def test_the_example_changes_only_the_two_imports():
    text = EXAMPLE.read_text()
    assert "from face_search import hnswlib" in text
    assert "from face_search.annoy import AnnoyIndex" in text
    for line in text.splitlines():
        assert line.strip() not in SEED_IMPORTS


def test_the_notebook_runs_and_finds_the_person(tmp_path):
    env = dict(os.environ, FACE_SEARCH_NOTEBOOK_RANDOM="5000")
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout

    def labels(name):
        # From "name:" to the next "other_name:" line (or the table).
        block = re.split(r"\n(?=\w+_label[s]?:|\s+Load)", text.split(f"\n{name}:", 1)[1])[0]
        return [x for x in re.findall(r"'([^']+)'", block) if not x.startswith("<U")]

    assert labels("query_label") == ["Eduardo_Eiras1"]
    # Exact search: exactly the person's other images.
    assert sorted(labels("linear_labels")) == [f"Eduardo_Eiras{i}" for i in range(2, 6)]
    assert sorted(labels("hnsw_labels")) == [f"Eduardo_Eiras{i}" for i in range(2, 6)]
    assert labels("annoy_labels")[0].startswith("Eduardo_Eiras")
    # The notebook's table.
    assert re.search(r"Load\s+Query\s+Total", text)
    for row in ("Busca Linear", "HNSW", "Annoy"):
        assert re.search(rf"{row}\s+[0-9.e-]+\s+[0-9.e-]+\s+[0-9.e-]+", text), text
    for f in ("search_data.npy", "hnsw.bin", "forest.ann"):
        assert (tmp_path / "search_files" / f).exists()
