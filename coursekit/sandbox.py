"""The student's process: started in a bubblewrap sandbox (or, with --no-sandbox, as a plain limited process).

With bubblewrap (Debian's ``bubblewrap`` package, detected at run time) the student's code gets:

- a fresh, size-limited tmpfs as its home and working folder, holding only a copy of the submission;
  tmpfs /tmp and /dev/shm, also size-limited; nothing else writable;
- read-only: the system's /usr (and /lib*, /bin links), the Python installation, the virtual environment's
  site-packages and the course library gvlib; NOT the masters, the grader (coursekit), the repository, the
  submissions folder, the report's folder or the current folder (a protected path that lies under a bound
  system folder is hidden under an empty tmpfs);
- its own PID, network (none: no interfaces), IPC, UTS and cgroup namespaces, a new session (no terminal),
  death with the grader;
- its own identity: when the grader runs as root, each sandbox gets a host user id of its own (one of a
  reserved range, COURSEKIT_UID_BASE + 0..4095, claimed with a lock file and skipped while any process runs as
  it, see `claim_identity`): bubblewrap sets the sandbox up as root and the student's process drops to that
  user before it reads anything of the student's. Sandboxes graded at the same time therefore never share a
  user: one cannot signal or trace another, and the per-user process limit (RLIMIT_NPROC) counts one sandbox
  only. (bubblewrap's --unshare-user as root would map the student's uid to host root, so as root the identity
  is a plain host uid, not a user namespace.) As a non-root user, bubblewrap runs in a user namespace as that
  user, and the process limit counts every process of that user (the fallback, said in the report's notes);
- its own control group where the system lets the grader make one (cgroup v2, or v1's pids and memory
  hierarchies, as root): pids.max bounds the processes of the whole sandbox and memory.max (v1:
  memory.limit_in_bytes) the memory of the whole sandbox, tmpfs included; where none can be made, the
  fallback is the per-user process limit and the per-process address-space limit (said in the report);
- resource limits: address space, CPU seconds, file size, open files, no core dumps, and a process count;
- an allow-listed environment (PYTHONSAFEPATH=1, one thread per library, no variable of the grader's besides
  GVLIB_*, OMP/MKL settings and locale), stdin, stdout and stderr on /dev/null.

Every signal to a sandboxed process goes through a pidfd opened while the process is known to be ours (a
child of our tree), never through a bare pid that could have been recycled.

Without bubblewrap (``--no-sandbox``) the same limits (but the process count, as root), environment, fresh
working copy and final kill (the trusted process is a subreaper) apply, but the student's code runs as the
grader's user in the host's file system and network: it can read whatever that user can (masters included),
reach the network, and kill, trace or write into the grader's processes. Verdicts stay out of reach of
anything done inside Python (tests run in the trusted process, on data only), not of an attack on the
trusted process itself through the operating system.
"""
from __future__ import annotations

import errno
import fcntl
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

try:  # imported now: a child that has dropped to a sandbox's user may no longer read the standard library
    import ctypes
except ImportError:  # pragma: no cover
    ctypes = None

__all__ = ["Limits", "SandboxUnavailable", "bwrap_problem", "launch", "proc_table", "descendants",
           "kill_tree", "ns_pid", "set_subreaper", "Identity", "claim_identity", "Cgroup", "make_cgroup",
           "open_pidfd", "send_signal"]

STUDENT_HOME = "/home/student"
RUNTIME = "/run/coursekit"
NOBODY = (65534, 65534)
UID_BASE = int(os.environ.get("COURSEKIT_UID_BASE", "1800000000"))   # host uids reserved for sandboxes (root only)
UID_SLOTS = 4096
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
    send_signal(handle, sig)


def open_pidfd(pid: int, family: set[int] | None = None):
    """A handle to signal `pid` with: a pidfd (so a pid recycled later is never hit), opened only while `pid`
    is a child of a process in `family` when one is given; None if it is gone (or not ours). Without pidfds
    (Linux < 5.3, Python < 3.9) the pid itself."""
    if family is not None:
        return _open_if_ours(pid, family)
    try:
        return os.pidfd_open(pid)
    except AttributeError:
        return pid if _alive(pid) else None
    except OSError:
        return None


def send_signal(handle, sig) -> bool:
    """Send `sig` through a handle from open_pidfd; False if the process is gone."""
    try:
        if hasattr(os, "pidfd_open"):
            signal.pidfd_send_signal(handle, sig)
        else:
            os.kill(handle, sig)
        return True
    except (ProcessLookupError, OSError):
        return False


def pidfd_alive(handle) -> bool:
    """Whether the process behind a handle from open_pidfd still runs (a pidfd turns readable when it exits)."""
    if handle is None:
        return False
    if not hasattr(os, "pidfd_open"):
        return _alive(handle)
    import select

    poller = select.poll()
    poller.register(handle, select.POLLIN)
    return not poller.poll(0)


def close_pidfd(handle) -> None:
    if hasattr(os, "pidfd_open") and handle is not None:
        try:
            os.close(handle)
        except OSError:
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
        return ctypes.CDLL(None, use_errno=True).prctl(1, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def set_subreaper() -> bool:
    """Make orphaned descendants of this process its children (Linux), so that none escapes the final kill."""
    try:
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


# ------------------------------------------------------------------------------------------------ identities
@dataclass
class Identity:
    """A host user id that one sandbox holds alone while `lock` (a flock'ed file) is open."""

    uid: int
    lock: int | None = None

    def release(self):
        if self.lock is not None:
            try:
                os.close(self.lock)
            except OSError:
                pass
            self.lock = None


def _lock_dir() -> str:
    """A folder of ours for the identity locks: /run/coursekit-ids as root, else one in the temp folder."""
    import tempfile

    for base in (("/run",) if os.getuid() == 0 else ()) + (tempfile.gettempdir(),):
        path = os.path.join(base, f"coursekit-ids-{os.getuid()}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            continue
        st = os.lstat(path)
        import stat as _stat

        if _stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022:
            return path
    raise SandboxUnavailable("no private folder for the sandboxes' identity locks")


def _uid_in_use(uid: int) -> bool:
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    return True
            except OSError:
                pass
    return False


def claim_identity() -> Identity | None:
    """As root: a host uid that no other sandbox (of this or another grader process) holds, and that no process
    runs as; None when not root (the sandbox then runs as the grader's own user)."""
    if os.getuid() != 0:
        return None
    folder = _lock_dir()
    slots = list(range(UID_SLOTS))
    random.shuffle(slots)
    for slot in slots:
        fd = os.open(os.path.join(folder, str(slot)), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        uid = UID_BASE + slot
        if _uid_in_use(uid):  # a leftover of a grader that was killed: not ours to reuse
            os.close(fd)
            continue
        return Identity(uid, fd)
    raise SandboxUnavailable(f"all {UID_SLOTS} sandbox identities are in use")


# ------------------------------------------------------------------------------------------------ control groups
CGROUP_ROOT = "/sys/fs/cgroup"


def _own_cgroups() -> dict[str, str]:
    """{controller or "": path} of this process (v1 lines name their controllers, the v2 line has "")."""
    out = {}
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                for c in (ctrls.split(",") if ctrls else [""]):
                    out[c] = path
    except (OSError, ValueError):
        pass
    return out


def _v1_mount(controller: str) -> str | None:
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 4 and parts[2] == "cgroup" and controller in parts[3].split(","):
                    return parts[1]
    except OSError:
        pass
    return None


def _write(path: str, value) -> None:
    with open(path, "w") as f:
        f.write(str(value))


@dataclass
class Cgroup:
    """The control group(s) of one sandbox: one folder in v2, one per controller in v1."""

    dirs: list[str]
    kind: str

    def join(self, pid: int) -> None:
        for d in self.dirs:
            _write(os.path.join(d, "cgroup.procs"), pid)

    def pids(self) -> set[int]:
        out = set()
        for d in self.dirs:
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    out |= {int(x) for x in f.read().split()}
            except (OSError, ValueError):
                pass
        return out

    def kill(self, rounds: int = 100) -> None:
        """SIGKILL every process in the group (through pidfds), until it is empty."""
        for _ in range(rounds):
            pids = self.pids()
            if not pids:
                return
            if self.kind == "v2":
                try:
                    _write(os.path.join(self.dirs[0], "cgroup.kill"), 1)
                except OSError:
                    pass
            for pid in pids:
                h = open_pidfd(pid)
                if h is not None:
                    send_signal(h, signal.SIGKILL)
                    close_pidfd(h)
            reap()
            time.sleep(0.005)

    def remove(self, wait: float = 10.0) -> None:
        """Kill what is left and remove the group (its last processes may take a moment to be reaped)."""
        self.kill()
        give_up = time.monotonic() + wait
        for d in self.dirs:
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > give_up:
                        break
                    self.kill(rounds=1)
                    time.sleep(0.02)


def _remove_stale_cgroups(parent: str) -> None:
    """Groups named coursekit-<pid>-* whose grader process is gone (killed before it could clean up)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        parts = name.split("-")
        if len(parts) == 3 and parts[0] == "coursekit" and parts[1].isdigit() and not _alive(int(parts[1])):
            try:
                os.rmdir(os.path.join(parent, name))
            except OSError:
                pass


def make_cgroup(name: str, processes: int, memory: int) -> tuple[Cgroup | None, str]:
    """A control group for one sandbox with pids.max = `processes` and a memory limit of `memory` bytes, under
    this process's own group; -> (the group or None, a note saying which kind, or why none)."""
    if os.environ.get("COURSEKIT_NO_CGROUP") == "1":
        return None, "no control group (COURSEKIT_NO_CGROUP=1): per-user process limit and per-process memory limit"
    own = _own_cgroups()
    why = []
    if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")) and "" in own:  # a pure v2 system
        base = os.path.join(CGROUP_ROOT, own[""].lstrip("/"))
        d = os.path.join(base, name)
        _remove_stale_cgroups(base)
        try:
            with open(os.path.join(base, "cgroup.subtree_control")) as f:
                enabled = f.read().split()
            if not {"pids", "memory"} <= set(enabled):
                _write(os.path.join(base, "cgroup.subtree_control"), "+pids +memory")
            os.mkdir(d, 0o755)
            try:
                _write(os.path.join(d, "pids.max"), processes)
                _write(os.path.join(d, "memory.max"), memory)
                try:
                    _write(os.path.join(d, "memory.swap.max"), 0)
                except OSError:
                    pass
            except OSError:
                os.rmdir(d)
                raise
            return Cgroup([d], "v2"), f"cgroup v2: pids.max {processes}, memory.max {memory / 2**30:.1f} GiB"
        except OSError as exc:
            why.append(f"cgroup v2 at {base}: {exc.strerror or exc}")
    dirs = []
    try:
        for ctrl, files in (("pids", (("pids.max", processes),)),
                            ("memory", (("memory.limit_in_bytes", memory), ("memory.memsw.limit_in_bytes", memory)))):
            mount = _v1_mount(ctrl)
            if mount is None or ctrl not in own:
                raise OSError(errno.ENOENT, f"no cgroup v1 {ctrl} hierarchy")
            d = os.path.join(mount, own[ctrl].lstrip("/"), name)
            _remove_stale_cgroups(os.path.dirname(d))
            os.mkdir(d, 0o755)
            dirs.append(d)
            for k, (fname, value) in enumerate(files):
                try:
                    _write(os.path.join(d, fname), value)
                except OSError:
                    if k == 0:
                        raise
        return Cgroup(dirs, "v1"), f"cgroup v1: pids.max {processes}, memory limit {memory / 2**30:.1f} GiB"
    except OSError as exc:
        for d in dirs:
            try:
                os.rmdir(d)
            except OSError:
                pass
        why.append(f"cgroup v1: {exc.strerror or exc}")
    return None, ("no control group (" + "; ".join(why) + "): per-user process limit and per-process memory limit")


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
    own_fds: list[int] = field(default_factory=list)   # opened for the plan: closed once launched


def _preexec(limits: Limits, processes: int | None, identity: Identity | None = None, cgroup: Cgroup | None = None):
    def apply():
        os.setsid()
        if cgroup is not None:
            cgroup.join(os.getpid())
        for res, value in ((resource.RLIMIT_AS, limits.memory), (resource.RLIMIT_FSIZE, limits.file_size),
                           (resource.RLIMIT_NOFILE, limits.open_files), (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(res, (value, value))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
        if processes is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
        if identity is not None:  # the sandbox's own host user; a credential change clears the death signal
            os.setgroups([])
            os.setgid(identity.uid)
            os.setuid(identity.uid)
        die_with_parent()
    return apply


def plan_bwrap(worker_dir: str, submission_fd: int, submission_name: str, fds: tuple[int, int],
               protected: list[str], limits: Limits, extra_ro: list[str] = (), identity: Identity | None = None,
               cgroup: Cgroup | None = None) -> Plan:
    """The bwrap command line that runs the worker in `worker_dir` (bound read-only at /run/coursekit).

    As root, bubblewrap sets the sandbox up and the worker drops to `identity`'s host uid (a user of its own) before
    it reads anything of the student's; as another user, bubblewrap runs in a user namespace as that user."""
    exe = shutil.which("bwrap")
    notes = []
    own_fds: list[int] = []
    protected = [os.path.realpath(p) for p in protected]
    root = os.getuid() == 0
    args = [exe, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if not root:
        args[1:1] = ["--unshare-user"]
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

    def by_fd(src, dest):
        return ["--ro-bind", src, dest]

    def bind(src, dest=None, check=True):
        dest = dest or src
        if check and any(_is_under(p, src) for p in protected):
            notes.append(f"not bound (it contains a protected folder): {src}")
            return []
        if covered(dest):
            return []
        bound.append(dest)
        return parents(dest) + by_fd(src, dest)

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
        args += parents(p) + by_fd(p, p)
    args += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(limits.tmpfs), "--tmpfs", "/dev/shm",
             "--perms", "1777", "--size", str(limits.tmpfs), "--tmpfs", "/tmp",
             "--perms", "0755", "--dir", "/run"] + by_fd(worker_dir, RUNTIME) + [
             "--perms", "0755", "--dir", "/home",
             "--perms", "0777", "--size", str(limits.tmpfs), "--tmpfs", STUDENT_HOME,
             "--perms", "0644", "--file", str(submission_fd), f"{STUDENT_HOME}/{submission_name}",
             "--chdir", STUDENT_HOME, "--clearenv"]
    env = _env({"HOME": STUDENT_HOME, "TMPDIR": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib",
                "IPYTHONDIR": "/tmp/ipython"})
    for k, v in env.items():
        args += ["--setenv", k, v]
    if identity is not None:  # a user of its own: the process count is this sandbox's alone
        drop = f"{identity.uid}:{identity.uid}"
        processes = limits.processes
    elif root:
        drop = f"{NOBODY[0]}:{NOBODY[1]}"
        processes = limits.processes
        notes.append("as user nobody, shared with other sandboxes: the process limit counts them all")
    else:
        drop = "-"
        processes = _tasks_of_uid(os.getuid()) + limits.processes
        notes.append("runs as the grader's own user (not root): the process limit counts all of that user's "
                     "processes, so sandboxes graded at the same time share it")
    args += ["--", sys.executable, "-I", f"{RUNTIME}/worker.py", str(fds[0]), str(fds[1]),
             f"{RUNTIME}/wire.py", drop, str(limits.data)]
    return Plan(args, {}, "/", (submission_fd,) + tuple(fds) + tuple(own_fds),
                _preexec(limits, processes, None, cgroup), notes, own_fds)


def plan_plain(worker_dir: str, workdir: str, fds: tuple[int, int], limits: Limits, cgroup: Cgroup | None = None) -> Plan:
    """--no-sandbox: the worker as a plain process in `workdir` (a fresh copy), with the limits and environment."""
    env = _env({"HOME": workdir, "TMPDIR": workdir, "MPLCONFIGDIR": os.path.join(workdir, ".matplotlib"),
                "IPYTHONDIR": os.path.join(workdir, ".ipython")})
    argv = [sys.executable, "-I", os.path.join(worker_dir, "worker.py"), str(fds[0]), str(fds[1]),
            os.path.join(worker_dir, "wire.py"), "-", str(limits.data)]
    processes = None if os.getuid() == 0 else _tasks_of_uid(os.getuid()) + limits.processes
    return Plan(argv, env, workdir, tuple(fds), _preexec(limits, processes, None, cgroup),
                ["no sandbox: the student's code can read your files and reach the network"])


def launch(plan: Plan) -> subprocess.Popen:
    try:
        return subprocess.Popen(plan.argv, env=plan.env, cwd=plan.cwd, pass_fds=plan.pass_fds,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                preexec_fn=plan.preexec, close_fds=True)
    finally:
        for fd in plan.own_fds:
            try:
                os.close(fd)
            except OSError:
                pass
