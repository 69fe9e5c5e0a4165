"""The autograder: full marks for the master, zero for the blank exercise, and misbehaving submissions
(wrong answer, exception, infinite loop, output flood, redefined test helper, dead student process) lose only the
points of their own exercise. The attacks of a student trying to game it are in test_attacks.py."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from coursekit import exercises as course
from coursekit.grade import GradeError, grade as _grade
from coursekit.sandbox import bwrap_problem

REPO = Path(__file__).resolve().parent.parent
# bubblewrap where it works (CI installs it), else the documented fallback: these tests are about grading
# semantics; test_attacks.py needs the sandbox itself.
SANDBOX = "auto" if bwrap_problem() is None else "none"


def grade(*args, **kwargs):
    return _grade(*args, sandbox=SANDBOX, **kwargs)


def _answer(gid, source):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": False, "grade_id": gid, "locked": False, "schema_version": 3,
                                 "solution": True, "task": False}
    return cell


def _test(gid, points, source):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": gid, "locked": True, "points": points,
                                 "schema_version": 3, "solution": False, "task": False}
    return cell


def _master():
    setup = nbformat.v4.new_code_cell("import math\n\ndef check_close(a, b):\n    assert abs(a - b) < 1e-9, (a, b)")
    setup.metadata["tags"] = ["setup"]
    return nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# A tiny master"),
        setup,
        _answer("square", "def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION"),
        _test("square_test", 2, "check_close(square(3), 9)\n### BEGIN HIDDEN TESTS\ncheck_close(square(-1.5), 2.25)\n### END HIDDEN TESTS"),
        _answer("hyp", "def hyp(a, b):\n    ### BEGIN SOLUTION\n    return math.sqrt(a * a + b * b)\n    ### END SOLUTION"),
        _test("hyp_test", 3, "check_close(hyp(3, 4), 5)\n### BEGIN HIDDEN TESTS\ncheck_close(hyp(5, 12), 13)\n### END HIDDEN TESTS"),
        _answer("mean", "def mean(xs):\n    ### BEGIN SOLUTION\n    return sum(xs) / len(xs)\n    ### END SOLUTION"),
        _test("mean_test", 1, "check_close(mean([1, 2, 3]), 2)\n### BEGIN HIDDEN TESTS\ncheck_close(mean([0.5]), 0.5)\n### END HIDDEN TESTS"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


@pytest.fixture()
def course_dirs(tmp_path):
    solutions, exercises = tmp_path / "solutions", tmp_path / "exercises"
    solutions.mkdir()
    nbformat.write(_master(), solutions / "99_tiny.ipynb")
    course.build(solutions, exercises)
    return solutions, exercises


def _submission(tmp_path, exercises, replace: dict[str, str], extra: list[tuple[int, str]] = ()):
    """The generated exercise with some answer cells' sources replaced (by grade_id) and extra cells inserted."""
    nb = nbformat.read(exercises / "99_tiny.ipynb", as_version=4)
    for cell in nb.cells:
        gid = course.nbgrader_meta(cell).get("grade_id")
        if gid in replace:
            cell.source = replace[gid]
    for index, source in extra:
        nb.cells.insert(index, nbformat.v4.new_code_cell(source))
    folder = tmp_path / "student"
    folder.mkdir(exist_ok=True)
    path = folder / "99_tiny.ipynb"
    nbformat.write(nb, path)
    return path


GOOD = {"square": "def square(x):\n    return x * x",
        "hyp": "def hyp(a, b):\n    return math.hypot(a, b)",
        "mean": "def mean(xs):\n    return sum(xs) / len(xs)"}


def _scores(results):
    return {r.exercise: r.score for r in results}


def test_master_scores_full_marks_and_exercise_zero(course_dirs):
    solutions, exercises = course_dirs
    full = grade(solutions / "99_tiny.ipynb", solutions=solutions, timeout=20)
    assert _scores(full) == {"square_test": 2, "hyp_test": 3, "mean_test": 1}
    blank = grade(exercises / "99_tiny.ipynb", solutions=solutions, timeout=20)
    assert _scores(blank) == {"square_test": 0, "hyp_test": 0, "mean_test": 0}
    assert all("NotImplementedError" in r.error for r in blank)


def test_correct_alternative_answers_pass(tmp_path, course_dirs):
    solutions, exercises = course_dirs
    sub = _submission(tmp_path, exercises, GOOD)
    assert _scores(grade(sub, solutions=solutions, timeout=20)) == {"square_test": 2, "hyp_test": 3, "mean_test": 1}


def test_one_wrong_answer_loses_exactly_its_points(tmp_path, course_dirs):
    solutions, exercises = course_dirs
    # right on the visible test (3, 4 -> 5), wrong on the hidden one (5, 12 -> 13): only hidden tests catch it
    wrong = dict(GOOD, hyp="def hyp(a, b):\n    return 5.0")
    results = grade(_submission(tmp_path, exercises, wrong), solutions=solutions, timeout=20)
    assert _scores(results) == {"square_test": 2, "hyp_test": 0, "mean_test": 1}
    assert "AssertionError" in next(r.error for r in results if r.exercise == "hyp_test")


def test_infinite_loop_is_graded_within_its_timeout(tmp_path, course_dirs):
    solutions, exercises = course_dirs
    # the loop runs before `square` is defined: the interrupt stops it, square stays undefined
    looping = dict(GOOD, square="while True:\n    pass\ndef square(x):\n    return x * x")
    start = time.monotonic()
    results = grade(_submission(tmp_path, exercises, looping), solutions=solutions, timeout=3)
    assert time.monotonic() - start < 40
    assert _scores(results) == {"square_test": 0, "hyp_test": 3, "mean_test": 1}
    assert "NameError" in results[0].error and "timed out" in results[0].error


def test_loop_that_ignores_interrupts_costs_a_restart_only(tmp_path, course_dirs):
    solutions, exercises = course_dirs
    stubborn = dict(GOOD, hyp="import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass")
    results = grade(_submission(tmp_path, exercises, stubborn), solutions=solutions, timeout=3)
    assert _scores(results) == {"square_test": 2, "hyp_test": 0, "mean_test": 1}


def test_hanging_test_call_is_stopped(tmp_path, course_dirs):
    solutions, exercises = course_dirs
    hanging = dict(GOOD, mean="import time\ndef mean(xs):\n    time.sleep(3600)")
    results = grade(_submission(tmp_path, exercises, hanging), solutions=solutions, timeout=3)
    assert _scores(results) == {"square_test": 2, "hyp_test": 3, "mean_test": 0}
    assert "did not answer in time" in results[2].error or "timed out" in results[2].error


def test_raising_cells_and_output_flood(tmp_path, course_dirs):
    solutions, exercises = course_dirs
    # as under nbgrader, an answer cell that raises costs nothing by itself: the test decides. square is defined
    # before the raise (right); hyp's cell raises before defining hyp (0, and the error says why); mean prints
    # 100 MB, which goes nowhere (right).
    bad = dict(GOOD,
               square="def square(x):\n    return x * x\nraise ValueError('oops')",
               hyp="raise ValueError('not yet')\ndef hyp(a, b):\n    return math.hypot(a, b)",
               mean="def mean(xs):\n    return sum(xs) / len(xs)\nfor _ in range(10**6):\n    print('x' * 100)")
    results = grade(_submission(tmp_path, exercises, bad), solutions=solutions, timeout=30)
    assert _scores(results) == {"square_test": 2, "hyp_test": 0, "mean_test": 1}
    errors = {r.exercise: r.error for r in results}
    assert "NameError" in errors["hyp_test"] and "ValueError: not yet" in errors["hyp_test"]


def test_redefined_test_helper_cannot_fool_the_tests(tmp_path, course_dirs):
    solutions, exercises = course_dirs
    cheat = dict(GOOD, square="def square(x):\n    return 0\n\ndef check_close(a, b):\n    pass")
    results = grade(_submission(tmp_path, exercises, cheat), solutions=solutions, timeout=20)
    assert _scores(results) == {"square_test": 0, "hyp_test": 3, "mean_test": 1}


def test_dead_kernel_and_deleted_test_cell(tmp_path, course_dirs):
    solutions, exercises = course_dirs
    sub = _submission(tmp_path, exercises, GOOD, extra=[(3, "import os\nos._exit(1)")])
    nb = nbformat.read(sub, as_version=4)
    nb.cells = [c for c in nb.cells if course.nbgrader_meta(c).get("grade_id") != "mean_test"]
    nbformat.write(nb, sub)
    results = grade(sub, solutions=solutions, timeout=20)
    # the student's process died after `square` was defined; it is restarted and the good cells replayed
    assert _scores(results) == {"square_test": 2, "hyp_test": 3, "mean_test": 1}


def test_command_line_json_and_bad_arguments(tmp_path, course_dirs):
    solutions, _ = course_dirs
    out = tmp_path / "result.json"
    flags = [] if SANDBOX == "auto" else ["--no-sandbox"]
    run = subprocess.run([sys.executable, "-m", "gvlib.grade", str(solutions / "99_tiny.ipynb"),
                          "--solutions", str(solutions), "--json", str(out), *flags], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "total" in run.stdout and "6/6" in run.stdout
    payload = json.loads(out.read_text())
    assert payload["score"] == payload["max_score"] == 6 and len(payload["exercises"]) == 3
    assert payload["complete"] is True and payload["sandbox"] in ("bubblewrap", "none")
    folder = tmp_path / "a_folder.json"
    folder.mkdir()
    refused = subprocess.run([sys.executable, "-m", "coursekit", "grade", str(solutions / "99_tiny.ipynb"),
                              "--json", str(folder), *flags], capture_output=True, text=True)
    assert refused.returncode == 2 and "is a folder" in refused.stderr

    missing = subprocess.run([sys.executable, "-m", "gvlib.grade", str(tmp_path / "nope.ipynb")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    garbage = tmp_path / "99_tiny.ipynb"
    garbage.write_text("this is not json")
    bad = subprocess.run([sys.executable, "-m", "gvlib.grade", str(garbage), "--solutions", str(solutions)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "not a readable notebook" in bad.stderr
    orphan = tmp_path / "orphan.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), orphan)
    with pytest.raises(GradeError, match="no master for orphan.ipynb"):
        grade(orphan, solutions=solutions)


# The course's masters (full marks, blank exercise 0, one answer exactly its points, and agreement with real
# nbgrader) are graded in test_nbgrader.py.


# ------------------------------------------------------------------------------------------------ the wire format
def test_wire_round_trips_plain_data_only():
    import numpy as np
    import torch

    from coursekit import wire

    value = {"a": [1, -2**70, 2.5, float("inf"), complex(1, -2), "é", b"\x00", None, True, (1,), {3}, frozenset()],
             7: torch.arange(6, dtype=torch.float64).reshape(2, 3), "b": torch.tensor([True, False]),
             "h": torch.ones(2, dtype=torch.bfloat16), "e": torch.zeros(0, 3), "n": np.arange(4, dtype=np.int32),
             "s": np.float32(1.5), "g": torch.ones(2, requires_grad=True)}
    back = wire.decode(wire.encode(value))
    assert back["a"][:3] == [1, -2**70, 2.5] and back["a"][4] == complex(1, -2) and back["a"][9] == (1,)
    assert torch.equal(back[7], value[7]) and type(back[7]) is torch.Tensor and back["b"].dtype == torch.bool
    assert back["h"].dtype == torch.bfloat16 and back["e"].shape == (0, 3) and back["g"].requires_grad
    assert back["n"].dtype == np.int32 and type(back["s"]) is np.float32

    class Sneaky(torch.Tensor):
        def __eq__(self, other):
            return True
    assert type(wire.decode(wire.encode(torch.zeros(2).as_subclass(Sneaky)))) is torch.Tensor
    for bad in (lambda: 0, object(), np.array([object()]), torch, type, iter([1])):
        with pytest.raises(wire.NotData):
            wire.encode(bad)
    with pytest.raises(wire.WireError):
        wire.encode("x" * 2000, limit=1000)


def test_wire_decoder_refuses_malformed_bytes():
    import struct

    from coursekit import wire

    good = wire.encode([1, 2.0, "three"])
    for bad in (good[:-1], good + b"N", b"Q", b"A" + struct.pack("<I", 2) + b"|O" + b"\x01" + struct.pack("<Q", 1),
                b"i" + struct.pack("<I", 3) + b"1e5", b"l" + struct.pack("<I", 10 ** 9),
                b"X" + struct.pack("<I", 5) + b"int64" + b"\x01" + struct.pack("<Q", 4) + b"\x00" + struct.pack("<Q", 8),
                b"d" + struct.pack("<I", 1) + b"l" + struct.pack("<I", 0) + b"N"):
        with pytest.raises(wire.WireError):
            wire.decode(bad)
    nested = b"l\x01\x00\x00\x00" * 100 + b"N"
    with pytest.raises(wire.WireError):
        wire.decode(nested)
