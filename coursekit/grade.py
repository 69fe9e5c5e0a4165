"""Autograder: grade a student's notebook against its master's hidden tests, in a sandbox the student cannot game.

    coursekit grade exercises/03_closed_form_kl.ipynb [--json result.json] [--timeout 60] [--budget 900]
    coursekit grade submissions/alice/03_closed_form_kl.ipynb --solutions solutions --no-sandbox
    python -m gvlib.grade ...        # the same command, kept for lecturers' scripts

The master is the notebook of the same name in `--solutions DIR`, else in the `solutions/` folder beside the
notebook's folder (exercises/NN.ipynb -> solutions/NN.ipynb), else in ./solutions (or `--master PATH`).

How it grades. The student's code cells run in order in a sandbox (bubblewrap, see coursekit.sandbox): a fresh
folder holding only a copy of the submission, no access to the masters, the grader or the course's folder, no
network, its own PID namespace, memory, CPU and process limits, killed at the end. The master's test cells,
hidden tests included, run instead in a separate trusted process (coursekit.runner) that never runs the
student's code: each test reads the student's answers as plain data (tensors, arrays, numbers, str, bool,
None, lists/tuples/dicts of these) and calls the student's functions through proxies that run them in the
sandbox and bring back data, so nothing the student's code patches (torch, builtins, IPython, comparison
operators) reaches a verdict. Each test gets a fresh child of the student's process, killed after it.
The student's answer cells that raise cost nothing by themselves (as under nbgrader): their tests decide.
A cell or test that hangs, crashes or floods is stopped and loses only its own exercise's points; the whole
submission has a time budget and a cap on restarts.

Exit status: 0 whenever it graded (whatever the score; the JSON then holds the true score), 1 when grading
could not be done (the sandbox would not start, or the grader itself failed), 2 for bad arguments. The JSON
report is written atomically as a new regular file (a symlink, FIFO or file at that path is replaced, never
followed or opened); it never holds the hidden tests' source, only exception types and the tests' own
assertion messages (the student's exception text as a short first line).
"""
from __future__ import annotations

import argparse
import json
import os
import select
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from . import sandbox as _sandbox
from .exercises import Exercise, exercises_of, is_setup, nbgrader_meta

__all__ = ["grade", "grade_report", "Result", "Report", "GradeError", "find_master", "write_report",
           "format_table", "NO_SANDBOX_WARNING"]

DEFAULT_TIMEOUT = 60.0
DEFAULT_BUDGET = 900.0
DEFAULT_RESTARTS = 3
NO_SANDBOX_WARNING = ("--no-sandbox: the student's code runs as your user, outside any sandbox: it can read every "
                      "file you can (the masters included), reach the network, and kill, trace or write into your "
                      "processes, the grader's included, so a deliberate attack on the grader's processes can change "
                      "or prevent the report. Still in force: tests run in a separate process on data only (patching "
                      "Python, torch or IPython changes no verdict), the time and memory limits, a fresh working copy, "
                      "the allow-listed environment and the final kill. Use it only for notebooks you trust.")


class GradeError(Exception):
    """Bad arguments: the notebook or its master cannot be read, or the report path cannot be written."""


class GradingFailed(Exception):
    """Grading could not be done (the sandbox would not start, the grader's own process failed)."""


@dataclass
class Result:
    """The grade of one exercise."""

    exercise: str
    points: float
    score: float
    passed: bool
    error: str = ""


@dataclass
class Report:
    results: list[Result]
    sandbox: str
    complete: bool = True
    restarts: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def find_master(student: Path, solutions: Path | None = None) -> Path:
    """The master of a student's notebook: <solutions>/<same file name>, by default in ../solutions or ./solutions."""
    student = Path(student)
    candidates = [Path(solutions)] if solutions else [student.resolve().parent.parent / "solutions", Path.cwd() / "solutions"]
    for folder in candidates:
        path = Path(folder) / student.name
        if path.exists():
            return path
    raise GradeError(f"no master for {student.name}: looked for {' and '.join(str(Path(c) / student.name) for c in candidates)}; "
                     "name the notebook as the exercise was named, or pass --master PATH")


def _read(path: Path, what: str):
    if not path.exists():
        raise GradeError(f"{what} {path} does not exist")
    if not path.is_file():
        raise GradeError(f"{what} {path} is not a file")
    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:
        raise GradeError(f"{what} {path} is not a readable notebook (.ipynb JSON): {exc}") from None


def _package_dir() -> Path:
    """Where coursekit itself is installed (hidden from the student's process; put on the trusted one's path)."""
    import coursekit

    return Path(coursekit.__path__[0]).resolve()


def _choose_sandbox(sandbox: str) -> str:
    if sandbox in ("none", "off", False, None):
        return "none"
    problem = _sandbox.bwrap_problem()
    if problem is None:
        return "bwrap"
    raise GradeError(f"cannot sandbox the student's code: {problem}. Install bubblewrap, or pass --no-sandbox "
                     "to grade without a sandbox (it does not protect your files, network or processes)")


def grade_report(student_path: Path, master_path: Path | None = None, timeout: float = DEFAULT_TIMEOUT,
                 solutions: Path | None = None, log=None, *, sandbox: str = "auto",
                 budget: float = DEFAULT_BUDGET, restarts: int = DEFAULT_RESTARTS,
                 limits: _sandbox.Limits | None = None, protect: list[Path] = ()) -> Report:
    """Grade a student's notebook; a Report with one Result per graded exercise of the master, in order.

    sandbox: "auto" (bubblewrap; GradeError when it is not usable), "bwrap", or "none" (see NO_SANDBOX_WARNING).
    protect: more folders the student's process must not see (the report's folder, a submissions folder).
    """
    student_path = Path(student_path)
    student = _read(student_path, "student notebook")
    master_path = Path(master_path) if master_path else find_master(student_path, solutions)
    master = _read(master_path, "master notebook")
    try:
        exercises = exercises_of(master)
    except ValueError as exc:
        raise GradeError(f"master {master_path}: {exc}") from None
    if not exercises:
        raise GradeError(f"master {master_path} has no graded cells (nbgrader.grade = true with points)")
    if timeout <= 0 or budget <= 0:
        raise GradeError("--timeout and --budget must be positive")
    mode = _choose_sandbox(sandbox)
    limits = limits or _sandbox.Limits()
    limits.cpu_seconds = int(max(limits.cpu_seconds, budget + 30))
    here = _package_dir()
    protected = {str(p) for p in (master_path.resolve().parent, master_path.resolve().parent.parent,
                                  student_path.resolve().parent, here, here.parent, Path.cwd(),
                                  *(Path(p).resolve() for p in protect))}
    job = {
        "cells": [{"index": i, "source": c.source, "grade_id": nbgrader_meta(c).get("grade_id")}
                  for i, c in enumerate(student.cells) if c.cell_type == "code" and c.source.strip()],
        "tests": [{"grade_id": ex.grade_id, "source": ex.test_source, "points": ex.points,
                   "answer_ids": ex.answer_ids} for ex in exercises],
        "setup": [c.source for c in master.cells if c.cell_type == "code" and is_setup(c)],
        "submission": str(student_path.resolve()),
        "protected": sorted(protected),
        "extra_ro": [os.environ["GVLIB_DATA"]] if os.environ.get("GVLIB_DATA") else [],
        "sandbox": mode, "limits": asdict(limits), "timeout": timeout, "budget": budget, "restarts": restarts,
        "verbose": log is not None,
    }
    events = _run_trusted(job, budget + 120.0, log)
    verdicts: dict[str, dict] = {}
    for e in events:
        if e.get("event") == "result":
            verdicts.setdefault(e.get("grade_id"), e)
    fatal = [e for e in events if e.get("event") == "fatal"]
    if fatal:
        raise GradingFailed(str(fatal[0].get("error", "the sandbox would not start")))
    done = next((e for e in events if e.get("event") == "done"), None)
    results = []
    for ex in exercises:
        v = verdicts.get(ex.grade_id)
        if v is None:
            results.append(Result(ex.grade_id, ex.points, 0.0, False, "not graded: the grader's process stopped"))
            continue
        ok = v.get("passed") is True
        results.append(Result(ex.grade_id, ex.points, ex.points if ok else 0.0, ok, "" if ok else str(v.get("error", ""))))
    notes = ["sandbox: bubblewrap"] if mode == "bwrap" else [NO_SANDBOX_WARNING]
    return Report(results, "bubblewrap" if mode == "bwrap" else "none", done is not None and len(verdicts) == len(exercises),
                  int(done.get("restarts", 0)) if done else 0, float(done.get("seconds", 0.0)) if done else 0.0, notes)


def grade(student_path: Path, master_path: Path | None = None, timeout: float = DEFAULT_TIMEOUT,
          solutions: Path | None = None, log=None, **kwargs) -> list[Result]:
    """Grade a student's notebook; one Result per graded exercise of the master, in order (see grade_report)."""
    report = grade_report(student_path, master_path, timeout, solutions, log, **kwargs)
    if not report.complete:
        raise GradingFailed("the grader's trusted process stopped before every test had run")
    return report.results


def _run_trusted(job: dict, wall: float, log) -> list[dict]:
    """Run coursekit.runner on `job`; its events, read within `wall` seconds; every process it started is killed."""
    root = str(_package_dir().parent)
    code = (f"import sys; sys.path.insert(0, {root!r}); from coursekit.runner import main; "
            f"sys.path.remove({root!r}); sys.exit(main())")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"), MKL_NUM_THREADS=env.get("MKL_NUM_THREADS", "1"),
               MPLBACKEND="Agg", GVLIB_QUIET="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    events: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="coursekit-grade-") as tmp, \
            tempfile.TemporaryFile() as errfile:
        env.update(IPYTHONDIR=os.path.join(tmp, "ipython"), MPLCONFIGDIR=os.path.join(tmp, "matplotlib"))
        proc = subprocess.Popen([sys.executable, "-I", "-c", code], cwd=tmp, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=errfile, start_new_session=True)
        try:
            proc.stdin.write(json.dumps(job).encode())
            proc.stdin.close()
            deadline = time.monotonic() + wall
            eof = False
            buf = b""
            fd = proc.stdout.fileno()
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                r, _, _ = select.select([fd], [], [], min(left, 1.0))
                if not r:
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    eof = True
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    if event.get("event") == "log":
                        if log:
                            print(event.get("text", ""), file=log, flush=True)
                    elif event.get("event") == "cpu":
                        if log:
                            print(f"CPU seconds: trusted process {event.get('trusted')}, student's processes "
                                  f"{event.get('student')}", file=log, flush=True)
                    else:
                        events.append(event)
                if len(buf) > 1 << 20:
                    break
        finally:
            try:  # the trusted process cleans up after itself; after a timeout it is killed at once
                proc.wait(timeout=15 if eof else 0.01)
            except subprocess.TimeoutExpired:
                pass
            if proc.returncode is None:  # still ours (not reaped): it and everything under it
                _sandbox.kill_tree(proc.pid, include_root=True)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            proc.stdout.close()
        if not any(e.get("event") in ("done", "fatal") for e in events):
            errfile.seek(0)
            tail = errfile.read()[-2000:].decode(errors="replace").strip().splitlines()
            if log and tail:
                print("grader's trusted process: " + tail[-1], file=log, flush=True)
    return events


def format_table(results: list[Result]) -> str:
    """The results as a plain-text table with a total line."""
    w = max([len("exercise")] + [len(r.exercise) for r in results])
    lines = [f"{'exercise':<{w}}  points  passed  error", f"{'-' * w}  ------  ------  -----"]
    for r in results:
        lines.append(f"{r.exercise:<{w}}  {r.score:>2g}/{r.points:<3g}  {'yes' if r.passed else 'no':<6}  {r.error}")
    got, total = sum(r.score for r in results), sum(r.points for r in results)
    lines.append(f"{'total':<{w}}  {got:g}/{total:g}  ({100 * got / total:.0f} %)")
    return "\n".join(lines)


def check_report_path(path: Path) -> None:
    """GradeError unless a report can be written at `path`: its folder exists and it is not a folder itself."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise GradeError(f"--json {path}: folder {parent} does not exist")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise GradeError(f"--json {path} is a folder; give a file name")


def write_report(path: Path, payload: dict) -> None:
    """Write `payload` as JSON at `path` atomically: a new regular file renamed over whatever is there.

    The rename replaces a symlink, FIFO or file at `path` itself (never following or opening it); readers see
    the old entry or the whole new file."""
    path = Path(path)
    check_report_path(path)
    parent = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(payload, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="coursekit grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", type=Path, help="the student's notebook (.ipynb)")
    parser.add_argument("--master", type=Path, help="the master notebook (default: solutions/<same name>)")
    parser.add_argument("--solutions", type=Path, help="folder of masters (default: ../solutions beside the notebook's folder, else ./solutions)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file (atomically)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds each cell and each test may run (default 60)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="seconds the whole submission may take (default 900)")
    parser.add_argument("--memory", type=float, default=4.0, help="GiB of address space per student process (default 4)")
    parser.add_argument("--restarts", type=int, default=DEFAULT_RESTARTS, help="restarts of the student's process allowed (default 3)")
    parser.add_argument("--no-sandbox", action="store_true", help="run the student's code without bubblewrap (see README: it does not protect your files, network or processes)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each cell's outcome as it runs")
    args = parser.parse_args(argv)
    if args.timeout <= 0 or args.budget <= 0 or args.memory <= 0 or args.restarts < 0:
        parser.error("--timeout, --budget and --memory must be positive, --restarts non-negative")
    try:
        if args.json:
            check_report_path(args.json)
        if args.no_sandbox:
            print(f"warning: {NO_SANDBOX_WARNING}", file=sys.stderr)
        limits = _sandbox.Limits(memory=int(args.memory * 1024 ** 3))
        report = grade_report(args.notebook, args.master, args.timeout, args.solutions,
                              log=sys.stderr if args.verbose else None,
                              sandbox="none" if args.no_sandbox else "auto", budget=args.budget,
                              restarts=args.restarts, limits=limits,
                              protect=[args.json.resolve().parent] if args.json else [])
    except GradeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except GradingFailed as exc:
        print(f"error: grading failed: {exc}", file=sys.stderr)
        return 1
    results = report.results
    print(format_table(results))
    if args.json:
        got, total = sum(r.score for r in results), sum(r.points for r in results)
        payload = {"notebook": str(args.notebook), "score": got, "max_score": total,
                   "percent": round(100 * got / total, 2), "exercises": [asdict(r) for r in results],
                   "sandbox": report.sandbox, "complete": report.complete, "restarts": report.restarts,
                   "seconds": round(report.seconds, 2)}
        try:
            write_report(args.json, payload)
        except (OSError, GradeError) as exc:
            print(f"error: could not write {args.json}: {exc}", file=sys.stderr)
            return 1
    if not report.complete:
        print("error: grading stopped before every test had run (see the table)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
