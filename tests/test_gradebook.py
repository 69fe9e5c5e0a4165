"""A whole class through `coursekit grade FOLDER`: the gradebook, the feedback files, the summary, resuming.

A small synthetic class of one master: a correct submission, a blank one, an LMS-named file with one wrong answer
and a written answer, a symbolic link to another student's notebook, a file that is not a notebook, and a hanging
answer. Graded with -j 2; then graded again (nothing changed: nothing graded), then with one file changed (only
that one graded). --shard and --collect build the same gradebook.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from coursekit import exercises as course
from coursekit.gradebook import _match, _student_of_flat
from coursekit.sandbox import bwrap_problem

FLAGS = [] if bwrap_problem() is None else ["--no-sandbox"]


def _cell(kind, source, **nbg):
    cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
    if nbg:
        cell.metadata["nbgrader"] = dict(nbg, schema_version=3, task=False, locked=False)
    return cell


def _master():
    setup = nbformat.v4.new_code_cell("import math")
    setup.metadata["tags"] = ["setup"]
    return nbformat.v4.new_notebook(cells=[
        setup,
        _cell("code", "def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION",
              grade=False, grade_id="square", solution=True),
        _cell("code", "assert square(3) == 9, 'square(3)'\n### BEGIN HIDDEN TESTS\nassert square(-2) == 4, 'hidden'\n"
              "### END HIDDEN TESTS", grade=True, grade_id="square_test", points=2, solution=False),
        _cell("code", "def hyp(a, b):\n    ### BEGIN SOLUTION\n    return math.hypot(a, b)\n    ### END SOLUTION",
              grade=False, grade_id="hyp", solution=True),
        _cell("code", "assert abs(hyp(3, 4) - 5) < 1e-9, 'hyp(3, 4)'", grade=True, grade_id="hyp_test", points=3,
              solution=False),
        _cell("markdown", "### BEGIN SOLUTION\nBecause squares add.\n### END SOLUTION", grade=True,
              grade_id="why", points=0, solution=True),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})


def _submission(exercise: Path, answers: dict[str, str]) -> str:
    nb = nbformat.read(exercise, as_version=4)
    for cell in nb.cells:
        gid = course.nbgrader_meta(cell).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    return nbformat.writes(nb)


GOOD = {"square": "def square(x):\n    return x ** 2", "hyp": "def hyp(a, b):\n    return (a * a + b * b) ** 0.5"}


@pytest.fixture()
def klass(tmp_path):
    sol, ex, sub = tmp_path / "private" / "solutions", tmp_path / "exercises", tmp_path / "submitted"
    sol.mkdir(parents=True)
    nbformat.write(_master(), sol / "99_tiny.ipynb")
    course.build(sol, ex)
    exercise = ex / "99_tiny.ipynb"
    for student, text in {
        "alice": _submission(exercise, GOOD),
        "bob": exercise.read_text(),
        "frank": _submission(exercise, dict(GOOD, hyp="import time\ndef hyp(a, b):\n    time.sleep(600)")),
        "erin": "{ not a notebook",
    }.items():
        (sub / student).mkdir(parents=True)
        (sub / student / "99_tiny.ipynb").write_text(text)
    (sub / "dave").mkdir()
    (sub / "dave" / "99_tiny.ipynb").symlink_to(sub / "alice" / "99_tiny.ipynb")
    carol = _submission(exercise, dict(GOOD, square="def square(x):\n    return 9", why="Pythagoras, *of course*."))
    (sub / "carol_12345_67890_99_tiny-1.ipynb").write_text(carol)
    return tmp_path, sol, sub


def _grade(root, *args):
    run = subprocess.run([sys.executable, "-m", "coursekit", "grade", *args, *FLAGS], capture_output=True, text=True,
                         cwd=root, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def _rows(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


def test_lms_names_are_matched_to_their_master():
    masters = {"03_closed_form_kl": Path("x"), "01_elbo": Path("y"), "00_start_here": Path("z")}
    assert _match("03_closed_form_kl.ipynb", masters) == ("03_closed_form_kl", "")
    stem, before = _match("smithjane_12345_67890_03_closed_form_kl-1.ipynb", masters)
    assert stem == "03_closed_form_kl" and _student_of_flat(before) == "smithjane_12345"
    stem, before = _match("Jane Smith_4711_assignsubmission_file_01_elbo (1).ipynb", masters)
    assert stem == "01_elbo" and _student_of_flat(before) == "jane_smith_4711"
    assert _match("notes.ipynb", masters) == (None, "")


def test_a_class_gradebook_feedback_and_resume(klass):
    root, sol, sub = klass
    out = root / "grades"
    run = _grade(root, str(sub), "--solutions", str(sol), "--out", str(out), "-j", "2", "--timeout", "5")
    assert "graded 6 submissions" in run.stderr
    rows = _rows(out / "gradebook.csv")
    assert set(rows) == {"alice", "bob", "carol_12345", "dave", "erin", "frank"}
    got = {s: (r["99_tiny:square_test"], r["99_tiny:hyp_test"], r["total"]) for s, r in rows.items()}
    assert got["alice"] == ("2", "3", "5") and got["bob"] == ("0", "0", "0")
    assert got["carol_12345"] == ("0", "3", "3") and got["frank"] == ("2", "0", "2")
    assert got["dave"] == ("0", "0", "0") and got["erin"] == ("0", "0", "0")
    assert rows["alice"]["max"] == "5" and rows["alice"]["status"] == "graded"
    assert rows["dave"]["status"] == "invalid" and rows["erin"]["status"] == "invalid"
    # feedback: verdicts, messages and the written answer, verbatim
    carol = (out / "feedback" / "carol_12345.md").read_text()
    assert "Score: **3 / 5**" in carol and "| square_test | 0 / 2 | failed | AssertionError: hidden |" in carol
    assert "| hyp_test | 3 / 3 | passed |  |" in carol
    assert "Pythagoras, *of course*." in carol and "square(-2)" not in carol  # no hidden test's source
    assert "Because squares add" not in carol  # never the model answer
    frank = (out / "feedback" / "frank.md").read_text()
    assert "| hyp_test | 0 / 3 | failed |" in frank and ("timed out" in frank or "in time" in frank)
    summary = (out / "summary.md").read_text()
    assert "symbolic link" in summary and "not a readable notebook" in summary
    # resumable: nothing changed, nothing graded; one file changed, one graded
    again = _grade(root, str(sub), "--solutions", str(sol), "--out", str(out), "--timeout", "5")
    assert "graded 0 submissions, kept 6 unchanged" in again.stderr
    (sub / "bob" / "99_tiny.ipynb").write_text(_submission(sol.parent.parent / "exercises" / "99_tiny.ipynb", GOOD))
    again = _grade(root, str(sub), "--solutions", str(sol), "--out", str(out), "--timeout", "5")
    assert "graded 1 submissions, kept 5 unchanged" in again.stderr
    assert _rows(out / "gradebook.csv")["bob"]["total"] == "5"


def test_shards_and_collect_build_the_same_gradebook(klass):
    root, sol, sub = klass
    (sub / "frank" / "99_tiny.ipynb").unlink()  # no hanging answer here: this test is about the parts
    out = root / "sharded"
    for k in range(3):
        run = _grade(root, str(sub), "--solutions", str(sol), "--out", str(out), "--shard", f"{k}/3")
        assert "--collect" in run.stderr and not (out / "gradebook.csv").exists()
    _grade(root, str(sub), "--solutions", str(sol), "--out", str(out), "--collect")
    rows = _rows(out / "gradebook.csv")
    assert {s: r["total"] for s, r in rows.items()} == {"alice": "5", "bob": "0", "carol_12345": "3", "dave": "0",
                                                         "erin": "0"}


# ------------------------------------------------------------------------------------------------ a synthetic class
def synthetic_class(master_path: Path, exercise_path: Path, out: Path, n: int = 200) -> dict[str, int]:
    """`n` submissions of one master in out/<student>/<name>.ipynb, a quarter of each kind: blank (the exercise as
    released), correct (the master's answers), raising (every answer raises) and hanging (correct but one answer,
    in turn, loops forever on the CPU). Each file differs (a comment with the student's number)."""
    import re

    master = nbformat.read(master_path, as_version=4)
    answers = {}
    for cell in master.cells:
        meta = course.nbgrader_meta(cell)
        if meta.get("solution") and cell.cell_type == "code":
            answers[meta["grade_id"]] = "\n".join(ln for ln in cell.source.split("\n") if "SOLUTION" not in ln)
    names = {gid: re.search(r"def (\w+)\(", src).group(1) for gid, src in answers.items() if "def " in src}
    kinds = ("blank", "correct", "raising", "hanging")
    counts = dict.fromkeys(kinds, 0)
    for i in range(n):
        kind = kinds[i % 4]
        counts[kind] += 1
        nb = nbformat.read(exercise_path, as_version=4)
        hang = sorted(names)[(i // 4) % len(names)] if names else None
        for cell in nb.cells:
            gid = course.nbgrader_meta(cell).get("grade_id")
            if gid not in answers or kind == "blank":
                continue
            if kind == "correct" or (kind == "hanging" and gid != hang):
                cell.source = answers[gid]
            elif gid in names:
                body = "raise RuntimeError('not finished yet')" if kind == "raising" else "while True:\n        pass"
                cell.source = f"def {names[gid]}(*args, **kwargs):\n    {body}"
            cell.source = f"# student {i:03d}\n" + cell.source
        folder = out / f"student{i:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / master_path.name)
    return counts


if __name__ == "__main__":  # python tests/test_gradebook.py OUT [N]: chapter 01's synthetic class, for timing
    repo = Path(__file__).resolve().parent.parent
    print(synthetic_class(repo / "solutions" / "01_elbo.ipynb", repo / "exercises" / "01_elbo.ipynb",
                          Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 200))
