"""Autograder: grade a student's notebook against its master's hidden tests.

    coursekit grade exercises/03_closed_form_kl.ipynb [--json result.json] [--timeout 60]
    python -m gvlib.grade ...        # the same command, kept for lecturers' scripts

The master is the notebook of the same name in `--solutions DIR`, else in the `solutions/` folder beside the
notebook's folder (exercises/NN.ipynb -> solutions/NN.ipynb), else in ./solutions (or `--master PATH`). The student's cells run
in order in a fresh kernel; each graded test cell is replaced by the master's version, hidden tests
included, and the master's `setup` cells run again just before it, so redefined helpers cannot fool a
test. The master's answers never run. Every cell has a timeout; a cell that raises, hangs, prints more
than the output limit or kills the kernel costs only the points of the exercise it belongs to.
Exit status: 0 whenever grading happened (whatever the score), 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from .exercises import Exercise, exercises_of, is_setup, nbgrader_meta

__all__ = ["grade", "Result", "GradeError", "find_master"]

DEFAULT_TIMEOUT = 60.0
OUTPUT_LIMIT = 1_000_000  # bytes a single cell may print before it is stopped
_PREAMBLE = "import matplotlib\nmatplotlib.use('Agg')\n"


class GradeError(Exception):
    """Bad arguments: the notebook or its master cannot be read."""


@dataclass
class Result:
    """The grade of one exercise."""

    exercise: str
    points: float
    score: float
    passed: bool
    error: str = ""


@dataclass
class _Run:
    ok: bool
    error: str = ""
    seconds: float = 0.0


@dataclass
class _Kernel:
    cwd: str
    timeout: float
    history: list[str] = field(default_factory=list)

    def start(self):
        from jupyter_client.manager import KernelManager

        env = dict(os.environ, GVLIB_QUIET="1", MPLBACKEND="Agg", PYDEVD_DISABLE_FILE_VALIDATION="1")
        self.km = KernelManager(kernel_name="python3")
        # The kernel's own stderr (transport warnings, debugger notes) is noise here: students' output
        # reaches the grader through the kernel's messages, which are read and limited below.
        self.km.start_kernel(cwd=self.cwd, env=env, stderr=subprocess.DEVNULL)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)
        self.run(_PREAMBLE, remember=True)

    def stop(self):
        try:
            self.kc.stop_channels()
        finally:
            self.km.shutdown_kernel(now=True)

    def restart(self):
        """Restart a hung or dead kernel and replay every cell that had run well, so later exercises still count."""
        self.km.restart_kernel(now=True)
        self.kc.stop_channels()
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)
        for code in list(self.history):
            self.run(code, remember=False)

    def run(self, code: str, remember: bool = True, timeout: float | None = None) -> _Run:
        """Execute `code`; stop it when it outlives `timeout` or prints more than OUTPUT_LIMIT bytes."""
        timeout = self.timeout if timeout is None else timeout
        start = time.monotonic()
        msg_id = self.kc.execute(code, store_history=False, allow_stdin=False, stop_on_error=False)
        deadline = start + timeout
        printed, error, stopped = 0, "", ""
        while True:
            now = time.monotonic()
            if now > deadline:
                if stopped:  # an interrupt was not enough (a loop in C, a dead kernel): restart
                    self.restart()
                    return _Run(False, stopped + "; the kernel had to be restarted", time.monotonic() - start)
                self.km.interrupt_kernel()
                stopped = stopped or f"timed out after {timeout:g} s"
                deadline = now + 10.0
            try:
                msg = self.kc.get_iopub_msg(timeout=min(1.0, max(0.05, deadline - now)))
            except queue.Empty:
                if not self.km.is_alive():
                    self.restart()
                    return _Run(False, "the kernel died (did the cell exit Python or crash it?)",
                                time.monotonic() - start)
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                printed += len(content.get("text", ""))
            elif kind in ("display_data", "execute_result", "update_display_data"):
                printed += sum(len(str(v)) for v in content.get("data", {}).values())
            elif kind == "error":
                error = f"{content.get('ename', 'Error')}: {content.get('evalue', '')}".rstrip(": ")
            elif kind == "status" and content.get("execution_state") == "idle":
                break
            if printed > OUTPUT_LIMIT and not stopped:
                self.km.interrupt_kernel()
                stopped = f"printed more than {OUTPUT_LIMIT // 1_000_000} MB of output"
                deadline = time.monotonic() + 10.0
        seconds = time.monotonic() - start
        if stopped:
            return _Run(False, stopped, seconds)
        if error:
            return _Run(False, error, seconds)
        if remember:
            self.history.append(code)
        return _Run(True, "", seconds)


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
    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:
        raise GradeError(f"{what} {path} is not a readable notebook (.ipynb JSON): {exc}") from None


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0][:200] if lines else ""


def grade(student_path: Path, master_path: Path | None = None, timeout: float = DEFAULT_TIMEOUT,
          solutions: Path | None = None, log=None) -> list[Result]:
    """Grade a student's notebook; one Result per graded exercise of the master, in order."""
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
    by_test = {ex.grade_id: ex for ex in exercises}
    owner = {aid: ex.grade_id for ex in exercises for aid in ex.answer_ids}
    setup = "\n\n".join(c.source for c in master.cells if c.cell_type == "code" and is_setup(c))
    failures: dict[str, str] = {}
    passed: set[str] = set()

    def say(text):
        if log:
            print(text, file=log, flush=True)

    kernel = _Kernel(cwd=str(student_path.parent.resolve()), timeout=timeout)
    kernel.start()
    try:
        def run_test(ex: Exercise):
            if setup:
                r = kernel.run(setup, remember=True)
                if not r.ok:  # the master's own setup failed here: nothing after can be trusted for this test
                    failures.setdefault(ex.grade_id, f"setup cells failed: {r.error}")
                    return
            r = kernel.run(ex.test_source, remember=False)
            say(f"  test {ex.grade_id}: {'passed' if r.ok else 'failed: ' + _first_line(r.error)} ({r.seconds:.1f} s)")
            if r.ok:
                passed.add(ex.grade_id)
            else:
                failures.setdefault(ex.grade_id, r.error)

        done: set[str] = set()
        for i, cell in enumerate(student.cells):
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            gid = nbgrader_meta(cell).get("grade_id")
            if gid in by_test:
                if gid not in done:
                    run_test(by_test[gid])
                    done.add(gid)
                continue
            r = kernel.run(cell.source, remember=True)
            say(f"  cell {i}{f' ({gid})' if gid else ''}: {'ok' if r.ok else _first_line(r.error)} ({r.seconds:.1f} s)")
            if not r.ok and gid in owner:
                failures.setdefault(owner[gid], f"your answer cell {gid!r} failed: {r.error}")
        for ex in exercises:  # test cells the student deleted still run, at the end
            if ex.grade_id not in done:
                run_test(ex)
    finally:
        kernel.stop()

    results = []
    for ex in exercises:
        ok = ex.grade_id in passed and ex.grade_id not in failures
        err = "" if ok else _first_line(failures.get(ex.grade_id, "test did not run"))
        results.append(Result(ex.grade_id, ex.points, ex.points if ok else 0.0, ok, err))
    return results


def format_table(results: list[Result]) -> str:
    """The results as a plain-text table with a total line."""
    w = max([len("exercise")] + [len(r.exercise) for r in results])
    lines = [f"{'exercise':<{w}}  points  passed  error", f"{'-' * w}  ------  ------  -----"]
    for r in results:
        lines.append(f"{r.exercise:<{w}}  {r.score:>2g}/{r.points:<3g}  {'yes' if r.passed else 'no':<6}  {r.error}")
    got, total = sum(r.score for r in results), sum(r.points for r in results)
    lines.append(f"{'total':<{w}}  {got:g}/{total:g}  ({100 * got / total:.0f} %)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="coursekit grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", type=Path, help="the student's notebook (.ipynb)")
    parser.add_argument("--master", type=Path, help="the master notebook (default: solutions/<same name>)")
    parser.add_argument("--solutions", type=Path, help="folder of masters (default: ../solutions beside the notebook's folder, else ./solutions)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds each cell may run")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each cell's outcome as it runs")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    try:
        results = grade(args.notebook, args.master, args.timeout, args.solutions,
                        log=sys.stderr if args.verbose else None)
    except GradeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(results))
    if args.json:
        got, total = sum(r.score for r in results), sum(r.points for r in results)
        payload = {"notebook": str(args.notebook), "score": got, "max_score": total,
                   "percent": round(100 * got / total, 2), "exercises": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
