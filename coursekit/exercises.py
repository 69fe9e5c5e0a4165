"""The course's notebook pipeline: exercises from their masters, leak checks, in-place execution.

    python -m gvlib.course build      # solutions/*.ipynb -> exercises/*.ipynb
    python -m gvlib.course check      # fail when exercises/ is out of date or leaks an answer
    python -m gvlib.course execute NB [NB ...]   # re-execute notebooks and save them in place

Masters follow nbgrader's conventions (see CONTRIBUTING.md): answers between `### BEGIN SOLUTION`
and `### END SOLUTION`, hidden tests between `### BEGIN HIDDEN TESTS` and `### END HIDDEN TESTS`,
points in the cell metadata `nbgrader.points`.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
MARKDOWN_STUB = "YOUR ANSWER HERE"
SETUP_TAG = "setup"

REPO_ROOT = Path(__file__).resolve().parent.parent

__all__ = [
    "MarkerError", "Exercise", "nbgrader_meta", "exercises_of", "make_exercise", "render",
    "build", "check", "leaks", "execute_notebook",
]


class MarkerError(ValueError):
    """A master's solution or hidden-test markers are unbalanced or misplaced."""


@dataclass
class Exercise:
    """One graded test cell of a master and the answer cells it grades."""

    grade_id: str
    points: float
    test_source: str
    answer_ids: list[str]


def nbgrader_meta(cell) -> dict:
    """The cell's `nbgrader` metadata dict (empty when it has none)."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def is_setup(cell) -> bool:
    """True for cells tagged `setup` (imports and helpers the tests rely on)."""
    return SETUP_TAG in cell.get("metadata", {}).get("tags", [])


def exercises_of(master) -> list[Exercise]:
    """The graded exercises of a master notebook, in order: test cell id, points, source, answer ids."""
    out: list[Exercise] = []
    pending: list[str] = []
    seen: set[str] = set()
    for i, cell in enumerate(master.cells):
        meta = nbgrader_meta(cell)
        gid = meta.get("grade_id")
        if gid is not None:
            if gid in seen:
                raise MarkerError(f"cell {i}: grade_id {gid!r} is used twice; each graded or answer cell needs its own")
            seen.add(gid)
        if meta.get("solution") and cell.cell_type == "code":
            pending.append(gid or f"cell-{i}")
        if meta.get("grade") and cell.cell_type == "code":
            if not gid:
                raise MarkerError(f"cell {i}: a graded cell (nbgrader.grade = true) needs a grade_id")
            points = meta.get("points")
            if not isinstance(points, (int, float)) or isinstance(points, bool) or points <= 0:
                raise MarkerError(f"cell {i} ({gid}): nbgrader.points must be a positive number, got {points!r}")
            out.append(Exercise(gid, float(points), cell.source, pending))
            pending = []
    return out


def _replace_blocks(source: str, begin: str, end: str, stub: tuple[str, ...] | None, where: str) -> str:
    """Replace each begin..end block (markers included) by `stub` at the marker's indentation, or drop it."""
    lines = source.split("\n")
    out: list[str] = []
    inside = False
    for n, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped == begin:
            if inside:
                raise MarkerError(f"{where}, line {n}: {begin!r} inside another {begin!r} block")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            if stub:
                out.extend(indent + s for s in stub)
        elif stripped == end:
            if not inside:
                raise MarkerError(f"{where}, line {n}: {end!r} without a {begin!r} before it")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: {begin!r} is never closed by {end!r}")
    return "\n".join(out)


def make_exercise(master, name: str = "notebook"):
    """The student's version of a master: answers stubbed, hidden tests dropped, outputs cleared, metadata kept."""
    nb = copy.deepcopy(master)
    for i, cell in enumerate(nb.cells):
        where = f"{name}, cell {i}"
        if cell.cell_type == "code":
            src = _replace_blocks(cell.source, BEGIN_SOLUTION, END_SOLUTION, CODE_STUB, where)
            src = _replace_blocks(src, BEGIN_HIDDEN, END_HIDDEN, None, where)
            cell.source = src.rstrip("\n")
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
        elif cell.cell_type == "markdown":
            cell.source = _replace_blocks(cell.source, BEGIN_SOLUTION, END_SOLUTION, (MARKDOWN_STUB,), where)
            if BEGIN_HIDDEN in cell.source:
                raise MarkerError(f"{where}: hidden tests belong in code cells")
        cell.metadata.pop("collapsed", None)
        cell.metadata.pop("scrolled", None)
    nb.metadata.pop("widgets", None)
    return nb


def render(nb) -> str:
    """The notebook as the exact text written to disk (nbformat's JSON, trailing newline)."""
    return nbformat.writes(nb) + "\n"


def _pairs(solutions: Path, exercises: Path):
    masters = sorted(solutions.glob("*.ipynb"))
    if not masters:
        raise FileNotFoundError(f"no master notebooks (*.ipynb) in {solutions}")
    return [(m, exercises / m.name) for m in masters]


def build(solutions: Path = REPO_ROOT / "solutions", exercises: Path = REPO_ROOT / "exercises") -> list[Path]:
    """Write exercises/NN.ipynb for every solutions/NN.ipynb; returns the files that changed."""
    exercises.mkdir(parents=True, exist_ok=True)
    changed = []
    for master_path, ex_path in _pairs(solutions, exercises):
        master = nbformat.read(master_path, as_version=4)
        exercises_of(master)  # validates the grading metadata
        text = render(make_exercise(master, master_path.name))
        if not ex_path.exists() or ex_path.read_text(encoding="utf-8") != text:
            tmp = ex_path.with_suffix(".ipynb.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, ex_path)
            changed.append(ex_path)
    return changed


def _block_lines(source: str, begin: str, end: str) -> list[str]:
    lines, inside = [], False
    for line in source.split("\n"):
        s = line.strip()
        if s == begin:
            inside = True
        elif s == end:
            inside = False
        elif inside and s:
            lines.append(s)
    return lines


def leaks(master, exercise) -> list[str]:
    """Lines of the master's answers or hidden tests that appear in the exercise (and nowhere else in the master)."""
    secret, public = [], set()
    for cell in master.cells:
        src = cell.source
        secret += _block_lines(src, BEGIN_SOLUTION, END_SOLUTION)
        secret += _block_lines(src, BEGIN_HIDDEN, END_HIDDEN)
        stripped = _replace_blocks(_replace_blocks(src, BEGIN_SOLUTION, END_SOLUTION, None, "master"),
                                   BEGIN_HIDDEN, END_HIDDEN, None, "master")
        public.update(s.strip() for s in stripped.split("\n") if s.strip())
    ex_lines = {s.strip() for cell in exercise.cells for s in cell.source.split("\n") if s.strip()}
    found = []
    for line in secret:
        if line in public or line in (CODE_STUB + (MARKDOWN_STUB,)):
            continue  # the same text stands in the master's public part: not a leak
        if line in ex_lines and line not in found:
            found.append(line)
    out_text = "".join(str(o) for cell in exercise.cells for o in cell.get("outputs", []))
    if out_text:
        found.append("<exercise has stored outputs>")
    return found


def check(solutions: Path = REPO_ROOT / "solutions", exercises: Path = REPO_ROOT / "exercises") -> list[str]:
    """Problems with exercises/: missing, out of date, without a master, or leaking an answer or hidden test."""
    problems = []
    pairs = _pairs(solutions, exercises)
    masters = {m.name for m, _ in pairs}
    for m, e in pairs:
        master = nbformat.read(m, as_version=4)
        if not e.exists():
            problems.append(f"{e}: missing (run `make exercises`)")
            continue
        if e.read_text(encoding="utf-8") != render(make_exercise(master, m.name)):
            problems.append(f"{e}: out of date with {m} (run `make exercises`)")
        for line in leaks(master, nbformat.read(e, as_version=4)):
            problems.append(f"{e}: leaks text of an answer or hidden test: {line[:80]!r}")
    for e in sorted(exercises.glob("*.ipynb")):
        if e.name not in masters:
            problems.append(f"{e}: has no master in {solutions}")
    return problems


def execute_notebook(path: Path, timeout: int = 600) -> float:
    """Execute a notebook top to bottom in a fresh kernel (cwd = its folder) and save it in place; returns seconds."""
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell; the file is then left untouched
    seconds = time.perf_counter() - start
    nb.metadata.pop("widgets", None)  # widget state is large and goes stale; the static figures stay
    tmp = path.with_suffix(".ipynb.tmp")
    tmp.write_text(render(nb), encoding="utf-8")
    os.replace(tmp, path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gvlib.course", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("build", "check"):
        p = sub.add_parser(name)
        p.add_argument("--solutions", type=Path, default=REPO_ROOT / "solutions")
        p.add_argument("--exercises", type=Path, default=REPO_ROOT / "exercises")
    p = sub.add_parser("execute")
    p.add_argument("notebooks", nargs="+", type=Path)
    p.add_argument("--timeout", type=int, default=600, help="seconds a cell may run")
    args = parser.parse_args(argv)

    try:
        if args.cmd == "build":
            changed = build(args.solutions, args.exercises)
            print(f"exercises: {len(changed)} written" + "".join(f"\n  {c}" for c in changed))
            return 0
        if args.cmd == "check":
            problems = check(args.solutions, args.exercises)
            if problems:
                print("exercises/ check failed:\n  " + "\n  ".join(problems), file=sys.stderr)
                return 1
            print(f"exercises: {len(_pairs(args.solutions, args.exercises))} up to date, no answer or hidden test leaked")
            return 0
        failed = 0
        for nb in args.notebooks:
            if not nb.exists():
                print(f"{nb}: no such notebook", file=sys.stderr)
                failed += 1
                continue
            try:
                print(f"{nb}: {execute_notebook(nb, args.timeout):.1f} s", flush=True)
            except Exception as exc:  # report and go on: one broken notebook must not hide the others
                failed += 1
                first = str(exc).strip().splitlines()
                print(f"{nb}: FAILED, left unchanged: {type(exc).__name__}: "
                      f"{first[-1] if first else ''}", file=sys.stderr)
        return 1 if failed else 0
    except (MarkerError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
