"""The exercise builder: exercises/ is generated from solutions/, up to date, and leaks nothing."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

from gvlib import course

REPO = Path(__file__).resolve().parent.parent


def _cell(source, **nbgrader):
    cell = nbformat.v4.new_code_cell(source)
    if nbgrader:
        cell.metadata["nbgrader"] = nbgrader
    return cell


def test_course_exercises_are_up_to_date_and_leak_nothing():
    problems = course.check(REPO / "solutions", REPO / "exercises")
    assert problems == [], "\n".join(problems)


def test_every_master_has_graded_exercises_with_points():
    masters = sorted((REPO / "solutions").glob("*.ipynb"))
    assert masters, "solutions/ holds no masters"
    for m in masters:
        exercises = course.exercises_of(nbformat.read(m, as_version=4))
        assert exercises, f"{m.name} has no graded cell"
        assert all(ex.points > 0 and ex.answer_ids for ex in exercises), m.name


def test_make_exercise_stubs_answers_drops_hidden_tests_and_keeps_points():
    master = nbformat.v4.new_notebook(cells=[
        _cell("def f(x):\n    '''doc'''\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION",
              grade=False, grade_id="f", solution=True),
        _cell("assert f(1) == 2\n### BEGIN HIDDEN TESTS\nassert f(41) == 42\n### END HIDDEN TESTS\nprint('ok')",
              grade=True, grade_id="f_test", points=3, solution=False),
        nbformat.v4.new_markdown_cell("Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION"),
    ])
    master.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="secret")]
    master.cells[0].execution_count = 4
    ex = course.make_exercise(master)
    assert ex.cells[0].source == "def f(x):\n    '''doc'''\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    assert ex.cells[0].outputs == [] and ex.cells[0].execution_count is None
    assert ex.cells[1].source == "assert f(1) == 2\nprint('ok')"
    assert ex.cells[1].metadata["nbgrader"]["points"] == 3
    assert ex.cells[2].source == "Why?\nYOUR ANSWER HERE"
    assert course.leaks(master, ex) == []
    # the master is left untouched
    assert "y = x + 1" in master.cells[0].source


def test_leak_check_catches_answer_and_hidden_test_text():
    master = nbformat.v4.new_notebook(cells=[
        _cell("def f(x):\n    ### BEGIN SOLUTION\n    return x * 7919\n    ### END SOLUTION",
              grade=False, grade_id="f", solution=True),
        _cell("assert f(1) == 7919\n### BEGIN HIDDEN TESTS\nassert f(2) == 15838\n### END HIDDEN TESTS",
              grade=True, grade_id="f_test", points=1, solution=False),
    ])
    ex = course.make_exercise(master)
    ex.cells.append(nbformat.v4.new_code_cell("# a hint gone wrong\nreturn x * 7919"))
    ex.cells.append(nbformat.v4.new_markdown_cell("assert f(2) == 15838"))
    found = course.leaks(master, ex)
    assert "return x * 7919" in found and "assert f(2) == 15838" in found


def test_out_of_date_and_orphan_exercises_are_reported(tmp_path):
    sol, ex = tmp_path / "solutions", tmp_path / "exercises"
    sol.mkdir()
    master = nbformat.v4.new_notebook(cells=[
        _cell("def g():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION", grade=False, grade_id="g", solution=True),
        _cell("assert g() == 1", grade=True, grade_id="g_test", points=1, solution=False)])
    nbformat.write(master, sol / "01_a.ipynb")
    assert course.check(sol, ex) == [f"{ex / '01_a.ipynb'}: missing (run `make exercises`)"]
    assert course.build(sol, ex) == [ex / "01_a.ipynb"]
    assert course.build(sol, ex) == []  # idempotent: nothing rewritten
    assert course.check(sol, ex) == []
    master.cells[1].source = "assert g() == 1\nassert g() + 1 == 2"
    nbformat.write(master, sol / "01_a.ipynb")
    nbformat.write(master, ex / "02_orphan.ipynb")
    problems = course.check(sol, ex)
    assert any("out of date" in p for p in problems) and any("has no master" in p for p in problems)


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n### END SOLUTION", "without a"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
])
def test_unbalanced_markers_give_a_clear_error(source, message):
    nb = nbformat.v4.new_notebook(cells=[_cell(source, grade=False, grade_id="a", solution=True)])
    with pytest.raises(course.MarkerError, match=message):
        course.make_exercise(nb, "x.ipynb")


def test_graded_cell_without_points_is_rejected():
    nb = nbformat.v4.new_notebook(cells=[_cell("assert True", grade=True, grade_id="t", solution=False)])
    with pytest.raises(course.MarkerError, match="points"):
        course.exercises_of(nb)


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_installs_what_pyproject_declares():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {_name(r): r.replace(" ", "") for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert any(d.startswith("python") for d in conda) and "pip" in conda
    assert "-e ." in pip, "environment.yml must install the course itself (pip: -e .)"
    listed = {_name(r): r.replace(" ", "") for r in pip if not r.startswith("-")}
    assert listed == declared, (
        f"environment.yml and pyproject.toml disagree: only in environment.yml {sorted(set(listed.items()) - set(declared.items()))}, "
        f"only in pyproject.toml {sorted(set(declared.items()) - set(listed.items()))}")
    python_min = project["requires-python"].replace(">=", "")
    assert f"python>={python_min}" in conda
