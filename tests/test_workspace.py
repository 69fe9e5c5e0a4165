"""coursekit workspace: a learner's copy that git pull never touches, refreshed without losing their edits."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from coursekit.workspace import MANIFEST, sync


def _course(tmp_path: Path) -> Path:
    course = tmp_path / "course"
    for rel, text in {"chapters/01_a.ipynb": "a1", "chapters/02_b.ipynb": "b1", "exercises/01_a.ipynb": "ex1",
                      "results/table.json": "{}", "solutions/01_a.ipynb": "secret"}.items():
        (course / rel).parent.mkdir(parents=True, exist_ok=True)
        (course / rel).write_text(text)
    return course


def test_first_run_copies_notebooks_and_results_but_not_masters(tmp_path):
    course = _course(tmp_path)
    dest = tmp_path / "my-work"
    report = sync(course, dest)
    assert sorted(report["copied"]) == ["chapters/01_a.ipynb", "chapters/02_b.ipynb", "exercises/01_a.ipynb",
                                        "results/table.json"]
    assert (dest / "chapters/01_a.ipynb").read_text() == "a1" and not (dest / "solutions").exists()
    # a second run without --refresh touches nothing, even when the course changed
    (course / "chapters/01_a.ipynb").write_text("a2")
    report = sync(course, dest)
    assert report["copied"] == [] and (dest / "chapters/01_a.ipynb").read_text() == "a1"


def test_refresh_updates_untouched_copies_and_keeps_the_learners_edits(tmp_path):
    course = _course(tmp_path)
    dest = tmp_path / "my-work"
    sync(course, dest)
    (dest / "chapters/02_b.ipynb").write_text("b1 + my notes")          # the learner's work
    (course / "chapters/01_a.ipynb").write_text("a2")                    # the course changed both
    (course / "chapters/02_b.ipynb").write_text("b2")
    (course / "chapters/03_c.ipynb").write_text("c1")                    # and added a chapter
    (course / "exercises/01_a.ipynb").unlink()                           # and removed one file
    report = sync(course, dest, refresh=True)
    assert report["updated"] == ["chapters/01_a.ipynb"] and report["copied"] == ["chapters/03_c.ipynb"]
    assert report["beside"] == ["chapters/02_b.ipynb -> chapters/02_b.updated.ipynb"]
    assert (dest / "chapters/01_a.ipynb").read_text() == "a2"
    assert (dest / "chapters/02_b.ipynb").read_text() == "b1 + my notes"
    assert (dest / "chapters/02_b.updated.ipynb").read_text() == "b2"
    assert (dest / "exercises/01_a.ipynb").read_text() == "ex1"          # never deleted
    # refreshing again changes nothing and writes no second copy beside
    report = sync(course, dest, refresh=True)
    assert report["beside"] == [] and report["updated"] == []
    # a later course change beside an already-kept edit gets its own name
    (course / "chapters/02_b.ipynb").write_text("b3")
    report = sync(course, dest, refresh=True)
    assert report["beside"] == ["chapters/02_b.ipynb -> chapters/02_b.updated.1.ipynb"]
    assert (dest / "chapters/02_b.ipynb").read_text() == "b1 + my notes"


def test_a_damaged_manifest_treats_copies_as_the_learners(tmp_path, capsys):
    course = _course(tmp_path)
    dest = tmp_path / "my-work"
    sync(course, dest)
    (dest / MANIFEST).write_text("{not json")
    (course / "chapters/01_a.ipynb").write_text("a2")
    report = sync(course, dest, refresh=True)
    assert "unreadable" in capsys.readouterr().err
    assert (dest / "chapters/01_a.ipynb").read_text() == "a1" and "chapters/01_a.ipynb -> " in report["beside"][0]
    assert json.loads((dest / MANIFEST).read_text())["chapters/01_a.ipynb"]


def test_bad_folders_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no chapters/ folder"):
        sync(tmp_path, tmp_path / "w")
    course = _course(tmp_path)
    with pytest.raises(ValueError, match="onto itself"):
        sync(course, course / "chapters")


def test_the_command_line(tmp_path):
    course = _course(tmp_path)
    out = subprocess.run([sys.executable, "-m", "coursekit", "workspace", "--course", str(course),
                          "--dest", str(tmp_path / "w")], capture_output=True, text=True)
    assert out.returncode == 0 and "4 copied" in out.stdout, out.stderr
    out = subprocess.run([sys.executable, "-m", "coursekit", "workspace", "--course", str(tmp_path / "none")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "no chapters/ folder" in out.stderr
