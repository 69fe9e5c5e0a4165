"""coursekit.exercises: exercises/ is generated from solutions/ as nbgrader would, up to date, and leaks nothing."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from coursekit import exercises as course

REPO = Path(__file__).resolve().parent.parent


KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def _notebook(cells):
    return nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": dict(KERNELSPEC)})


def _cell(source, **nbgrader):
    cell = nbformat.v4.new_code_cell(source)
    if nbgrader:
        cell.metadata["nbgrader"] = nbgrader
    return cell


def test_course_exercises_are_up_to_date_and_leak_nothing():
    problems = course.check(REPO / "solutions", REPO / "exercises", REPO / "chapters")
    assert problems == [], "\n".join(problems)


def test_every_master_has_graded_exercises_with_points():
    masters = sorted((REPO / "solutions").glob("*.ipynb"))
    assert masters, "solutions/ holds no masters"
    for m in masters:
        exercises = course.exercises_of(nbformat.read(m, as_version=4))
        assert exercises, f"{m.name} has no graded cell"
        assert all(ex.points > 0 and ex.answer_ids for ex in exercises), m.name


def test_make_exercise_stubs_answers_drops_hidden_tests_and_keeps_points():
    master = _notebook([
        _cell("def f(x):\n    '''doc'''\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION",
              grade=False, grade_id="f", solution=True),
        _cell("assert f(1) == 2\n### BEGIN HIDDEN TESTS\nassert f(41) == 42\n### END HIDDEN TESTS\nprint('ok')",
              grade=True, grade_id="f_test", points=3, solution=False),
        nbformat.v4.new_markdown_cell("Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION",
                                      metadata={"nbgrader": {"grade": True, "grade_id": "why", "points": 0,
                                                             "solution": True}}),
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
    master = _notebook([
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
    master = _notebook([
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
    nb = _notebook([_cell(source, grade=False, grade_id="a", solution=True)])
    with pytest.raises(course.MarkerError, match=message):
        course.make_exercise(nb, "x.ipynb")


def test_graded_cell_without_points_is_rejected():
    nb = _notebook([_cell("assert True", grade=True, grade_id="t", solution=False)])
    with pytest.raises(course.MarkerError, match="points"):
        course.exercises_of(nb)


@pytest.mark.parametrize("begin, end", [
    ("### BEGIN SOLUTION", "### END SOLUTION"),
    ("## BEGIN SOLUTION", "## END SOLUTION"),
    ("# BEGIN SOLUTION", "# END SOLUTION"),
    ("### BEGIN SOLUTION  # note", "### END SOLUTION  # end of the answer"),
    ("BEGIN SOLUTION", "END SOLUTION"),
])
def test_markers_are_matched_anywhere_in_a_line_as_nbgrader_does(begin, end):
    master = _notebook([
        _cell(f"def f(x):\n    {begin}\n    return x * 7919\n    {end}", grade=False, grade_id="f", solution=True),
        _cell("assert f(1) == 7919\n# BEGIN HIDDEN TESTS (fresh inputs)\nassert f(2) == 15838\n## END HIDDEN TESTS",
              grade=True, grade_id="f_test", points=1, solution=False),
    ])
    ex = course.make_exercise(master)
    assert ex.cells[0].source == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    assert ex.cells[1].source == "assert f(1) == 7919"
    assert course.leaks(master, ex) == []


@pytest.mark.parametrize("line", ["### begin solution", "### BEGIN  SOLUTION", "# Begin Solution", "### BEGIN HIDDEN TEST",
                                  "### end solution", "## BEGIN-SOLUTION"])
def test_near_miss_markers_are_refused_naming_the_cell(line):
    nb = _notebook([
        nbformat.v4.new_markdown_cell("intro"),
        _cell(f"def f():\n    {line}\n    return 1", grade=False, grade_id="f", solution=True)])
    with pytest.raises(course.MarkerError, match=r"x\.ipynb, cell 1, line 2: .*looks like a marker"):
        course.make_exercise(nb, "x.ipynb")


def test_solution_cell_without_markers_is_stubbed_whole_and_markers_outside_solution_cells_are_refused():
    master = _notebook([_cell("def f():\n    return 42", grade=False, grade_id="f", solution=True)])
    assert course.make_exercise(master).cells[0].source == "# YOUR CODE HERE\nraise NotImplementedError()"
    plain = _notebook([_cell("x = 1\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION")])
    with pytest.raises(course.MarkerError, match="not a solution cell"):
        course.make_exercise(plain)
    hidden = _notebook([_cell("### BEGIN HIDDEN TESTS\nassert 1\n### END HIDDEN TESTS")])
    with pytest.raises(course.MarkerError, match="graded code cells"):
        course.make_exercise(hidden)


def test_leak_check_is_independent_of_the_builder():
    # An exercise written by hand (or by a broken builder) that keeps answer lines is caught, whatever the markers'
    # spelling: the leak check reads markers leniently and compares lines, it does not rebuild the exercise.
    master = _notebook([
        _cell("def f(x):\n    ## begin solution\n    secret = x * 7919\n    return secret\n    ## end solution",
              grade=False, grade_id="f", solution=True),
        _cell("def g():\n    return 'whole cell is the answer'", grade=False, grade_id="g", solution=True),
    ])
    leaked = _notebook([
        _cell("def f(x):\n    secret  =  x * 7919\n    return secret", grade=False, grade_id="f", solution=True),
        _cell("def g():\n    return 'whole cell is the answer'", grade=False, grade_id="g", solution=True),
    ])
    found = course.leaks(master, leaked)
    assert "secret = x * 7919" in found and "return 'whole cell is the answer'" in found


def test_kernelspec_that_jupyterlab_would_rewrite_is_reported(tmp_path):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    assert "marks the notebook modified" in course.notebook_problems(nb, "a.ipynb")[0]
    nb.metadata["kernelspec"]["display_name"] = "Python 3 (ipykernel)"
    assert course.notebook_problems(nb, "a.ipynb") == []
