"""Autograder: grade a student's notebook against its master's hidden tests, in a sandbox the student cannot game.

    coursekit grade submissions/alice/03_closed_form_kl.ipynb --solutions PRIVATE/solutions [--json result.json]
    coursekit grade submitted/ --solutions PRIVATE/solutions --out grades/ -j 2     # a whole class (gradebook)
    python -m gvlib.grade ...        # the same command, kept for lecturers' scripts

The master is `--master PATH`, else the notebook of the same name in `--solutions DIR`, else in the course's own
solutions/ (beside the installed coursekit, in a checkout of the course). Never beside the submission or in the
current folder: a student who can write there would supply the master.

The submission must be a regular file (not a symbolic link, FIFO or device), at most 64 MB, UTF-8 JSON that
nbformat reads and validates against its schema; otherwise nothing runs and the exit status is 2 (in a batch:
that submission scores 0 and the summary says why). A cell whose nbgrader metadata has the wrong types (a
grade_id that is not a string, say) runs as an ungraded cell. The master is checked the same way.

How it grades. The student's code cells run in order in a sandbox (bubblewrap, see coursekit.sandbox): a fresh
folder holding only a copy of the submission, no access to the masters, the grader or the course's folder, no
network, its own PID namespace, its own user, memory, CPU and process limits, killed at the end. The master's
test cells, hidden tests included, run instead in a separate trusted process (coursekit.runner) that never runs
the student's code: each test reads the student's answers as plain data (tensors, arrays, numbers, str, bool,
None, lists/tuples/dicts of these) and calls the student's functions through proxies that run them in the
sandbox and bring back data, so nothing the student's code patches (torch, builtins, IPython, comparison
operators) reaches a verdict. Each test gets a fresh child of the student's process, killed after it.
The student's answer cells that raise cost nothing by themselves (as under nbgrader): their tests decide.
A cell or test that hangs, crashes or floods is stopped and loses only its own exercise's points; the whole
submission has a time budget and a cap on restarts. The trusted process is started once per master (its
setup cells run once) and forks a child per submission, so a batch pays the start-up once.

Exit status: 0 whenever it graded (whatever the score; the JSON then holds the true score), 1 when grading
could not be done (the sandbox would not start, or the grader itself failed), 2 for bad arguments or a
submission that is not a valid notebook. The JSON report is written first, atomically, as a new regular file
(a symlink, FIFO or file at that path is replaced, never followed or opened), and only then is the table
printed (undecodable characters escaped, never an error); it never holds the hidden tests' source, only
exception types and the tests' own assertion messages (the student's exception text as a short first line).
"""
from __future__ import annotations

import argparse
import errno
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

__all__ = ["grade", "grade_report", "Result", "Report", "GradeError", "GradingFailed", "find_master", "write_report",
           "format_table", "NO_SANDBOX_WARNING", "Master", "load_master", "read_submission", "Trusted", "grade_submission",
           "course_solutions"]

DEFAULT_TIMEOUT = 60.0
DEFAULT_BUDGET = 900.0
DEFAULT_RESTARTS = 3
DEFAULT_TRUSTED_MEMORY = 6 * 1024 ** 3   # bytes of address space of the trusted process (torch + decoded data)
MAX_NOTEBOOK_BYTES = 64 * 1024 ** 2
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
    written: list[dict] = field(default_factory=list)   # [{"grade_id", "text"}]: the student's written answers
    cpu: dict = field(default_factory=dict)              # CPU seconds: {"trusted", "student"}


def course_solutions() -> Path | None:
    """The course's own solutions/ (beside the installed coursekit, in a checkout of the course), if there is one."""
    folder = _package_dir().parent / "solutions"
    return folder if folder.is_dir() else None


def find_master(student: Path, solutions: Path | None = None) -> Path:
    """The master of a student's notebook: <solutions>/<same file name>, by default in the course's own solutions/.

    Never a folder near the submission or the current folder: whoever can write there would choose the master."""
    student = Path(student)
    folder = Path(solutions) if solutions else course_solutions()
    if folder is None:
        raise GradeError(f"no master for {student.name}: pass --solutions DIR (the folder of masters) or --master PATH")
    path = folder / student.name
    if path.is_file():
        return path
    raise GradeError(f"no master for {student.name}: looked for {path}; name the notebook as the exercise was "
                     "named, or pass --master PATH")


def _read_bytes(path: Path, what: str) -> bytes:
    """The bytes of a regular file, opened without following a symbolic link at `path` (and checked as opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise GradeError(f"{what} {path} does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise GradeError(f"{what} {path} is a symbolic link; only regular files are graded") from None
        if exc.errno == errno.EISDIR:
            raise GradeError(f"{what} {path} is not a file") from None
        raise GradeError(f"{what} {path} cannot be read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise GradeError(f"{what} {path} is not a regular file")
        if st.st_size > MAX_NOTEBOOK_BYTES:
            raise GradeError(f"{what} {path} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
        chunks, n = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            n += len(chunk)
            if n > MAX_NOTEBOOK_BYTES:
                raise GradeError(f"{what} {path} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _parse(data: bytes, path: Path, what: str):
    """A notebook from bytes, validated against nbformat's schema; GradeError (with the reason) otherwise."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise GradeError(f"{what} {path} is not a readable notebook (.ipynb JSON): not UTF-8 text") from None
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4)
            for cell in nb.get("cells", []) if isinstance(nb.get("cells"), list) else []:
                if isinstance(cell, dict) and cell.get("cell_type") == "code":  # outputs are never read: a tool's
                    cell["outputs"], cell["execution_count"] = [], None         # quirks there cost no one a grade
            nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        first = str(getattr(exc, "message", exc)).strip().splitlines()
        raise GradeError(f"{what} {path} is not a valid notebook (nbformat schema): "
                         f"{first[0][:200] if first else 'invalid'}") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()
        raise GradeError(f"{what} {path} is not a readable notebook (.ipynb JSON): "
                         f"{first[0][:200] if first else type(exc).__name__}") from None
    if not isinstance(nb.get("cells"), list) or not all(isinstance(c.get("source"), str) for c in nb.cells):
        raise GradeError(f"{what} {path} is not a valid notebook: a cell's source is not text")
    return nb, text


def _read(path: Path, what: str):
    return _parse(_read_bytes(Path(path), what), Path(path), what)[0]


def _meta_problem(cell) -> str:
    """Why a cell's metadata is not of our types (nbgrader: a dict, grade_id a string, points a number, ...)."""
    meta = cell.get("metadata", {})
    nbg = meta.get("nbgrader")
    if nbg is not None:
        if not isinstance(nbg, dict):
            return "nbgrader metadata is not a dict"
        if "grade_id" in nbg and not isinstance(nbg["grade_id"], str):
            return "nbgrader.grade_id is not a string"
        for key in ("grade", "solution", "locked", "task"):
            if key in nbg and not isinstance(nbg[key], bool):
                return f"nbgrader.{key} is not true or false"
        if "points" in nbg and (isinstance(nbg["points"], bool) or not isinstance(nbg["points"], (int, float))):
            return "nbgrader.points is not a number"
    tags = meta.get("tags")
    if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        return "tags is not a list of strings"
    return ""


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


@dataclass
class Master:
    """A master notebook, checked, with what the trusted process needs of it."""

    path: Path
    exercises: list[Exercise]
    setup: list[str]
    written: list[str]          # grade_ids of the written answers (markdown solution cells)

    @property
    def max_score(self) -> float:
        return sum(ex.points for ex in self.exercises)


def load_master(master_path: Path) -> Master:
    """GradeError unless `master_path` is a regular file holding a valid master with graded cells."""
    master_path = Path(master_path)
    master = _read(master_path, "master notebook")
    for i, cell in enumerate(master.cells):
        problem = _meta_problem(cell)
        if problem:
            raise GradeError(f"master {master_path}, cell {i}: {problem}")
    try:
        exercises = exercises_of(master)
    except ValueError as exc:
        raise GradeError(f"master {master_path}: {exc}") from None
    if not exercises:
        raise GradeError(f"master {master_path} has no graded cells (nbgrader.grade = true with points)")
    written = [nbgrader_meta(c)["grade_id"] for c in master.cells if c.cell_type == "markdown"
               and nbgrader_meta(c).get("solution") and isinstance(nbgrader_meta(c).get("grade_id"), str)]
    return Master(master_path, exercises, [c.source for c in master.cells if c.cell_type == "code" and is_setup(c)],
                  written)


@dataclass
class Submission:
    path: Path
    text: str
    cells: list[dict]
    written: list[dict]
    notes: list[str]


def read_submission(student_path: Path, master: Master) -> Submission:
    """The student's notebook, read once as a regular file and validated; GradeError if it is not a notebook.
    Cells whose metadata has the wrong types run as ungraded cells (a note says which)."""
    student_path = Path(student_path)
    nb, text = _parse(_read_bytes(student_path, "student notebook"), student_path, "student notebook")
    cells, notes, written_by_id = [], [], {}
    for i, c in enumerate(nb.cells):
        problem = _meta_problem(c)
        gid = None if problem else nbgrader_meta(c).get("grade_id")
        if problem:
            notes.append(f"cell {i}: {problem}; run as an ungraded cell")
        if c.cell_type == "code" and c.source.strip():
            cells.append({"index": i, "source": c.source, "grade_id": gid})
        elif c.cell_type == "markdown" and gid in master.written and gid not in written_by_id:
            written_by_id[gid] = c.source
    written = [{"grade_id": gid, "text": written_by_id.get(gid)} for gid in master.written]
    return Submission(student_path, text, cells, written, notes)


def _package_root_protected() -> list[str]:
    here = _package_dir()
    return [str(here), str(here.parent)]


class Trusted:
    """The trusted process of one master (coursekit.runner): started once, its setup cells run once; each
    submission is graded by a child it forks. Not thread-safe: one per batch worker."""

    def __init__(self, master: Master, sandbox: str, limits: _sandbox.Limits, timeout: float, budget: float,
                 restarts: int, trusted_memory: int = DEFAULT_TRUSTED_MEMORY):
        self.master, self.mode = master, sandbox
        self.limits = limits
        self.job = {
            "tests": [{"grade_id": ex.grade_id, "source": ex.test_source, "points": ex.points,
                       "answer_ids": ex.answer_ids} for ex in master.exercises],
            "setup": master.setup, "sandbox": sandbox, "limits": asdict(limits), "timeout": timeout,
            "budget": budget, "restarts": restarts, "trusted_memory": int(trusted_memory),
            "extra_ro": [os.environ["GVLIB_DATA"]] if os.environ.get("GVLIB_DATA") else [],
        }
        self.wall = budget + 120.0
        self.proc = None
        self.buf = b""
        self.tmp = None
        self.errfile = None

    def _start(self):
        root = str(_package_dir().parent)
        code = (f"import sys; sys.path.insert(0, {root!r}); from coursekit.runner import main; "
                f"sys.path.remove({root!r}); sys.exit(main())")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"), MKL_NUM_THREADS=env.get("MKL_NUM_THREADS", "1"),
                   MPLBACKEND="Agg", GVLIB_QUIET="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
        self.tmp = tempfile.TemporaryDirectory(prefix="coursekit-grade-")
        self.errfile = tempfile.TemporaryFile()
        env.update(IPYTHONDIR=os.path.join(self.tmp.name, "ipython"),
                   MPLCONFIGDIR=os.path.join(self.tmp.name, "matplotlib"))
        self.proc = subprocess.Popen([sys.executable, "-I", "-c", code], cwd=self.tmp.name, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errfile,
                                     start_new_session=True)
        self.buf = b""
        self.proc.stdin.write((json.dumps(self.job) + "\n").encode())
        self.proc.stdin.flush()

    def grade(self, sub: Submission, protect: list[Path] = (), log=None) -> list[dict]:
        """The events of grading `sub` (result, done or fatal, ...); the trusted process is restarted after a
        failure of its own, so the next submission starts clean."""
        protected = {str(p) for p in (self.master.path.resolve().parent, self.master.path.resolve().parent.parent,
                                      sub.path.resolve().parent, Path.cwd(),
                                      *(Path(p).resolve() for p in protect))} | set(_package_root_protected())
        job = {"cells": sub.cells, "submission_text": sub.text,
               "submission_name": sub.path.name if sub.path.name.endswith(".ipynb") else "submission.ipynb",
               "protected": sorted(protected), "verbose": log is not None}
        if self.proc is None or self.proc.poll() is not None:
            self.close()
            self._start()
        events: list[dict] = []
        ended = False
        try:
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
            self.proc.stdin.flush()
            ended = self._read(events, time.monotonic() + self.wall, log)
        except (BrokenPipeError, OSError):
            ended = False
        if not ended:  # stuck or dead: everything it started goes, and the next submission gets a new one
            self._tail(log)
            self.close(kill=True)
        return events

    def _read(self, events: list[dict], deadline: float, log) -> bool:
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(event, dict):
                    continue
                kind = event.get("event")
                if kind == "end":
                    return True
                if kind == "log":
                    if log:
                        print(event.get("text", ""), file=log, flush=True)
                elif kind == "cpu":
                    events.append(event)
                    if log:
                        print(f"CPU seconds: trusted process {event.get('trusted')}, student's processes "
                              f"{event.get('student')}", file=log, flush=True)
                elif kind != "ready":
                    events.append(event)
            if len(self.buf) > 1 << 20:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not r:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return False
            self.buf += chunk

    def _tail(self, log):
        if log and self.errfile is not None:
            try:
                self.errfile.seek(0)
                tail = self.errfile.read()[-2000:].decode(errors="replace").strip().splitlines()
                if tail:
                    print("grader's trusted process: " + tail[-1], file=log, flush=True)
            except OSError:
                pass

    def close(self, kill: bool = False):
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                if not kill:
                    proc.stdin.close()
                    proc.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                pass
            if proc.returncode is None:  # still ours (not reaped): it and everything under it
                _sandbox.kill_tree(proc.pid, include_root=True)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            for f in (proc.stdin, proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
        if self.errfile is not None:
            self.errfile.close()
            self.errfile = None
        if self.tmp is not None:
            self.tmp.cleanup()
            self.tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def grade_submission(trusted: Trusted, sub: Submission, protect: list[Path] = (), log=None) -> Report:
    """Grade one read submission with a trusted process; a Report (GradingFailed if the sandbox would not start)."""
    master = trusted.master
    events = trusted.grade(sub, protect, log)
    verdicts: dict[str, dict] = {}
    for e in events:
        if e.get("event") == "result" and isinstance(e.get("grade_id"), str):
            verdicts.setdefault(e["grade_id"], e)
    fatal = [e for e in events if e.get("event") == "fatal"]
    if fatal:
        raise GradingFailed(str(fatal[0].get("error", "the sandbox would not start")))
    done = next((e for e in events if e.get("event") == "done"), None)
    results = []
    for ex in master.exercises:
        v = verdicts.get(ex.grade_id)
        if v is None:
            results.append(Result(ex.grade_id, ex.points, 0.0, False, "not graded: the grader's process stopped"))
            continue
        ok = v.get("passed") is True
        results.append(Result(ex.grade_id, ex.points, ex.points if ok else 0.0, ok, "" if ok else str(v.get("error", ""))))
    mode = trusted.mode
    notes = ["sandbox: bubblewrap"] if mode == "bwrap" else [NO_SANDBOX_WARNING]
    if done and isinstance(done.get("notes"), list):
        notes += [str(n) for n in done["notes"]]
    notes += sub.notes
    cpu = next(({k: float(e[k]) for k in ("trusted", "student") if isinstance(e.get(k), (int, float))}
                for e in events if e.get("event") == "cpu"), {})
    return Report(results, "bubblewrap" if mode == "bwrap" else "none",
                  done is not None and len(verdicts) == len(master.exercises),
                  int(done.get("restarts", 0)) if done else 0, float(done.get("seconds", 0.0)) if done else 0.0,
                  notes, sub.written, cpu)


def grade_report(student_path: Path, master_path: Path | None = None, timeout: float = DEFAULT_TIMEOUT,
                 solutions: Path | None = None, log=None, *, sandbox: str = "auto",
                 budget: float = DEFAULT_BUDGET, restarts: int = DEFAULT_RESTARTS,
                 limits: _sandbox.Limits | None = None, protect: list[Path] = (),
                 trusted_memory: int = DEFAULT_TRUSTED_MEMORY) -> Report:
    """Grade a student's notebook; a Report with one Result per graded exercise of the master, in order.

    sandbox: "auto" (bubblewrap; GradeError when it is not usable), "bwrap", or "none" (see NO_SANDBOX_WARNING).
    protect: more folders the student's process must not see (the report's folder, a submissions folder).
    """
    student_path = Path(student_path)
    if not os.path.lexists(student_path):
        raise GradeError(f"student notebook {student_path} does not exist")
    master = load_master(Path(master_path) if master_path else find_master(student_path, solutions))
    sub = read_submission(student_path, master)
    if timeout <= 0 or budget <= 0:
        raise GradeError("--timeout and --budget must be positive")
    mode = _choose_sandbox(sandbox)
    limits = limits or _sandbox.Limits()
    limits.cpu_seconds = int(max(limits.cpu_seconds, budget + 30))
    with Trusted(master, mode, limits, timeout, budget, restarts, trusted_memory) as trusted:
        return grade_submission(trusted, sub, protect, log)


def grade(student_path: Path, master_path: Path | None = None, timeout: float = DEFAULT_TIMEOUT,
          solutions: Path | None = None, log=None, **kwargs) -> list[Result]:
    """Grade a student's notebook; one Result per graded exercise of the master, in order (see grade_report)."""
    report = grade_report(student_path, master_path, timeout, solutions, log, **kwargs)
    if not report.complete:
        raise GradingFailed("the grader's trusted process stopped before every test had run")
    return report.results


def format_table(results: list[Result]) -> str:
    """The results as a plain-text table with a total line."""
    w = max([len("exercise")] + [len(r.exercise) for r in results])
    lines = [f"{'exercise':<{w}}  points  passed  error", f"{'-' * w}  ------  ------  -----"]
    for r in results:
        lines.append(f"{r.exercise:<{w}}  {r.score:>2g}/{r.points:<3g}  {'yes' if r.passed else 'no':<6}  {r.error}")
    got, total = sum(r.score for r in results), sum(r.points for r in results)
    lines.append(f"{'total':<{w}}  {got:g}/{total:g}  ({100 * got / total if total else 0:.0f} %)")
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
            f.write(json.dumps(payload, indent=2, ensure_ascii=True) + "\n")
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


def report_payload(notebook, report: Report) -> dict:
    results = report.results
    got, total = sum(r.score for r in results), sum(r.points for r in results)
    return {"notebook": str(notebook), "score": got, "max_score": total,
            "percent": round(100 * got / total, 2) if total else 0.0, "exercises": [asdict(r) for r in results],
            "sandbox": report.sandbox, "complete": report.complete, "restarts": report.restarts,
            "seconds": round(report.seconds, 2), "cpu_seconds": report.cpu, "written": report.written,
            "notes": report.notes}


def safe_streams() -> None:
    """stdout and stderr that never fail on a character their encoding lacks (escaped instead)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):
            pass


def add_common_options(parser) -> None:
    parser.add_argument("--master", type=Path, help="the master notebook (default: <--solutions>/<same name>)")
    parser.add_argument("--solutions", type=Path, help="folder of masters (default: the course's own solutions/; "
                        "never a folder beside the submission or the current folder)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds each cell and each test may run (default 60)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="seconds the whole submission may take (default 900)")
    parser.add_argument("--memory", type=float, default=4.0, help="GiB of memory per sandbox (address space per process, "
                        "and the sandbox's control group where there is one; default 4)")
    parser.add_argument("--trusted-memory", type=float, default=DEFAULT_TRUSTED_MEMORY / 1024 ** 3,
                        help="GiB of address space of the trusted test process (default 6)")
    parser.add_argument("--restarts", type=int, default=DEFAULT_RESTARTS, help="restarts of the student's process allowed (default 3)")
    parser.add_argument("--no-sandbox", action="store_true", help="run the student's code without bubblewrap (see README: it does not protect your files, network or processes)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each cell's outcome as it runs")


def check_common_options(parser, args) -> None:
    if args.timeout <= 0 or args.budget <= 0 or args.memory <= 0 or args.restarts < 0 or args.trusted_memory <= 0:
        parser.error("--timeout, --budget, --memory and --trusted-memory must be positive, --restarts non-negative")


def main(argv: list[str] | None = None) -> int:
    safe_streams()
    argv = list(sys.argv[1:] if argv is None else argv)
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("notebook", nargs="?")
    for flag in ("--json", "--out", "--shard", "-j", "--jobs"):
        probe.add_argument(flag)
    add_common_options(probe)
    try:
        first = probe.parse_known_args(argv)[0].notebook
    except SystemExit:
        first = None
    if "--collect" in argv or (first is not None and Path(first).is_dir()):
        from .gradebook import main as batch_main  # a folder of submissions: a whole class
        return batch_main(argv)
    parser = argparse.ArgumentParser(prog="coursekit grade", description=__doc__.split("\n\n")[0],
                                     epilog="Given a folder instead of a notebook, it grades a whole class "
                                            "(see `coursekit grade FOLDER --help`).")
    parser.add_argument("notebook", type=Path, help="the student's notebook (.ipynb), or a folder of submissions")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file (atomically)")
    add_common_options(parser)
    args = parser.parse_args(argv)
    check_common_options(parser, args)
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
                              protect=[args.json.resolve().parent] if args.json else [],
                              trusted_memory=int(args.trusted_memory * 1024 ** 3))
    except GradeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except GradingFailed as exc:
        print(f"error: grading failed: {exc}", file=sys.stderr)
        return 1
    rc = 0
    if args.json:  # the report first: nothing printed can stop it from being written
        try:
            write_report(args.json, report_payload(args.notebook, report))
        except (OSError, GradeError) as exc:
            print(f"error: could not write {args.json}: {exc}", file=sys.stderr)
            rc = 1
    try:
        print(format_table(report.results))
        if not report.complete:
            print("error: grading stopped before every test had run (see the table)", file=sys.stderr)
    except (OSError, ValueError):
        pass
    return rc or (0 if report.complete else 1)


if __name__ == "__main__":
    sys.exit(main())
