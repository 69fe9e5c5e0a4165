"""The student's process: started in a bubblewrap sandbox (or, with --no-sandbox, as a plain limited process).

With bubblewrap (Debian's ``bubblewrap`` package, detected at run time) the student's code gets:

- a fresh, size-limited tmpfs as its home and working folder, holding only a copy of the submission;
  tmpfs /tmp and /dev/shm, also size-limited; nothing else writable;
- read-only: the system's /usr (and /lib*, /bin links), the Python installation, the virtual environment's
  site-packages and the course library gvlib; NOT the masters, the grader (coursekit), the repository, the
  submissions folder, the report's folder or the current folder (a protected path that lies under a bound
  system folder is hidden under an empty tmpfs);
- its own PID, network (none: no interfaces), IPC, UTS and cgroup namespaces, a new session (no terminal),
  death with the grader; when the grader runs as root, the student's code drops to user nobody;
- resource limits: address space, CPU seconds, file size, open files, no core dumps, and a process count
  (counted per user: it bounds forks when the student's code runs as nobody, or as a non-root grader's user);
- an allow-listed environment (PYTHONSAFEPATH=1, one thread per library, no variable of the grader's besides
  GVLIB_*, OMP/MKL settings and locale), stdin, stdout and stderr on /dev/null.

Without bubblewrap (``--no-sandbox``) the same limits (but the process count, as root), environment, fresh
working copy and final kill (the trusted process is a subreaper) apply, but the student's code runs as the
grader's user in the host's file system and network: it can read whatever that user can (masters included),
reach the network, and kill, trace or write into the grader's processes. Verdicts stay out of reach of
anything done inside Python (tests run in the trusted process, on data only), not of an attack on the
trusted process itself through the operating system.
"""
from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Limits", "SandboxUnavailable", "bwrap_problem", "launch", "proc_table", "descendants",
           "kill_tree", "ns_pid", "set_subreaper"]

STUDENT_HOME = "/home/student"
RUNTIME = "/run/coursekit"
NOBODY = (65534, 65534)
ENV_PASS_PREFIXES = ("GVLIB_", "OMP_", "MKL_", "OPENBLAS_", "MALLOC_")
ENV_PASS = ("ATEN_CPU_CAPABILITY", "LANG", "LC_ALL", "TZ")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here."""


@dataclass
class Limits:
    memory: int = 4 * 1024 ** 3        # bytes of address space per process
    cpu_seconds: int = 900             # CPU seconds per process
    file_size: int = 256 * 1024 ** 2   # bytes per file written
    open_files: int = 512
    processes: int = 128               # processes (and threads) beyond those the user already runs
    tmpfs: int = 256 * 1024 ** 2       # bytes of each tmpfs (home, /tmp, /dev/shm)
    data: int = 64 * 1024 ** 2         # bytes of one message across the boundary


_bwrap_checked: dict = {}


def bwrap_problem() -> str | None:
    """None when bubblewrap works here, else why not (checked once per process)."""
    if "result" in _bwrap_checked:
        return _bwrap_checked["result"]
    exe = shutil.which("bwrap")
    if not exe:
        result = "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    else:
        args = [exe, "--unshare-pid", "--unshare-net", "--die-with-parent", "--ro-bind", "/", "/",
                "--proc", "/proc", "--dev", "/dev"]
        if os.getuid() != 0:
            args.insert(1, "--unshare-user")
        try:
            r = subprocess.run(args + ["true"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=30)
            result = None if r.returncode == 0 else \
                f"bwrap cannot create namespaces here: {r.stderr.decode(errors='replace').strip()[:200]}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            result = f"bwrap failed to run: {exc}"
    _bwrap_checked["result"] = result
    return result


# ------------------------------------------------------------------------------------------------ processes
def proc_table() -> dict[int, int]:
    """{pid: parent pid} of every process the host's /proc shows."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            table[int(name)] = int(stat[stat.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return table


def descendants(root: int, table: dict[int, int] | None = None) -> set[int]:
    table = proc_table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, ppid in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = set(), [root]
    while todo:
        for c in children.get(todo.pop(), ()):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def ns_pid(pid: int) -> int | None:
    """The process's id in its innermost PID namespace (the last NSpid field)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _open_if_ours(pid: int, family: set[int]):
    """A pidfd for `pid` if, once opened, it is still a child of a process in `family` (so a recycled pid of a
    stranger is never signalled); None otherwise. Without pidfds (old kernels), the pid itself."""
    try:
        fd = os.pidfd_open(pid)
    except AttributeError:
        return pid if _ppid(pid) in family else None
    except OSError:
        return None
    if _ppid(pid) in family:
        return fd
    os.close(fd)
    return None


def _signal(handle, sig):
    try:
        if hasattr(os, "pidfd_open"):
            signal.pidfd_send_signal(handle, sig)
        else:
            os.kill(handle, sig)
    except (ProcessLookupError, OSError):
        pass


def kill_tree(root: int, keep: set[int] = frozenset(), include_root: bool = False, rounds: int = 50) -> int:
    """SIGKILL every descendant of `root` not in `keep` (and root itself if asked: it must be our unreaped child),
    until none is left; -> how many. Each is stopped first (a stopped process cannot fork while we kill)."""
    killed = 0
    for _ in range(rounds):
        table = proc_table()
        tree = descendants(root, table)
        victims = [p for p in tree - set(keep) if _alive(p)]
        handles = []
        if include_root and root not in keep and _alive(root):
            h = _open_if_ours(root, {os.getpid()})  # only while it is still our own (unreaped) child
            if h is not None:
                handles.append(h)
        family = tree | {root}
        handles += [h for h in (_open_if_ours(p, family) for p in victims) if h is not None]
        if not handles:
            return killed
        for h in handles:
            _signal(h, signal.SIGSTOP)
        for h in handles:
            _signal(h, signal.SIGKILL)
            killed += 1
            if hasattr(os, "pidfd_open"):
                os.close(h)
        reap()
        time.sleep(0.005)
    return killed


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] != b"Z"
    except OSError:
        return False


def reap() -> list[int]:
    """Collect exited children (and orphans handed to this subreaper); -> their pids."""
    done = []
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done.append(pid)


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(1, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def set_subreaper() -> bool:
    """Make orphaned descendants of this process its children (Linux), so that none escapes the final kill."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _tasks_of_uid(uid: int) -> int:
    n = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    n += len(os.listdir(f"/proc/{name}/task"))
            except OSError:
                pass
    return n


# ------------------------------------------------------------------------------------------------ launching
def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PASS_PREFIXES) or k in ENV_PASS}
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    env.setdefault("LANG", "C.UTF-8")
    env.update(PATH="/usr/local/bin:/usr/bin:/bin", PYTHONSAFEPATH="1", PYTHONDONTWRITEBYTECODE="1",
               PYTHONNOUSERSITE="1", MPLBACKEND="Agg", GVLIB_QUIET="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    env.update(extra)
    return env


def _is_under(path: str, root: str) -> bool:
    path, root = os.path.normpath(path), os.path.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def _python_paths() -> list[str]:
    """What the interpreter needs: its installation, the virtual environment, sys.path's folders and zips."""
    paths = []
    for p in (sys.base_prefix, sys.prefix, sys.exec_prefix, sys.base_exec_prefix,
              os.path.dirname(os.path.realpath(sys.executable))):
        paths += [p, os.path.realpath(p)]
    paths += [p for p in sys.path if p and os.path.isabs(p)]
    out = []
    for p in paths:
        if os.path.exists(p) and p not in out:
            out.append(p)
    return out


def _package_dirs(names=("gvlib",)) -> list[str]:
    import importlib.util

    out = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec and spec.submodule_search_locations:
            out += [os.path.realpath(p) for p in spec.submodule_search_locations]
        elif spec and spec.origin:
            out.append(os.path.realpath(spec.origin))
    return out


@dataclass
class Plan:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    pass_fds: tuple[int, ...]
    preexec: object
    notes: list[str] = field(default_factory=list)


def _preexec(limits: Limits, processes: int | None):
    def apply():
        os.setsid()
        die_with_parent()
        for res, value in ((resource.RLIMIT_AS, limits.memory), (resource.RLIMIT_FSIZE, limits.file_size),
                           (resource.RLIMIT_NOFILE, limits.open_files), (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(res, (value, value))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
        if processes is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
    return apply


def plan_bwrap(worker_dir: str, submission_fd: int, submission_name: str, fds: tuple[int, int],
               protected: list[str], limits: Limits, extra_ro: list[str] = ()) -> Plan:
    """The bwrap command line that runs the worker in `worker_dir` (bound read-only at /run/coursekit)."""
    exe = shutil.which("bwrap")
    root = os.getuid() == 0
    notes = []
    protected = [os.path.realpath(p) for p in protected]
    args = [exe, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if not root:
        args.insert(1, "--unshare-user")
    bound: list[str] = []
    created: set[str] = set()

    def covered(p):
        return any(_is_under(p, b) for b in bound)

    def parents(dest):
        out = []
        parts = Path(dest).parts
        for i in range(2, len(parts)):
            d = str(Path(*parts[:i]))
            if d not in created and not covered(d):
                out += ["--perms", "0755", "--dir", d]
                created.add(d)
        return out

    def bind(src, dest=None, check=True):
        dest = dest or src
        if check and any(_is_under(p, src) for p in protected):
            notes.append(f"not bound (it contains a protected folder): {src}")
            return []
        if covered(dest):
            return []
        bound.append(dest)
        return parents(dest) + ["--ro-bind", src, dest]

    system = []
    for d in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(d):
            system += ["--symlink", os.readlink(d), d]
            bound.append(d)
        elif os.path.isdir(d):
            system += ["--ro-bind", d, d]
            bound.append(d)
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/alternatives"):
        if os.path.exists(f):
            system += parents(f) + ["--ro-bind", f, f]
            bound.append(f)
    args += system
    for p in sorted(_python_paths(), key=len):
        args += bind(p)
    # a protected folder under a bound system folder (e.g. a course kept under /usr/local) is hidden
    for p in protected:
        if covered(p) and os.path.isdir(p):
            args += ["--tmpfs", p]
    for p in _package_dirs() + [os.path.realpath(x) for x in extra_ro if os.path.exists(x)]:
        if any(_is_under(q, p) for q in protected):
            notes.append(f"not bound (it contains a protected folder): {p}")
            continue
        if covered(p) and not any(_is_under(p, q) for q in protected):
            continue  # already visible
        bound.append(p)
        args += parents(p) + ["--ro-bind", p, p]
    args += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(limits.tmpfs), "--tmpfs", "/dev/shm",
             "--perms", "1777", "--size", str(limits.tmpfs), "--tmpfs", "/tmp",
             "--perms", "0755", "--dir", "/run", "--ro-bind", worker_dir, RUNTIME,
             "--perms", "0755", "--dir", "/home",
             "--perms", "0777", "--size", str(limits.tmpfs), "--tmpfs", STUDENT_HOME,
             "--perms", "0644", "--file", str(submission_fd), f"{STUDENT_HOME}/{submission_name}",
             "--chdir", STUDENT_HOME, "--clearenv"]
    env = _env({"HOME": STUDENT_HOME, "TMPDIR": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib",
                "IPYTHONDIR": "/tmp/ipython"})
    for k, v in env.items():
        args += ["--setenv", k, v]
    drop = f"{NOBODY[0]}:{NOBODY[1]}" if root else "-"
    args += ["--", sys.executable, "-I", f"{RUNTIME}/worker.py", str(fds[0]), str(fds[1]),
             f"{RUNTIME}/wire.py", drop, str(limits.data)]
    processes = limits.processes if root else _tasks_of_uid(os.getuid()) + limits.processes
    return Plan(args, {}, "/", (submission_fd,) + tuple(fds), _preexec(limits, processes), notes)


def plan_plain(worker_dir: str, workdir: str, fds: tuple[int, int], limits: Limits) -> Plan:
    """--no-sandbox: the worker as a plain process in `workdir` (a fresh copy), with the limits and environment."""
    env = _env({"HOME": workdir, "TMPDIR": workdir, "MPLCONFIGDIR": os.path.join(workdir, ".matplotlib"),
                "IPYTHONDIR": os.path.join(workdir, ".ipython")})
    argv = [sys.executable, "-I", os.path.join(worker_dir, "worker.py"), str(fds[0]), str(fds[1]),
            os.path.join(worker_dir, "wire.py"), "-", str(limits.data)]
    processes = None if os.getuid() == 0 else _tasks_of_uid(os.getuid()) + limits.processes
    return Plan(argv, env, workdir, tuple(fds), _preexec(limits, processes),
                ["no sandbox: the student's code can read your files and reach the network"])


def launch(plan: Plan) -> subprocess.Popen:
    return subprocess.Popen(plan.argv, env=plan.env, cwd=plan.cwd, pass_fds=plan.pass_fds,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=plan.preexec, close_fds=True)
