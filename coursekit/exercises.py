"""Exercises from their masters: stub the answers, drop the hidden tests, check that nothing leaked.

    coursekit build [--solutions solutions] [--exercises exercises]
    coursekit check [--solutions solutions] [--exercises exercises]

Masters follow nbgrader's conventions (CONTRIBUTING.md). Markers are matched as nbgrader matches them:
``BEGIN SOLUTION`` / ``END SOLUTION`` and ``BEGIN HIDDEN TESTS`` / ``END HIDDEN TESTS`` anywhere in a line
(``### BEGIN SOLUTION``, ``# BEGIN SOLUTION``, ``### BEGIN SOLUTION  # note`` all count). A line that looks
like a marker but is not one for nbgrader (``### begin solution``, ``BEGIN  SOLUTION``) is refused with an
error naming the cell, because nbgrader would leave the answer in the student's copy.

The leak check does not reuse the builder's parser: it takes every line of the master that is not in
the master's public text (a line-set difference between the master and a master with every solution
and hidden-test cell region removed by a case-insensitive, whitespace-tolerant reading), normalises
whitespace, and looks for each in the exercise.
"""
from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

BEGIN_SOLUTION = "BEGIN SOLUTION"
END_SOLUTION = "END SOLUTION"
BEGIN_HIDDEN = "BEGIN HIDDEN TESTS"
END_HIDDEN = "END HIDDEN TESTS"
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
MARKDOWN_STUB = "YOUR ANSWER HERE"
SETUP_TAG = "setup"
KERNEL_DISPLAY_NAME = "Python 3 (ipykernel)"

__all__ = [
    "MarkerError", "Exercise", "nbgrader_meta", "is_setup", "exercises_of", "make_exercise", "render",
    "build", "check", "leaks", "notebook_problems", "BEGIN_SOLUTION", "END_SOLUTION", "BEGIN_HIDDEN",
    "END_HIDDEN", "CODE_STUB", "MARKDOWN_STUB", "KERNEL_DISPLAY_NAME",
]

# Anything a reader would take for a marker: case-insensitive, any run of spaces, "TEST" or "TESTS".
_LOOKS_LIKE_MARKER = re.compile(r"(begin|end)[\s_-]*(solution|hidden[\s_-]*tests?)", re.IGNORECASE)


class MarkerError(ValueError):
    """A master's solution or hidden-test markers are unbalanced, misplaced or misspelt."""


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
    """The graded exercises of a master notebook, in order: test cell id, points, source, answer ids.

    A graded code cell (nbgrader.grade) needs a grade_id and positive points; a written answer (a markdown
    cell with grade and solution, as nbgrader requires) may carry 0 points and is not an exercise here.
    """
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
        if meta.get("grade") and cell.cell_type == "code" and not meta.get("solution"):
            if not gid:
                raise MarkerError(f"cell {i}: a graded cell (nbgrader.grade = true) needs a grade_id")
            points = meta.get("points")
            if not isinstance(points, (int, float)) or isinstance(points, bool) or points <= 0:
                raise MarkerError(f"cell {i} ({gid}): nbgrader.points must be a positive number, got {points!r}")
            out.append(Exercise(gid, float(points), cell.source, pending))
            pending = []
    return out


def _check_spelling(line: str, where: str, n: int) -> None:
    """Refuse a line that looks like a marker but that nbgrader would not read as one."""
    if any(m in line for m in (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN)):
        return
    match = _LOOKS_LIKE_MARKER.search(line)
    if match:
        raise MarkerError(f"{where}, line {n}: {line.strip()!r} looks like a marker but nbgrader would not read it "
                          f"as one (it matches {BEGIN_SOLUTION!r}, {END_SOLUTION!r}, {BEGIN_HIDDEN!r} or "
                          f"{END_HIDDEN!r} exactly, in capitals, anywhere in a line); fix the spelling")


def _replace_region(source: str, begin: str, end: str, stub, where: str) -> tuple[str, bool]:
    """nbgrader's rule: a line containing `begin` opens a region, one containing `end` closes it; the region
    (marker lines included) becomes `stub` at the opening line's indentation, or nothing. -> (source, replaced)."""
    lines = source.split("\n")
    out: list[str] = []
    inside, replaced = False, False
    for n, line in enumerate(lines, 1):
        _check_spelling(line, where, n)
        if begin in line:
            if inside:
                raise MarkerError(f"{where}, line {n}: {begin!r} inside another {begin!r} region")
            inside, replaced = True, True
            indent = re.match(r"\s*", line).group(0)
            if stub:
                out.extend(indent + s for s in stub)
        elif end in line:
            if not inside:
                raise MarkerError(f"{where}, line {n}: {end!r} without a {begin!r} before it")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: {begin!r} is never closed by {end!r}")
    return "\n".join(out), replaced


def make_exercise(master, name: str = "notebook"):
    """The student's version of a master: answers stubbed, hidden tests dropped, outputs cleared, metadata kept.

    As nbgrader does: a solution cell without markers is replaced whole by the stub; markers in a cell that
    is not a solution cell (or hidden tests outside a graded cell) are an error.
    """
    nb = copy.deepcopy(master)
    for i, cell in enumerate(nb.cells):
        where = f"{name}, cell {i}"
        meta = nbgrader_meta(cell)
        solution = bool(meta.get("solution"))
        stub = CODE_STUB if cell.cell_type == "code" else (MARKDOWN_STUB,)
        if cell.cell_type in ("code", "markdown"):
            src, replaced = _replace_region(cell.source, BEGIN_SOLUTION, END_SOLUTION, stub, where)
            if replaced and not solution:
                raise MarkerError(f"{where}: a solution region in a cell that is not a solution cell "
                                  "(nbgrader.solution must be true)")
            if solution and not replaced:
                src = "\n".join(stub)
            src, hidden = _replace_region(src, BEGIN_HIDDEN, END_HIDDEN, None, where)
            if hidden and not (cell.cell_type == "code" and meta.get("grade")):
                raise MarkerError(f"{where}: hidden tests belong in graded code cells (nbgrader.grade = true)")
            cell.source = src.rstrip("\n") if cell.cell_type == "code" else src
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
        cell.metadata.pop("collapsed", None)
        cell.metadata.pop("scrolled", None)
    nb.metadata.pop("widgets", None)
    return nb


def render(nb) -> str:
    """The notebook as the exact text written to disk (nbformat's JSON, trailing newline)."""
    return nbformat.writes(nb) + "\n"


def _pairs(solutions: Path, exercises: Path):
    masters = sorted(Path(solutions).glob("*.ipynb"))
    if not masters:
        raise FileNotFoundError(f"no master notebooks (*.ipynb) in {solutions}")
    return [(m, Path(exercises) / m.name) for m in masters]


def build(solutions: Path = Path("solutions"), exercises: Path = Path("exercises")) -> list[Path]:
    """Write exercises/NN.ipynb for every solutions/NN.ipynb; returns the files that changed."""
    exercises = Path(exercises)
    exercises.mkdir(parents=True, exist_ok=True)
    changed = []
    for master_path, ex_path in _pairs(solutions, exercises):
        master = nbformat.read(master_path, as_version=4)
        exercises_of(master)  # validates the grading metadata
        text = render(make_exercise(master, master_path.name))
        if not ex_path.exists() or ex_path.read_text(encoding="utf-8") != text:
            tmp = ex_path.with_name(f".{ex_path.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, ex_path)
            changed.append(ex_path)
    return changed


# ------------------------------------------------------------------------------------------- leak check
def _normalise(line: str) -> str:
    return " ".join(line.split())


def _public_lines(source: str) -> list[str]:
    """The source without anything between marker-like lines (case-insensitive, lenient), markers dropped."""
    out, inside = [], False
    for line in source.split("\n"):
        m = _LOOKS_LIKE_MARKER.search(line)
        if m:
            inside = m.group(1).lower() == "begin"
            continue
        if not inside:
            out.append(line)
    return out


def leaks(master, exercise) -> list[str]:
    """Lines of the master's answers or hidden tests that appear in the exercise, and outputs stored in it.

    Secret lines: every line of a solution cell that has no markers, and every line inside a marker-like
    region of any cell, read leniently (see the module docstring), minus lines that also stand in the
    master's public text (a shared `return out` is not a leak). Each is looked for, whitespace-normalised,
    in every cell of the exercise.
    """
    secret, public = [], set()
    for cell in master.cells:
        lines = cell.source.split("\n")
        if nbgrader_meta(cell).get("solution") and not any(_LOOKS_LIKE_MARKER.search(ln) for ln in lines):
            secret += lines
            continue
        kept = _public_lines(cell.source)
        public.update(_normalise(ln) for ln in kept)
        kept_set = set(kept)
        secret += [ln for ln in lines if ln not in kept_set and not _LOOKS_LIKE_MARKER.search(ln)]
    stubs = {_normalise(s) for s in CODE_STUB + (MARKDOWN_STUB,)}
    ex_lines = {_normalise(ln) for cell in exercise.cells for ln in cell.source.split("\n")}
    found = []
    for line in secret:
        norm = _normalise(line)
        if not norm or norm in public or norm in stubs:
            continue
        if norm in ex_lines and norm not in found:
            found.append(norm)
    if any(cell.get("outputs") for cell in exercise.cells):
        found.append("<exercise has stored outputs>")
    return found


def notebook_problems(nb, path) -> list[str]:
    """Problems any course notebook must not have: a kernel display name JupyterLab would rewrite on open."""
    spec = nb.metadata.get("kernelspec", {})
    if spec.get("display_name") != KERNEL_DISPLAY_NAME or spec.get("name") != "python3":
        return [f"{path}: kernelspec is {spec.get('name')!r} / {spec.get('display_name')!r}, expected 'python3' / "
                f"{KERNEL_DISPLAY_NAME!r} (JupyterLab rewrites it and marks the notebook modified on open)"]
    return []


def check(solutions: Path = Path("solutions"), exercises: Path = Path("exercises"),
          chapters: Path | None = None) -> list[str]:
    """Problems with exercises/ (missing, out of date, orphaned, leaking) and with every notebook's kernelspec."""
    problems = []
    pairs = _pairs(solutions, exercises)
    masters = {m.name for m, _ in pairs}
    for m, e in pairs:
        master = nbformat.read(m, as_version=4)
        problems += notebook_problems(master, m)
        if not e.exists():
            problems.append(f"{e}: missing (run `make exercises`)")
            continue
        if e.read_text(encoding="utf-8") != render(make_exercise(master, m.name)):
            problems.append(f"{e}: out of date with {m} (run `make exercises`)")
        for line in leaks(master, nbformat.read(e, as_version=4)):
            problems.append(f"{e}: leaks text of an answer or hidden test: {line[:80]!r}")
    for e in sorted(Path(exercises).glob("*.ipynb")):
        if e.name not in masters:
            problems.append(f"{e}: has no master in {solutions}")
    if chapters is not None:
        for c in sorted(Path(chapters).glob("*.ipynb")):
            problems += notebook_problems(nbformat.read(c, as_version=4), c)
    return problems
