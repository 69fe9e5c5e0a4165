"""The grader's trusted process: runs the master's setup and test cells; the student's cells run in the sandbox.

Started by coursekit.grade (never by hand), once per master: it reads the master's part of the job (a line of
JSON) on stdin, limits its own address space, runs the master's setup cells once and answers ``ready``; then, for
each further line (one submission), it forks a child that grades it and writes one JSON object per line on stdout
(``log``, ``result``, ``done``, ``fatal``, ``cpu``), and answers ``end`` once that child is gone. A batch thus pays
the trusted side's start-up (IPython, torch, the setup cells) once, and each submission still gets a process of
its own whose changes to modules or random state end with it.

- The student's cells run in order in the sandboxed worker (coursekit/_worker.py, see coursekit.sandbox).
- Each test cell of the master runs HERE, in this process, in a namespace made of the master's setup cells
  (run here once) plus, for each other name the test reads, what the student's process holds under that name:
  plain data (decoded by coursekit.wire, never an object of the student's), or a proxy that calls the
  student's function in a child forked for this test and brings back plain data. Patching torch, builtins,
  IPython hooks or comparison operators in the student's process therefore changes no verdict.
- Bounded: a time limit per cell and per test (a SIGALRM here, a kill there), a wall-clock budget per
  submission, a cap on sandbox restarts (each restart replays the cells that had finished, once), a size limit
  on every message, and every process the student started killed after each test and at the end.
"""
from __future__ import annotations

import ast
import builtins
import json
import os
import shutil
import signal
import sys
import tempfile
import time

from . import sandbox, wire

_BUILTIN_NAMES = frozenset(dir(builtins))
_SAFE_EXCEPTIONS = {e.__name__: e for e in (ValueError, TypeError, ArithmeticError, ZeroDivisionError,
                                            OverflowError, FloatingPointError, IndexError, KeyError,
                                            LookupError, NotImplementedError, RuntimeError, RecursionError,
                                            AssertionError, AttributeError, NameError, UnboundLocalError,
                                            MemoryError)}


class SandboxFailure(BaseException):
    """The student's process did not answer in time, died, or sent something that is not a message.

    A BaseException, so that a test's ``except Exception`` cannot swallow it; a test during which one was
    raised fails whatever it does afterwards."""


class TestTimeout(BaseException):
    pass


class StudentCodeError(Exception):
    """The student's function raised an exception whose type is not one of the common built-in ones."""


class BudgetExhausted(Exception):
    pass


def sanitize(text: str, n: int = 200) -> str:
    """The first non-empty line of `text`, printable characters only, at most `n` characters."""
    lines = [ln for ln in str(text).splitlines() if ln.strip()]
    line = lines[0].strip() if lines else ""
    line = "".join(c if c.isprintable() else "?" for c in line)
    return line if len(line) <= n else line[: n - 3] + "..."


def describe_error(exc: BaseException) -> str:
    name = type(exc).__name__
    msg = sanitize(str(exc))
    return f"{name}: {msg}" if msg else name


def free_names(code: str, known) -> list[str]:
    """Names the code reads but never binds, that are neither built-ins nor in `known` (the setup namespace)."""
    tree = ast.parse(code)
    loads, stores = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loads if isinstance(node.ctx, ast.Load) else stores).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stores.add(node.name)
        elif isinstance(node, ast.arg):
            stores.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                stores.add((a.asname or a.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            stores.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            stores.add(node.name)
    return sorted(n for n in loads - stores if n not in _BUILTIN_NAMES and n not in known)


# Modules a test may read from the student's namespace (`import math` in an answer cell, `math.pi` in the test):
# the test gets the grader's own copy, never the student's object. The module's name comes from the student (a
# module object's __name__ is theirs to set), so only an exact list of names is honoured: importing an arbitrary
# standard-library module can have side effects in the grader (`antigravity` opens a browser, `this` prints, a
# package's `__main__` runs its command line and exits).
TRUSTED_MODULES = frozenset({
    "math", "cmath", "random", "statistics", "itertools", "functools", "operator", "collections", "fractions",
    "decimal", "numbers", "numpy", "numpy.linalg", "numpy.random", "scipy", "scipy.special", "scipy.stats",
    "scipy.integrate", "scipy.linalg", "torch", "torch.nn", "torch.nn.functional", "torch.distributions",
    "torch.linalg", "torch.special", "gvlib", "gvlib.distributions", "gvlib.bounds", "gvlib.data"})


def trusted_module(name):
    """The grader's own import of module `name` when it is in TRUSTED_MODULES, else None."""
    import importlib

    if not isinstance(name, str) or name not in TRUSTED_MODULES:
        return None
    try:
        return importlib.import_module(name)
    except BaseException:  # noqa: BLE001 - whatever an import does, the grader goes on: the test sees the TypeError
        return None


# ------------------------------------------------------------------------------------------------ the channel
class Channel:
    def __init__(self, to_worker: int, from_worker: int, limit: int):
        self.w, self.r, self.limit, self.next_id = to_worker, from_worker, limit, 1

    def send(self, obj: dict, deadline: float) -> int:
        rid = self.next_id
        self.next_id += 1
        wire.write_frame(self.w, wire.encode(dict(obj, id=rid), self.limit), deadline)
        return rid

    def receive(self, rid: int, deadline: float) -> dict:
        """The answer to request `rid`; earlier answers (of requests given up on) are skipped."""
        while True:
            msg = wire.decode(wire.read_frame(self.r, deadline, self.limit), self.limit, deadline=deadline)
            if not isinstance(msg, dict):
                raise wire.WireError("an answer that is not a dict")
            if msg.get("id") == rid:
                return msg
            if not isinstance(msg.get("id"), int) or msg["id"] > rid:
                raise wire.WireError("an answer to a request never made")

    def drain(self):
        os.set_blocking(self.r, False)
        try:
            while os.read(self.r, 1 << 20):
                pass
        except (BlockingIOError, OSError):
            pass
        finally:
            os.set_blocking(self.r, True)

    def close(self):
        for fd in (self.w, self.r):
            try:
                os.close(fd)
            except OSError:
                pass


# ------------------------------------------------------------------------------------------------ the student
class Student:
    """The student's sandboxed process, the cells it has run, and its restarts."""

    def __init__(self, job: dict, log):
        self.job, self.log = job, log
        self.mode = job["sandbox"]
        self.limits = sandbox.Limits(**job["limits"])
        self.timeout = float(job["timeout"])
        self.deadline = time.monotonic() + float(job["budget"])
        self.max_restarts = int(job["restarts"])
        self.restarts = 0
        self.history: list[tuple[int, str]] = []  # cells that finished (ok or raised), replayed after a restart
        self.proc = None
        self.chan = None
        self.exhausted = ""
        self.runtime = tempfile.mkdtemp(prefix="coursekit-runtime-")
        from importlib.resources import files

        for src, dest in (("_worker.py", "worker.py"), ("wire.py", "wire.py")):
            with open(os.path.join(self.runtime, dest), "w", encoding="utf-8") as f:
                f.write(files("coursekit").joinpath(src).read_text(encoding="utf-8"))
        os.chmod(self.runtime, 0o755)
        for f in ("worker.py", "wire.py"):
            os.chmod(os.path.join(self.runtime, f), 0o644)
        self.notes: list[str] = []
        self.identity = None
        self.cgroup = None
        self.worker_h = None
        if self.mode == "bwrap":
            self.identity = sandbox.claim_identity()
        self.cgroup, note = sandbox.make_cgroup(f"coursekit-{os.getpid()}-{time.monotonic_ns()}",
                                                self.limits.processes, self.limits.memory)
        self.notes.append(note)
        if self.identity is not None:
            self.notes.append(f"its own user: host uid {self.identity.uid}")

    # -- time
    def left(self) -> float:
        return self.deadline - time.monotonic()

    def until(self, seconds: float) -> float:
        if self.left() <= 0:
            raise BudgetExhausted(f"the submission's time budget ({self.job['budget']:g} s) ran out")
        return min(time.monotonic() + seconds, self.deadline)

    # -- life cycle
    def start(self):
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        name = self.job["submission_name"]
        data = self.job["submission_text"].encode("utf-8", "surrogateescape")
        sub_fd = os.memfd_create("submission", os.MFD_CLOEXEC) if hasattr(os, "memfd_create") else \
            os.open(tempfile.mkstemp(dir=self.runtime)[1], os.O_RDWR)
        os.write(sub_fd, data)
        os.lseek(sub_fd, 0, os.SEEK_SET)
        workdir = None
        try:
            if self.mode == "bwrap":
                plan = sandbox.plan_bwrap(self.runtime, sub_fd, name, (req_r, rep_w), self.job["protected"],
                                          self.limits, self.job.get("extra_ro", []), self.identity, self.cgroup)
            else:
                workdir = tempfile.mkdtemp(prefix="coursekit-student-")
                with open(os.path.join(workdir, name), "wb") as f:
                    f.write(data)
                plan = sandbox.plan_plain(self.runtime, workdir, (req_r, rep_w), self.limits, self.cgroup)
            for n in plan.notes:
                if n not in self.notes:
                    self.notes.append(n)
                    self.log(f"sandbox: {n}")
            self.proc = sandbox.launch(plan)
        finally:
            for fd in (req_r, rep_w, sub_fd):
                os.close(fd)
        self.workdir = workdir
        self.chan = Channel(req_w, rep_r, self.limits.data)
        try:
            hello = wire.decode(wire.read_frame(rep_r, self.until(120.0), self.limits.data), self.limits.data)
            if not (isinstance(hello, dict) and hello.get("op") == "hello" and isinstance(hello.get("pid"), int)):
                raise wire.WireError("no hello")
        except (wire.WireTimeout, EOFError, wire.WireError, OSError) as exc:
            err = self._stderr()
            self.kill()
            raise SandboxFailure(f"the student's process did not start ({exc}){': ' + err if err else ''}")
        if self.mode == "bwrap":
            self.keep = {self.proc.pid}
            self.worker = None
            for pid in sandbox.descendants(self.proc.pid):
                self.keep.add(pid) if sandbox.ns_pid(pid) == 1 else None
                if sandbox.ns_pid(pid) == hello["pid"]:
                    self.worker = pid
            if self.worker is None:
                self.kill()
                raise SandboxFailure("could not find the student's process")
            self.keep.add(self.worker)
            self.tree_root = self.proc.pid
            self.worker_h = sandbox.open_pidfd(self.worker, sandbox.descendants(self.proc.pid) | {self.proc.pid})
        else:
            self.worker = self.proc.pid
            self.keep = {self.worker}
            self.tree_root = os.getpid()
            self.worker_h = sandbox.open_pidfd(self.worker, {os.getpid()})
        if self.worker_h is None:
            self.kill()
            raise SandboxFailure("the student's process was gone before it started")

    def _stderr(self) -> str:
        try:
            os.set_blocking(self.proc.stderr.fileno(), False)
            return sanitize(self.proc.stderr.read(4096).decode(errors="replace") or "", 300)
        except (OSError, TypeError, AttributeError):
            return ""

    def kill(self):
        """Kill the student's process and everything it started; wait until none is left."""
        if self.worker_h is not None:
            sandbox.close_pidfd(self.worker_h)
            self.worker_h = None
        if self.proc is not None:
            sandbox.kill_tree(self.proc.pid, include_root=True)
            sandbox.kill_tree(os.getpid(), keep=set())
            if self.cgroup is not None:
                self.cgroup.kill()
            try:
                self.proc.stderr.close()
            except OSError:
                pass
        if self.chan is not None:
            self.chan.close()
        self.proc, self.chan = None, None
        if getattr(self, "workdir", None):
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def stop(self):
        """End the student's process: asked to exit (so its resource use is accounted), then killed with the rest."""
        if self.proc is not None and self.chan is not None:
            self.sweep()
            try:
                self.chan.send({"op": "exit"}, time.monotonic() + 2.0)
                self.proc.wait(timeout=2)
            except Exception:
                pass
        self.kill()
        if self.cgroup is not None:
            self.cgroup.remove()
        if self.identity is not None:
            self.identity.release()
        shutil.rmtree(self.runtime, ignore_errors=True)

    def sweep(self):
        """Kill every process in the student's sandbox but the worker (and bwrap's own)."""
        sandbox.kill_tree(self.tree_root, keep=self.keep)

    def worker_alive(self) -> bool:
        return self.proc is not None and sandbox.pidfd_alive(self.worker_h)

    def restart(self, reason: str):
        """A new sandbox, with the cells that had finished replayed; at most `restarts` times per submission."""
        while True:
            self.kill()
            if self.restarts >= self.max_restarts:
                self.exhausted = (f"the student's process was restarted {self.restarts} times, the limit "
                                  f"(last: {reason})")
                raise SandboxFailure(self.exhausted)
            self.restarts += 1
            self.log(f"restart {self.restarts}: {reason}")
            try:
                self.start()
                for k, (index, code) in enumerate(list(self.history)):
                    status, err = self._run(code)
                    if status == "lost":
                        self.history.remove((index, code))
                        reason = f"cell {index} failed when replayed: {err}"
                        raise _Replay()
                    if status == "timeout":
                        self.history.remove((index, code))
                return
            except _Replay:
                continue
            except SandboxFailure as exc:
                reason = str(exc)
                continue

    # -- cells
    def _run(self, code: str) -> tuple[str, str]:
        """-> ("ok" | "error" | "timeout" | "lost", message). "lost": the worker must be restarted."""
        deadline = self.until(self.timeout)
        try:
            rid = self.chan.send({"op": "run", "code": code}, deadline)
            msg = self.chan.receive(rid, deadline)
        except wire.WireTimeout:
            if self.left() <= 0:
                raise BudgetExhausted(f"the submission's time budget ({self.job['budget']:g} s) ran out")
            try:  # an interrupt stops most loops; the cell's partial effects stay, as in Jupyter
                if self.worker_h is None or not sandbox.send_signal(self.worker_h, signal.SIGINT):
                    raise OSError("the student's process is gone")
                msg = self.chan.receive(rid, min(time.monotonic() + 5.0, self.deadline + 5.0))
                return "timeout", f"timed out after {self.timeout:g} s"
            except (wire.WireTimeout, EOFError, wire.WireError, OSError):
                return "lost", f"timed out after {self.timeout:g} s and did not stop when interrupted"
        except EOFError:
            return "lost", "the student's process died (did the cell exit Python, crash it or kill it?)"
        except (wire.WireError, OSError) as exc:
            return "lost", f"the student's process sent garbage ({sanitize(str(exc))})"
        if msg.get("ok") is True:
            return "ok", ""
        return "error", sanitize(msg.get("error", "") if isinstance(msg.get("error"), str) else "error")

    def run_cell(self, index: int, code: str) -> tuple[str, str]:
        if self.exhausted:
            return "skipped", self.exhausted
        status, err = self._run(code)
        if status in ("ok", "error"):
            self.history.append((index, code))
        elif status == "lost":
            try:
                self.restart(f"cell {index}: {err}")
            except SandboxFailure:
                pass
        return status, err

    # -- tests
    def begin_test(self, deadline: float) -> "Link":
        if self.exhausted:
            raise SandboxFailure(self.exhausted)
        if not self.worker_alive():
            self.restart("the student's process had died")
        self.sweep()
        try:
            rid = self.chan.send({"op": "fork"}, min(deadline, time.monotonic() + 20))
            msg = self.chan.receive(rid, min(deadline, time.monotonic() + 20))
            if not isinstance(msg.get("pid"), int):
                raise wire.WireError("no child")
        except (wire.WireTimeout, EOFError, wire.WireError, OSError) as exc:
            try:
                self.restart(f"could not start a test: {sanitize(str(exc))}")
            except SandboxFailure:
                pass
            raise SandboxFailure(f"the student's process could not start the test ({sanitize(str(exc))})")
        return Link(self.chan, deadline)

    def end_test(self):
        if self.proc is None:
            return
        self.sweep()
        try:
            self.chan.drain()
            deadline = time.monotonic() + 10.0
            rid = self.chan.send({"op": "resume"}, deadline)
            self.chan.receive(rid, deadline)
            if not self.worker_alive():
                raise EOFError("worker gone")
        except (wire.WireTimeout, EOFError, wire.WireError, OSError) as exc:
            try:
                self.restart(f"after a test: {sanitize(str(exc)) or type(exc).__name__}")
            except (SandboxFailure, BudgetExhausted):
                pass


class _Replay(Exception):
    pass


class Link:
    """The test's line to the child forked for it."""

    def __init__(self, chan: Channel, deadline: float):
        self.chan, self.deadline, self.broken = chan, deadline, ""

    def ask(self, obj: dict) -> dict:
        if self.broken:
            raise SandboxFailure(self.broken)
        try:
            rid = self.chan.send(obj, self.deadline)
            return self.chan.receive(rid, self.deadline)
        except wire.WireTimeout:
            self.broken = "the student's code did not answer in time"
        except EOFError:
            self.broken = "the student's process died during the test"
        except (wire.WireError, OSError) as exc:
            self.broken = f"the student's process sent no valid data ({sanitize(str(exc))})"
        raise SandboxFailure(self.broken)

    def describe(self, names: list[str]) -> dict:
        msg = self.ask({"op": "describe", "names": names})
        kinds = msg.get("kinds")
        if not isinstance(kinds, dict):
            self.broken = "the student's process answered nonsense"
            raise SandboxFailure(self.broken)
        return kinds


class StudentFunction:
    """Stands for a function of the student's in a test: called with data, returns data (or raises)."""

    __slots__ = ("_name", "_link")

    def __init__(self, name: str, link: Link):
        self._name, self._link = name, link

    def __repr__(self):
        return f"<the student's {self._name}>"

    def __call__(self, *args, **kwargs):
        try:
            wire.encode([list(args), kwargs], self._link.chan.limit)
        except wire.NotData as exc:
            raise TypeError(f"the test passes {exc} to {self._name}: tests may pass only data (tensors, arrays, "
                            "numbers, str, bool, None, lists/tuples/dicts of these)") from None
        if not all(isinstance(k, str) for k in kwargs):
            raise TypeError("keyword names must be strings")
        msg = self._link.ask({"op": "call", "name": self._name, "args": list(args), "kwargs": kwargs})
        if msg.get("ok") is True and "value" in msg:
            return msg["value"]
        etype = msg.get("etype") if isinstance(msg.get("etype"), str) else "Exception"
        etype = etype if etype.isidentifier() and len(etype) <= 60 else "Exception"
        text = sanitize(msg.get("msg", "") if isinstance(msg.get("msg"), str) else "", 160)
        if etype == "NotData":
            raise TypeError(f"{self._name} {text} (tests read only tensors, arrays, numbers, str, bool, None "
                            "and lists/tuples/dicts of these)")
        if etype == "TooLarge":
            raise ValueError(f"{self._name} {text}")
        cls = _SAFE_EXCEPTIONS.get(etype, StudentCodeError)
        where = f"raised in your {self._name}" if cls is not StudentCodeError else f"{etype} raised in your {self._name}"
        exc = cls(f"{where}: {text}" if text else where)
        exc._from_student = True
        raise exc


# ------------------------------------------------------------------------------------------------ the job
def _alarm(seconds: float):
    def handler(signum, frame):
        raise TestTimeout()
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))


def _cancel_alarm():
    signal.setitimer(signal.ITIMER_REAL, 0)


def main() -> int:
    """Serve: read the master's part of the job (a line of JSON), run its setup cells once, then for each line that
    follows (a submission) fork a child that grades it, and answer ``end`` when that child has finished."""
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    os.close(null)
    sys.stdout = open(os.devnull, "w")  # what the tests print goes nowhere
    master = json.loads(sys.stdin.readline())
    _limit_memory(master.get("trusted_memory"))
    sandbox.set_subreaper()

    def stop(signum, frame):  # the grader's command died or was interrupted: clean up and go
        raise SystemExit(1)
    signal.signal(signal.SIGTERM, stop)
    sandbox.die_with_parent(signal.SIGTERM)

    def emit(**event):
        out.write(json.dumps(event) + "\n")

    t0 = time.monotonic()
    shell, base_ns, setup_error = _prepare(master)
    emit(event="ready", seconds=round(time.monotonic() - t0, 3))
    while True:
        line = sys.stdin.readline()
        if not line:
            return 0
        try:
            job = dict(master, **json.loads(line))
        except ValueError:
            return 1
        pid = os.fork()
        if pid == 0:
            rc = 1
            try:
                signal.signal(signal.SIGTERM, stop)
                sandbox.set_subreaper()
                sandbox.die_with_parent(signal.SIGTERM)
                rc = _one(job, emit, shell, base_ns, setup_error)
            except BaseException:
                pass
            finally:
                try:
                    out.flush()
                finally:
                    os._exit(rc)
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                status = 0
                break
        sandbox.kill_tree(os.getpid())
        sandbox.reap()
        emit(event="end", status=status)


def _limit_memory(nbytes) -> None:
    """The trusted process's own address-space limit: what a student's data makes it allocate is bounded."""
    if isinstance(nbytes, int) and nbytes > 0:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or nbytes < hard:
            resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))


def _prepare(master):
    """The trusted IPython shell with the master's setup cells run: (shell, its namespace, the setup's error)."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    cfg = Config()
    cfg.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=cfg)
    setup_error = ""
    for src in master["setup"]:
        res = shell.run_cell(src, store_history=False)
        err = res.error_before_exec or res.error_in_exec
        if err is not None:
            setup_error = f"the master's setup cells failed in the grader: {describe_error(err)}"
            break
    return shell, dict(shell.user_ns), setup_error


def _one(job, emit, shell, base_ns, setup_error) -> int:
    """Grade one submission (in a child of the serving process)."""
    def log(text):
        if job.get("verbose"):
            emit(event="log", text=text)

    started = time.monotonic()
    student = None
    try:
        student = Student(job, log)
        return _grade(job, student, emit, log, started, shell, base_ns, setup_error)
    except sandbox.SandboxUnavailable as exc:
        emit(event="fatal", error=str(exc))
        return 1
    finally:
        if student is not None:
            student.stop()
        sandbox.kill_tree(os.getpid())
        sandbox.reap()
        import resource

        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        emit(event="cpu", trusted=round(own.ru_utime + own.ru_stime, 2),
             student=round(kids.ru_utime + kids.ru_stime, 2))


def _grade(job, student: Student, emit, log, started, shell, base_ns, setup_error) -> int:
    try:
        student.start()
    except (SandboxFailure, BudgetExhausted) as exc:
        emit(event="fatal", error=str(exc))
        return 1
    log(f"sandbox: {job['sandbox']}, started in {time.monotonic() - started:.1f} s")

    tests = {t["grade_id"]: t for t in job["tests"]}
    owner = {aid: t["grade_id"] for t in job["tests"] for aid in t["answer_ids"]}
    hints: dict[str, str] = {}
    done: set[str] = set()

    def run_test(gid: str):
        t0 = time.monotonic()
        done.add(gid)
        error = ""
        try:
            if setup_error:
                raise RuntimeError(setup_error)
            code = shell.transform_cell(tests[gid]["source"])
            names = free_names(code, base_ns)
            deadline = student.until(student.timeout)
            link = student.begin_test(deadline)
        except (SandboxFailure, BudgetExhausted, RuntimeError, SyntaxError) as exc:
            error = str(exc) if not isinstance(exc, SyntaxError) else f"the master's test does not parse: {exc}"
            link = None
        if link is not None:
            try:
                ns = dict(base_ns)
                kinds = link.describe(names) if names else {}
                for name in names:
                    kind = kinds.get(name)
                    if not isinstance(kind, list) or not kind or kind[0] == "missing":
                        continue
                    if kind[0] == "data" and len(kind) == 2:
                        ns[name] = kind[1]
                    elif kind[0] == "callable":
                        ns[name] = StudentFunction(name, link)
                    elif kind[0] == "module" and len(kind) == 2 and trusted_module(kind[1]) is not None:
                        ns[name] = trusted_module(kind[1])  # the grader's own copy: `import torch` in an answer cell
                    else:
                        what = sanitize(kind[1] if len(kind) > 1 and isinstance(kind[1], str) else "an object", 80)
                        raise TypeError(f"your {name} is {what}, neither data nor a function (tests read tensors, "
                                        "arrays, numbers, str, bool, None, lists/tuples/dicts of these, and call "
                                        "functions)")
                compiled = compile(code, f"<test {gid}>", "exec")
                _alarm(deadline - time.monotonic())
                try:
                    exec(compiled, ns)
                finally:
                    _cancel_alarm()
                if link.broken:
                    error = link.broken
            except TestTimeout:
                error = f"timed out after {student.timeout:g} s"
            except SandboxFailure as exc:
                error = str(exc)
            except BaseException as exc:  # the test failed (or the student's function raised)
                if isinstance(exc, NameError) and not getattr(exc, "_from_student", False) \
                        and getattr(exc, "name", None) not in names:
                    error = "NameError: the master's test uses a name that is not defined"  # no hidden identifiers
                else:
                    error = link.broken or describe_error(exc)
            finally:
                _cancel_alarm()
                student.end_test()
        passed = not error
        if not passed and gid in hints:
            error = f"{error} ({hints[gid]})"
        secs = time.monotonic() - t0
        log(f"  test {gid}: {'passed' if passed else 'failed: ' + error} ({secs:.1f} s)")
        emit(event="result", grade_id=gid, passed=passed, error=sanitize(error, 400), seconds=round(secs, 3))

    budget_note = ""
    for cell in job["cells"]:
        gid = cell.get("grade_id")
        gid = gid if isinstance(gid, str) else None
        if gid in tests:
            if gid not in done:
                run_test(gid)
            continue
        if budget_note:
            continue
        t0 = time.monotonic()
        try:
            status, err = student.run_cell(cell["index"], cell["source"])
        except BudgetExhausted as exc:
            budget_note = str(exc)
            student.exhausted = budget_note
            continue
        log(f"  cell {cell['index']}{f' ({gid})' if gid else ''}: {status}{': ' + err if err else ''} "
            f"({time.monotonic() - t0:.1f} s)")
        if status != "ok" and gid in owner and owner[gid] not in hints:
            hints[owner[gid]] = f"your answer cell {gid!r}: {err}"
    for t in job["tests"]:  # test cells the student deleted still run, at the end
        if t["grade_id"] not in done:
            run_test(t["grade_id"])
    emit(event="done", sandbox=job["sandbox"], restarts=student.restarts,
         seconds=round(time.monotonic() - started, 3), notes=student.notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
