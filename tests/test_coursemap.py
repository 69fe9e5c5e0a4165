"""gvlib.coursemap: the course map read from a course tree (a synthetic one, and the repository's own)."""
import json
from pathlib import Path

import pytest

from gvlib import coursemap

ROOT = Path(__file__).resolve().parents[1]


def _nb(cells):
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _md(text, **nbgrader):
    meta = {"nbgrader": nbgrader} if nbgrader else {}
    return {"cell_type": "markdown", "metadata": meta, "source": text}


def _code(text, **nbgrader):
    meta = {"nbgrader": nbgrader} if nbgrader else {}
    return {"cell_type": "code", "metadata": meta, "source": text, "outputs": [], "execution_count": None}


def _tree(tmp_path):
    (tmp_path / "chapters").mkdir()
    (tmp_path / "solutions").mkdir()
    (tmp_path / "chapters" / "00_a.ipynb").write_text(json.dumps(_nb([
        _md("# 00 · First thing\n\nA GAN and its discriminator play a game. More text."),
        _md("## Later\nThe adversarial loss, then a latent code; its free\nenergy is no energy-based model, and energy\n"
            "plus entropy is no family either."),
    ])))
    (tmp_path / "chapters" / "00b_c.ipynb").write_text(json.dumps(_nb([_md("# 00b · Split part\n\nThe second half.")])))
    (tmp_path / "chapters" / "11_b.ipynb").write_text(json.dumps(_nb([
        _md("# 11 · Second thing\n\nAn autoregressive model, like $p(x_i \\mid x_{<i})$ in PixelCNN, is exact."),
    ])))
    (tmp_path / "solutions" / "11_b.ipynb").write_text(json.dumps(_nb([
        _code("def f(): pass", grade=False, solution=True),
        _code("assert True", grade=True, points=3),
        _code("assert True", grade=True, points=2),
        _md("answer", grade=True, points=0, solution=True),
    ])))
    (tmp_path / "README.md").write_text("| 00 | [First](chapters/00_a.ipynb) | 7 s | none |\n"
                                        "| 00 | [Split](chapters/00b_c.ipynb) | 9 s | none |\n")
    return tmp_path


def test_map_of_a_synthetic_course(tmp_path):
    root = _tree(tmp_path)
    entries = coursemap.course_map(root)
    assert [e.number for e in entries] == ["00", "00b", "11"]                      # whatever chapters/ holds, in order
    first, split, second = entries
    assert split.title == "Split part"
    assert first.title == "First thing" and first.summary.startswith("A GAN and its discriminator play a game.")
    assert first.seconds == 7.0 and second.seconds is None                 # README time; never executed
    assert split.seconds == 9.0                                            # by file name: same number, own time
    assert (first.exercises, first.points) == (0, 0.0)
    assert (second.exercises, second.points, second.written) == (2, 5.0, 1)
    assert first.mentions["implicit / adversarial (GAN)"] == 3 and first.mentions["latent-variable (VAE)"] == 1
    assert first.mentions["energy- and score-based"] == 1   # "free energy" (even wrapped) and "energy plus entropy": no family
    assert second.mentions["autoregressive"] == 2
    shares = coursemap.family_shares(entries)
    assert shares.shape == (3, len(coursemap.FAMILIES)) and abs(shares[[0, 2]].sum(1) - 1).max() < 1e-12
    table = coursemap.map_markdown(entries)
    assert "| 11 | **Second thing**" in table and "not run yet" in table and "2 graded, 5 points, 1 written" in table
    assert "$p(x_i \\mid x_{<i})$" in table                                # maths kept intact


def test_root_found_from_a_subfolder(tmp_path, monkeypatch):
    root = _tree(tmp_path)
    monkeypatch.delenv("GVLIB_COURSE_ROOT", raising=False)
    monkeypatch.chdir(root / "chapters")
    assert coursemap.find_course_root() == root.resolve()
    assert len(coursemap.course_map()) == 3


def test_without_a_checkout_the_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("GVLIB_COURSE_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert coursemap.find_course_root() is None
    with pytest.raises(FileNotFoundError, match="GVLIB_COURSE_ROOT"):
        coursemap.course_map()


def test_the_repository_map_lists_every_chapter():
    entries = coursemap.course_map(ROOT)
    assert [e.notebook.name for e in entries] == sorted(p.name for p in (ROOT / "chapters").glob("[0-9][0-9]*_*.ipynb"))
    assert all(e.title and e.summary for e in entries)
