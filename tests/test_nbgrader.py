"""Every master through real nbgrader and through coursekit grade: the same scores, cell by cell.

For each master in solutions/: `nbgrader generate_assignment` must accept it as committed, and its release
version must equal our exercises/ notebook cell by cell; then three submissions, graded by `nbgrader
autograde` and by `coursekit grade` (sandboxed): the master itself (full marks), the blank exercise (0), and
the exercise with only its first answer filled in from the master (exactly that exercise's points).

nbgrader lives in build/nbgrader-venv (scripts/nbgrader-env.sh; `make test-grader` creates it), a virtual
environment of its own that sees the course's packages; its kernel is that environment's python.
Run by `make test-grader` (COURSEKIT_GRADER_SUITE=1).
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from coursekit import exercises as course
from coursekit.grade import grade_report
from coursekit.sandbox import bwrap_problem

REPO = Path(__file__).resolve().parent.parent
NBG_PY = Path(os.environ.get("COURSEKIT_NBGRADER_PYTHON", REPO / "build" / "nbgrader-venv" / "bin" / "python"))
MASTERS = sorted((REPO / "solutions").glob("*.ipynb"))
ASSIGNMENT = "ps"
pytestmark = [
    pytest.mark.skipif(os.environ.get("COURSEKIT_GRADER_SUITE") != "1",
                       reason="the nbgrader round trip runs under `make test-grader`"),
    pytest.mark.skipif(not NBG_PY.exists() and os.environ.get("CI") != "true",
                       reason=f"no nbgrader environment at {NBG_PY} (sh scripts/nbgrader-env.sh)"),
]

GRADEBOOK = r"""
import json, sys
from nbgrader.api import Gradebook
root, assignment, students, notebooks = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4].split(",")
out = {}
with Gradebook("sqlite:///" + root + "/gradebook.db") as gb:
    for student in students:
        for nb in notebooks:
            sub = gb.find_submission_notebook(nb, assignment, student)
            out[student + "/" + nb] = {g.name: [g.score, g.max_score] for g in sub.grades}
print(json.dumps(out))
"""


def _one_answer(master, release):
    """The release notebook with the first exercise's answer cells taken from the master."""
    first = course.exercises_of(master)[0]
    by_id = {course.nbgrader_meta(c).get("grade_id"): c for c in master.cells}
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        gid = course.nbgrader_meta(cell).get("grade_id")
        if gid in first.answer_ids:
            cell.source = by_id[gid].source
    return nb, first


def _nbgrader(root: Path, *args, timeout=900, wait=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "JUPYTER"))}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", GVLIB_QUIET="1", MPLBACKEND="Agg",
               PATH=f"{NBG_PY.parent}:{env.get('PATH', '')}", JUPYTER_CONFIG_DIR=str(root / ".jupyter"),
               JUPYTER_DATA_DIR=str(root / ".jupyter-data"), IPYTHONDIR=str(root / ".ipython"))
    argv = [str(NBG_PY), "-m", "nbgrader", *args]
    if not wait:  # its log goes to a file: a pipe nobody reads would fill and block it
        log = open(root / f"nbgrader-{args[0]}.log", "w")
        return subprocess.Popen(argv, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    return subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    assert MASTERS, "no masters in solutions/"
    root = tmp_path_factory.mktemp("nbgrader")
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
        "c.CourseDirectory.course_id = 'course'\n"
        "c.ExecutePreprocessor.timeout = 300\n"
        "c.Execute.timeout = 300\n")
    src = root / "source" / ASSIGNMENT
    src.mkdir(parents=True)
    for m in MASTERS:
        (src / m.name).write_bytes(m.read_bytes())
    t0 = time.monotonic()
    gen = _nbgrader(root, "generate_assignment", ASSIGNMENT, "--force")
    rejected = {m.name: gen.stderr for m in MASTERS if not (root / "release" / ASSIGNMENT / m.name).exists()}
    kinds = {}
    for m in MASTERS:
        if m.name in rejected:
            continue
        master = nbformat.read(m, as_version=4)
        release = nbformat.read(root / "release" / ASSIGNMENT / m.name, as_version=4)
        one, first = _one_answer(master, release)
        for student, nb in (("full", master), ("blank", release), ("one", one)):
            d = root / "submitted" / student / ASSIGNMENT
            d.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, d / m.name)
        kinds[m.name] = first
    # nbgrader autograde (one process, one notebook at a time) while coursekit grades the same submissions
    auto = _nbgrader(root, "autograde", ASSIGNMENT, "--force", wait=False)
    sandbox = "auto" if bwrap_problem() is None else "none"
    jobs = [(student, m) for m in MASTERS if m.name not in rejected for student in ("full", "blank", "one")]

    def one_grade(job):
        student, m = job
        sub = root / "submitted" / student / ASSIGNMENT / m.name
        t = time.monotonic()
        report = grade_report(sub, master_path=m, timeout=120, sandbox=sandbox, budget=600)
        return (student, m.name), (report, time.monotonic() - t)

    t1 = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as pool:
        ours = dict(pool.map(one_grade, jobs))
    ck_seconds = time.monotonic() - t1
    auto.wait(timeout=1800)
    auto_err = (root / "nbgrader-autograde.log").read_text()
    nbgrader_seconds = time.monotonic() - t0
    names = [m.stem for m in MASTERS if m.name not in rejected]
    book = {}
    if names:
        read = subprocess.run([str(NBG_PY), "-c", GRADEBOOK, str(root), ASSIGNMENT, "full,blank,one", ",".join(names)],
                              capture_output=True, text=True, timeout=300)
        assert read.returncode == 0, (read.stderr[-3000:], auto_err[-3000:])
        book = json.loads(read.stdout)
    table = []
    for m in MASTERS:
        for student in ("full", "blank", "one"):
            theirs = book.get(f"{student}/{m.stem}", {})
            mine, secs = ours.get((student, m.name), (None, 0.0))
            table.append((m.name, student, theirs, mine, secs))
    if os.environ.get("COURSEKIT_NBGRADER_TABLE"):
        lines = ["| master | submission | nbgrader | coursekit | agree | coursekit s |", "| --- | --- | --- | --- | --- | --- |"]
        for name, student, theirs, mine, secs in table:
            if mine is None:
                lines.append(f"| {name} | {student} | rejected | - | - | - |")
                continue
            a = sum(s or 0 for s, mx in theirs.values())
            b = sum(r.score for r in mine.results)
            agree = all((theirs.get(r.exercise, [None])[0] or 0) == r.score for r in mine.results)
            lines.append(f"| {name} | {student} | {a:g} | {b:g} | {'yes' if agree else 'NO'} | {secs:.1f} |")
        lines.append(f"\nnbgrader generate_assignment + autograde: {nbgrader_seconds:.0f} s; coursekit grade "
                     f"(alongside): {ck_seconds:.0f} s")
        Path(os.environ["COURSEKIT_NBGRADER_TABLE"]).write_text("\n".join(lines) + "\n")
    return {"rejected": rejected, "book": book, "ours": ours, "kinds": kinds, "root": root, "generate": gen}


@pytest.mark.parametrize("master", MASTERS, ids=[m.stem for m in MASTERS])
def test_nbgrader_accepts_the_master_and_releases_our_exercise(round_trip, master):
    assert master.name not in round_trip["rejected"], \
        f"nbgrader generate_assignment rejected {master.name}: {round_trip['rejected'][master.name][-1500:]}"
    release = nbformat.read(round_trip["root"] / "release" / ASSIGNMENT / master.name, as_version=4)
    ours = nbformat.read(REPO / "exercises" / master.name, as_version=4)
    theirs_src = [(c.cell_type, c.source.rstrip()) for c in release.cells]
    ours_src = [(c.cell_type, c.source.rstrip()) for c in ours.cells]
    assert theirs_src == ours_src, f"exercises/{master.name} differs from nbgrader's release version"


@pytest.mark.parametrize("master", MASTERS, ids=[m.stem for m in MASTERS])
@pytest.mark.parametrize("student", ["full", "blank", "one"])
def test_nbgrader_and_coursekit_agree(round_trip, master, student):
    if master.name in round_trip["rejected"]:
        pytest.fail(f"nbgrader rejected {master.name}")
    exercises = course.exercises_of(nbformat.read(master, as_version=4))
    first = round_trip["kinds"][master.name]
    want = {ex.grade_id: (ex.points if student == "full" or (student == "one" and ex.grade_id == first.grade_id)
                          else 0.0) for ex in exercises}
    theirs = {k: v[0] or 0.0 for k, v in round_trip["book"][f"{student}/{master.stem}"].items() if k in want}
    report, _ = round_trip["ours"][(student, master.name)]
    mine = {r.exercise: r.score for r in report.results}
    errors = {r.exercise: r.error for r in report.results if r.error}
    assert theirs == want, f"nbgrader: {theirs}, expected {want}"
    assert mine == want, f"coursekit grade: {mine}, expected {want}; errors: {errors}"
