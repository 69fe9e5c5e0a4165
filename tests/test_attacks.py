"""A clever student against the grader: one submission per attack, each graded by the real command line.

Every attack asserts: 0 points for the attacked exercise unless it is genuinely right (and the other exercises'
true points); the grader finishes, exits 0 and writes a true JSON report as a regular file; no file outside the
report changed (the masters, the submission, the folder around them, a marker path on the host); no process
is left behind (this test process is a subreaper, so an orphan would come back to it); no hidden test text in
the report, stdout or stderr. Everything is bounded: a 2 GiB address-space limit, at most 200 processes,
timeouts of a few seconds.

Run by `make test-grader` (COURSEKIT_GRADER_SUITE=1), which CI runs with bubblewrap installed; without
bubblewrap only the --no-sandbox checks run (and fail in CI, where bubblewrap must be present).
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from coursekit import exercises as course
from coursekit import sandbox

pytestmark = pytest.mark.skipif(os.environ.get("COURSEKIT_GRADER_SUITE") != "1",
                                reason="the grader's attack suite runs under `make test-grader`")
HAVE_BWRAP = sandbox.bwrap_problem() is None
needs_bwrap = pytest.mark.skipif(not HAVE_BWRAP and os.environ.get("CI") != "true",
                                 reason=f"needs bubblewrap: {sandbox.bwrap_problem()}")
TOKEN = "zq7HIDDENk3"            # appears only in the masters' hidden tests (never in an assertion message)
MARKER = "ckattack-" + TOKEN[::-1]  # in the argv of every process an attack starts, and in host paths it aims at
TABLE: list[tuple] = []


def _cell(kind, source, **nbg):
    cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
    if nbg:
        cell.metadata["nbgrader"] = dict(nbg, schema_version=3, task=False, locked=nbg.get("grade", False) and not nbg.get("solution", False))
    return cell


def _answer(gid, source):
    return _cell("code", source, grade=False, grade_id=gid, solution=True)


def _test(gid, points, source):
    return _cell("code", source, grade=True, grade_id=gid, points=points, solution=False)


def _light_master():
    setup = nbformat.v4.new_code_cell("import math\n\ndef check(a, b):\n    assert abs(a - b) < 1e-9, 'not close enough'")
    setup.metadata["tags"] = ["setup"]
    return nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Attack target"), setup,
        _answer("square", "def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION"),
        _test("square_test", 2, "check(square(3), 9)\n### BEGIN HIDDEN TESTS\n"
              f"{TOKEN}_inputs = [(-1.5, 2.25), (4, 16), (0.1, 0.01)]\n"
              f"for a, b in {TOKEN}_inputs:\n    assert abs(square(a) - b) < 1e-9, 'square is wrong on a hidden input'\n"
              "### END HIDDEN TESTS"),
        _answer("hyp", "def hyp(a, b):\n    ### BEGIN SOLUTION\n    return math.sqrt(a * a + b * b)\n    ### END SOLUTION"),
        _test("hyp_test", 3, "check(hyp(3, 4), 5)\n### BEGIN HIDDEN TESTS\n"
              f"{TOKEN}_h = hyp(5, 12)\nassert abs({TOKEN}_h - 13) < 1e-9, 'hyp is wrong on a hidden input'\n"
              "### END HIDDEN TESTS"),
        _answer("mean", "def mean(xs):\n    ### BEGIN SOLUTION\n    return sum(xs) / len(xs)\n    ### END SOLUTION"),
        _test("mean_test", 1, "check(mean([1, 2, 3]), 2)\n### BEGIN HIDDEN TESTS\n"
              f"assert mean([0.5]) == 0.5, 'mean of one number'  # {TOKEN}\n### END HIDDEN TESTS"),
        _answer("answer", "### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION"),
        _test("answer_test", 1, "assert isinstance(answer, int), 'answer is an int'\n### BEGIN HIDDEN TESTS\n"
              f"assert answer == 42, 'the answer is wrong'  # {TOKEN}\n### END HIDDEN TESTS"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})


def _torch_master():
    setup = nbformat.v4.new_code_cell("import torch")
    setup.metadata["tags"] = ["setup"]
    return nbformat.v4.new_notebook(cells=[
        setup,
        _answer("kl", "def kl(mu, logvar):\n    ### BEGIN SOLUTION\n"
                "    return 0.5 * (logvar.exp() + mu ** 2 - 1 - logvar).sum(-1)\n    ### END SOLUTION"),
        _test("kl_test", 3, "from coursekit.testing import assert_close, generator\n"
              "mu, lv = torch.zeros(2, 3), torch.zeros(2, 3)\nassert_close(kl(mu, lv), torch.zeros(2), what='KL at the prior')\n"
              "### BEGIN HIDDEN TESTS\n"
              f"g_{TOKEN} = generator(5)\nmu = torch.randn(4, 3, generator=g_{TOKEN}, dtype=torch.float64)\n"
              "lv = torch.randn(4, 3, generator=g_" + TOKEN + ", dtype=torch.float64)\n"
              "ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, (0.5 * lv).exp()),\n"
              "                                        torch.distributions.Normal(0.0, 1.0)).sum(-1)\n"
              "out = kl(mu, lv)\nassert isinstance(out, torch.Tensor) and out.dtype == torch.float64, 'a float64 tensor'\n"
              "assert_close(out, ref, rtol=1e-9, what='KL')\n### END HIDDEN TESTS"),
        _answer("count", "def count_positive(x):\n    ### BEGIN SOLUTION\n    return int((x > 0).sum())\n    ### END SOLUTION"),
        _test("count_test", 1, "assert count_positive(torch.tensor([1.0, -1.0, 2.0])) == 2, 'two are positive'\n"
              f"### BEGIN HIDDEN TESTS\nassert count_positive(torch.zeros(5)) == 0, 'none'  # {TOKEN}\n### END HIDDEN TESTS"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})


LIGHT_FULL = {"square_test": 2, "hyp_test": 3, "mean_test": 1, "answer_test": 1}
LIGHT_GOOD = {"square": "def square(x):\n    return x ** 2", "hyp": "def hyp(a, b):\n    return math.hypot(a, b)",
              "mean": "def mean(xs):\n    return sum(xs) / len(xs)", "answer": "answer = 6 * 7"}
TORCH_FULL = {"kl_test": 3, "count_test": 1}
TORCH_GOOD = {"kl": "def kl(mu, logvar):\n    return -0.5 * (1 + logvar - mu * mu - torch.exp(logvar)).sum(dim=-1)",
              "count": "def count_positive(x):\n    return int(torch.count_nonzero(x > 0))"}


@pytest.fixture(scope="module")
def course_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    (root / "solutions").mkdir()
    nbformat.write(_light_master(), root / "solutions" / "91_attack.ipynb")
    nbformat.write(_torch_master(), root / "solutions" / "92_tattack.ipynb")
    course.build(root / "solutions", root / "exercises")
    (root / "out").mkdir()
    (root / "submissions").mkdir()
    (root / "elsewhere").mkdir()
    (root / "elsewhere" / "notes.txt").write_text("a file the student must not change")
    sandbox.set_subreaper()
    yield root
    if TABLE and os.environ.get("COURSEKIT_ATTACK_TABLE"):
        lines = ["| attack | points (attacked / total) | finished | exit | seconds |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {a} | {p} | {f} | {rc} | {s:.1f} |" for a, p, f, rc, s in TABLE]
        Path(os.environ["COURSEKIT_ATTACK_TABLE"]).write_text("\n".join(lines) + "\n")


def _snapshot(root: Path, skip: set[Path]) -> dict:
    out = {}
    for p in sorted(root.rglob("*")):
        if p in skip or p.name.startswith(".result.json."):
            continue
        st = os.lstat(p)
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else ""
        out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), st.st_size if stat.S_ISREG(st.st_mode) else 0, digest)
    return out


def _marked_processes() -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if MARKER.encode() in f.read():
                        found.append(int(name))
            except OSError:
                pass
    return found


@dataclass
class Outcome:
    scores: dict
    rc: int
    seconds: float
    payload: dict
    stdout: str
    stderr: str


def _attack(course_dir: Path, name: str, replace: dict, *, master="91_attack", extra=(), good=None, full=None,
            expect_changed=(), no_sandbox=False, json_path=None, timeout=5, folder="student",
            plant: dict | None = None, wait_after=0.0, env_extra: dict | None = None, memory="2",
            raw: str | None = None, solutions=True, cwd: Path | None = None, link_to: Path | None = None) -> Outcome:
    good = LIGHT_GOOD if master == "91_attack" else TORCH_GOOD
    full = LIGHT_FULL if master == "91_attack" else TORCH_FULL
    nb = nbformat.read(course_dir / "exercises" / f"{master}.ipynb", as_version=4)
    sources = dict(good, **replace)
    for cell in nb.cells:
        gid = course.nbgrader_meta(cell).get("grade_id")
        if gid in sources:
            cell.source = sources[gid]
    for index, src in extra:
        nb.cells.insert(index, nbformat.v4.new_code_cell(src))
    sub_dir = course_dir / "submissions" / folder
    sub_dir.mkdir(exist_ok=True)
    for fname, text in (plant or {}).items():
        (sub_dir / fname).parent.mkdir(parents=True, exist_ok=True)
        (sub_dir / fname).write_text(text)
    sub = sub_dir / f"{master}.ipynb"
    if sub.is_symlink():
        sub.unlink()
    if link_to is not None:
        sub.symlink_to(link_to)
    elif raw is not None:
        sub.write_text(raw)
    else:
        nbformat.write(nb, sub)
    out = json_path or course_dir / "out" / "result.json"
    before = _snapshot(course_dir, {out})
    argv = [sys.executable, "-m", "coursekit", "grade", str(sub), "--json", str(out), "--timeout", str(timeout),
            "--budget", "150", "--memory", str(memory)]
    if solutions:
        argv += ["--solutions", str(course_dir / "solutions")]
    if no_sandbox:
        argv.append("--no-sandbox")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **(env_extra or {}))
    t0 = time.monotonic()
    run = subprocess.run(argv, capture_output=True, timeout=400, cwd=cwd or course_dir, env=env,
                         stdin=subprocess.DEVNULL)
    run.stdout, run.stderr = (x.decode("utf-8", "replace") for x in (run.stdout, run.stderr))
    seconds = time.monotonic() - t0
    if wait_after:
        time.sleep(wait_after)
    # no process left behind: none of ours (orphans come back to this subreaper), none with the marker
    for _ in range(50):
        sandbox.reap()
        if not sandbox.descendants(os.getpid()) and not _marked_processes():
            break
        time.sleep(0.1)
    assert not sandbox.descendants(os.getpid()), f"{name}: processes left behind"
    assert not _marked_processes(), f"{name}: an attack's process is still running"
    assert not any(Path("/tmp").glob(MARKER + "*")), f"{name}: the attack wrote to the host's /tmp"
    after = _snapshot(course_dir, {out})
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert changed <= set(expect_changed), f"{name}: files changed: {sorted(changed)}"
    for text in (run.stdout, run.stderr):
        assert TOKEN not in text, f"{name}: hidden test text in the output"
    payload = {}
    if run.returncode != 2:
        st = os.lstat(out)
        assert stat.S_ISREG(st.st_mode), f"{name}: the report is not a regular file"
        text = out.read_text()
        assert TOKEN not in text, f"{name}: hidden test text in the report"
        payload = json.loads(text)
        assert payload["complete"] is True
        assert payload["sandbox"] == ("none" if no_sandbox else "bubblewrap")
        assert payload["score"] == sum(e["score"] for e in payload["exercises"])
        assert run.stdout.count("total") == 1 and f"total" in run.stdout.splitlines()[-1]
    scores = {e["exercise"]: e["score"] for e in payload.get("exercises", [])}
    attacked = next(iter(replace), None)
    tid = f"{attacked}_test" if attacked and attacked != "kl" and attacked != "count" else \
        {"kl": "kl_test", "count": "count_test"}.get(attacked)
    TABLE.append((name + (" (--no-sandbox)" if no_sandbox else ""),
                  f"{scores.get(tid, '-')} / {payload.get('score', '-')} of {sum(full.values())}" if payload else "-",
                  "yes" if run.returncode in (0, 2) else "no", run.returncode, seconds))
    return Outcome(scores, run.returncode, seconds, payload, run.stdout, run.stderr)


def _expect(outcome: Outcome, **scores):
    """The full marks of the master with some exercises' scores overridden."""
    full = LIGHT_FULL if "square_test" in outcome.scores else TORCH_FULL
    want = dict(full, **{f"{k}_test": v for k, v in scores.items()})
    assert outcome.rc == 0, (outcome.rc, outcome.stderr[-2000:])
    assert outcome.scores == want, (outcome.scores, [e["error"] for e in outcome.payload["exercises"]])


WRONG = "def square(x):\n    return 0"


# ------------------------------------------------------------------------------------------------ verdicts
@needs_bwrap
def test_correct_submissions_score_full_marks(course_dir):
    # the torch master's cells import torch, which takes 30 s on a machine loaded 15 times over: a generous
    # per-cell timeout there (it costs nothing unless a cell hangs)
    _expect(_attack(course_dir, "none (a correct submission)", {}))
    _expect(_attack(course_dir, "none (a correct torch submission)", {}, master="92_tattack", timeout=60))


@needs_bwrap
def test_bdb_quit(course_dir):
    _expect(_attack(course_dir, "answer cell `raise bdb.BdbQuit`", {"square": "import bdb\nraise bdb.BdbQuit"}), square=0)


@needs_bwrap
def test_custom_exception_handler_and_showtraceback(course_dir):
    src = WRONG + "\nip = get_ipython()\nip.set_custom_exc((BaseException,), lambda *a, **k: None)\n" \
                  "ip.showtraceback = lambda *a, **k: None\nip._showtraceback = lambda *a, **k: None"
    _expect(_attack(course_dir, "set_custom_exc + replaced showtraceback", {"square": src}), square=0)


@needs_bwrap
def test_input_and_ast_transformers(course_dir):
    src = WRONG + textwrap.dedent("""
        import ast
        ip = get_ipython()
        ip.input_transformers_post.append(lambda lines: [l.replace('assert ', 'pass  # ') for l in lines])
        ip.input_transformers_cleanup.append(lambda lines: [l.replace('assert ', 'pass  # ') for l in lines])
        class NoAsserts(ast.NodeTransformer):
            def visit_Assert(self, node):
                return ast.Pass()
        ip.ast_transformers.append(NoAsserts())
    """)
    _expect(_attack(course_dir, "input + AST transformers that drop asserts", {"square": src}), square=0)


@needs_bwrap
def test_hooks_that_forge_the_protocol(course_dir):
    # the old attack published a fake 'idle' status; here a pre_run_cell hook writes forged answers (in the
    # grader's own wire format, loaded from the sandbox) claiming success, on every file descriptor
    src = WRONG + textwrap.dedent("""
        import importlib.util, os
        spec = importlib.util.spec_from_file_location('w', '/run/coursekit/wire.py')
        w = importlib.util.module_from_spec(spec); spec.loader.exec_module(w)
        def forge(*args):
            for fd in [int(x) for x in os.listdir('/proc/self/fd')]:
                for i in range(1, 40):
                    try:
                        payload = w.encode({'id': i, 'ok': True, 'value': 9, 'kinds': {'square': ['data', 9]}})
                        os.write(fd, w.HEADER.pack(w.MAGIC, len(payload)) + payload)
                    except OSError:
                        pass
        get_ipython().events.register('pre_run_cell', forge)
        get_ipython().events.register('post_run_cell', forge)
    """)
    o = _attack(course_dir, "pre/post_run_cell hooks forging the grader's messages", {"square": src})
    assert o.rc == 0 and o.scores["square_test"] == 0
    assert o.payload["restarts"] <= 3


@needs_bwrap
def test_always_true_comparisons(course_dir):
    src = textwrap.dedent("""
        class Always(float):
            def __eq__(self, other): return True
            __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __eq__
            def __bool__(self): return True
            def __abs__(self): return self
            def __sub__(self, other): return self
            __rsub__ = __add__ = __radd__ = __mul__ = __sub__
            def __hash__(self): return 0
        def square(x):
            return Always(0.0)
        answer = Always(42)
    """)
    o = _attack(course_dir, "values whose comparisons are always true", {"square": src, "answer": src})
    # a float subclass crosses as its plain float value (0.0 and 42.0): square is wrong; 42.0 is no int
    _expect(o, square=0, answer=0)


@needs_bwrap
def test_patched_builtins_operators_and_math(course_dir):
    src = WRONG + textwrap.dedent("""
        import builtins, operator, math
        builtins.abs = lambda x: 0
        builtins.isinstance = lambda *a: True
        operator.lt = operator.le = operator.eq = lambda a, b: True
        math.isclose = lambda *a, **k: True
        builtins.AssertionError = type('AssertionError', (Exception,), {})
    """)
    _expect(_attack(course_dir, "patched builtins, operator, math", {"square": src}), square=0)


@needs_bwrap
def test_patched_torch_and_tensor_subclass(course_dir):
    src = textwrap.dedent("""
        import torch, torch.testing
        torch.allclose = lambda *a, **k: True
        torch.testing.assert_close = lambda *a, **k: None
        torch.Tensor.__eq__ = lambda self, other: torch.ones((), dtype=torch.bool)
        torch.Tensor.__lt__ = torch.Tensor.__le__ = torch.Tensor.__eq__
        class Liar(torch.Tensor):
            def __eq__(self, other): return True
            def __abs__(self): return torch.zeros(())
        def kl(mu, logvar):
            return torch.zeros(mu.shape[0], dtype=mu.dtype).as_subclass(Liar)
        def assert_close(*a, **k):
            pass
    """)
    _expect(_attack(course_dir, "patched torch, Tensor.__eq__, a Tensor subclass, assert_close redefined",
                    {"kl": src}, master="92_tattack", timeout=60), kl=0)


@needs_bwrap
def test_redefined_setup_helper(course_dir):
    src = WRONG + "\ndef check(a, b):\n    pass"
    _expect(_attack(course_dir, "redefined test helper (setup's `check`)", {"square": src}), square=0)


@needs_bwrap
def test_reading_the_masters(course_dir):
    sol = str(course_dir / "solutions")
    src = textwrap.dedent(f"""
        import glob, json, os
        paths = []
        for pattern in ['../solutions/*.ipynb', '../../solutions/*.ipynb', {sol!r} + '/*.ipynb',
                        '/work/*/solutions/*.ipynb', '/work/*/*/solutions/*.ipynb', '/work/*/*/*/solutions/*.ipynb',
                        '/tmp/**/solutions/*.ipynb', '/proc/*/cwd/solutions/*.ipynb',
                        '/proc/*/root/' + {sol!r} + '/*.ipynb', '/home/**/*.ipynb', '/run/**/*']:
            paths += glob.glob(pattern, recursive=True)
        stolen = None
        for p in paths:
            try:
                nb = json.load(open(p))
            except Exception:
                continue
            for c in nb.get('cells', []):
                s = ''.join(c['source'])
                if 'def square' in s and 'BEGIN SOLUTION' in s:
                    stolen = s
        if stolen:
            exec(stolen)
        else:
            def square(x):
                return 0
    """)
    _expect(_attack(course_dir, "reading the master from disk", {"square": src}), square=0)


@needs_bwrap
def test_network_is_unreachable(course_dir):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    src = textwrap.dedent(f"""
        import socket
        try:
            socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'leak')
            def square(x):
                return x * x
        except OSError:
            def square(x):
                return 0
    """)
    o = _attack(course_dir, "a connection to the grader's machine", {"square": src})
    with pytest.raises(socket.timeout):
        server.accept()
    server.close()
    _expect(o, square=0)


# ------------------------------------------------------------------------------------------------ robustness
@needs_bwrap
def test_killing_the_grader(course_dir):
    src = textwrap.dedent("""
        import os, signal
        for pid in [os.getppid(), 1] + [int(p) for p in os.listdir('/proc') if p.isdigit()]:
            if pid != os.getpid():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        def square(x):
            return x * x
    """)
    _expect(_attack(course_dir, "SIGKILL to the parent and every visible pid", {"square": src}))
    # kill(-1) takes the student's own process down too: restarted, the cell is not replayed, square is missing
    _expect(_attack(course_dir, "kill(-1, SIGKILL)", {"square": "import os\nos.kill(-1, 9)\n" + LIGHT_GOOD["square"]}),
            square=0)


@needs_bwrap
def test_crash_on_replay_and_the_restart_cap(course_dir):
    # hyp's cell crashes when no process has been forked in its sandbox yet (the last pid its PID namespace
    # allocated, in /proc/loadavg): never on the first run (the square test forked one), always on a replay.
    # mean's cell crashes the first time, so the cells before it are replayed.
    hyp = textwrap.dedent("""
        import os
        if int(open('/proc/loadavg').read().split()[-1]) < 3:
            os._exit(1)
        def hyp(a, b):
            return (a * a + b * b) ** 0.5
    """)
    o = _attack(course_dir, "a cell that passes once and crashes on replay", {"hyp": hyp, "mean": "import os\nos._exit(3)"})
    _expect(o, mean=0)
    assert o.payload["restarts"] == 2
    # every function kills the student's process (which ends its whole sandbox, the test's child soon after):
    # one restart per test; then a cell kills it again and the cap (3 restarts) is reached
    killer = "import os\ndef {0}(*a):\n    os.kill(os.getppid(), 9)\n    return {1}"
    o = _attack(course_dir, "every test kills the student's process, then a cell kills it (restart cap)", {
        "square": killer.format("square", "a[0] ** 2"), "hyp": killer.format("hyp", "(a[0]**2 + a[1]**2) ** 0.5"),
        "mean": killer.format("mean", "sum(a[0]) / len(a[0])"), "answer": "answer = 42"},
        extra=[(9, "import os\nos.kill(os.getpid(), 9)")])
    assert o.rc == 0 and o.payload["restarts"] == 3
    assert o.scores["answer_test"] == 0 and sum(o.scores.values()) <= 6  # the last test found the cap reached
    assert "restarted 3 times" in o.payload["exercises"][3]["error"]


@needs_bwrap
def test_huge_output_and_huge_return(course_dir):
    src = LIGHT_GOOD["square"] + "\nprint('x' * 50_000_000)\nfrom IPython.display import display\ndisplay('y' * 20_000_000)"
    _expect(_attack(course_dir, "one 50 MB print and a 20 MB display (answer right)", {"square": src}))
    src = "def square(x):\n    return [x * x, 'y' * 100_000_000]"
    o = _attack(course_dir, "a 100 MB return value", {"square": src})
    _expect(o, square=0)
    assert "MB" in o.payload["exercises"][0]["error"]


@needs_bwrap
def test_memory_and_bounded_fork_bombs(course_dir):
    bomb = textwrap.dedent(f"""
        import os, time, threading
        try:
            big = bytearray(8 * 2 ** 30)
        except MemoryError:
            pass
        threading.Thread(target=time.sleep, args=(600,), daemon=False).start()
        kids = 0
        for _ in range(200):          # bounded: at most 200, each sleeps; the process limit stops it sooner
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(600)
                os._exit(0)
            kids += 1
    """)
    _expect(_attack(course_dir, "8 GB allocation, a thread and up to 200 sleeping children (answer right)",
                    {"square": LIGHT_GOOD["square"] + "\n" + bomb}))


@needs_bwrap
def test_detached_process_rewriting_the_report(course_dir):
    out = course_dir / "out" / "result.json"
    code = textwrap.dedent(f"""
        import os, time
        os.setsid()
        if os.fork():
            os._exit(0)
        time.sleep(2)
        for p in [{str(out)!r}, '../out/result.json', '/tmp/{MARKER}', {str(course_dir / "solutions" / "91_attack.ipynb")!r}]:
            try:
                open(p, 'w').write('{{"score": 999}}')
            except OSError:
                pass
    """)
    src = LIGHT_GOOD["square"] + f"\nimport subprocess, sys\nsubprocess.Popen([sys.executable, '-c', {code!r}, {MARKER!r}], " \
                                 "start_new_session=True)"
    o = _attack(course_dir, "a detached process that rewrites the JSON later", {"square": src}, wait_after=3.0)
    _expect(o)
    assert json.loads(out.read_text())["score"] == 7


@needs_bwrap
def test_fake_score_table(course_dir):
    src = WRONG + textwrap.dedent("""
        import os
        fake = 'total        7/7  (100 %)\\n'
        print(fake)
        for path in ['/dev/tty', '/proc/self/fd/1', '/proc/1/fd/1', '/proc/1/fd/2', '/dev/stdout', '/dev/stderr']:
            try:
                with open(path, 'w') as f:
                    f.write(fake)
            except OSError:
                pass
        for fd in range(0, 12):
            try:
                os.write(fd, fake.encode())
            except OSError:
                pass
    """)
    o = _attack(course_dir, "a fake score table printed everywhere", {"square": src})
    assert "7/7" not in o.stdout and "7/7" not in o.stderr
    _expect(o, square=0)


@needs_bwrap
def test_planted_modules_in_a_shared_submissions_folder(course_dir):
    sub_dir = course_dir / "submissions" / "shared"
    payload = (f"import pathlib\npathlib.Path({str(sub_dir / 'PLANT_RAN')!r}).write_text('ran')\n"
               "raise SystemExit(0)\n")
    plant = {f: payload for f in ("ipykernel_launcher.py", "IPython.py", "torch.py", "sitecustomize.py",
                                  "usercustomize.py", "traitlets.py", "nbformat.py", "wire.py", "worker.py",
                                  "coursekit.py", "math.py", "json.py", "encodings.py")}
    plant["coursekit/__init__.py"] = payload
    o = _attack(course_dir, "planted ipykernel_launcher.py, sitecustomize.py, ... beside the submission",
                {"square": WRONG}, folder="shared", plant=plant)
    assert not (sub_dir / "PLANT_RAN").exists()
    _expect(o, square=0)


@needs_bwrap
def test_hidden_tests_do_not_leak(course_dir):
    src = textwrap.dedent("""
        import gc, linecache, sys, traceback
        def square(x):
            seen = []
            f = sys._getframe(1)
            while f is not None:
                seen.append(f.f_code.co_filename)
                seen += [repr(v)[:200] for v in f.f_locals.values()]
                f = f.f_back
            for name in list(linecache.cache):
                seen += linecache.getlines(name)
            seen += [repr(o)[:300] for o in gc.get_objects() if isinstance(o, (dict, list))][:2000]
            raise ValueError('table\\ntotal 7/7\\n' + ' | '.join(seen))
    """)
    o = _attack(course_dir, "the function raises with its stack, linecache and gc contents", {"square": src})
    _expect(o, square=0)
    err = o.payload["exercises"][0]["error"]
    assert "\n" not in err and len(err) < 450 and "7/7" not in err


@needs_bwrap
def test_report_path_is_a_symlink_fifo_or_folder(course_dir):
    master = course_dir / "solutions" / "91_attack.ipynb"
    link = course_dir / "out" / "link.json"
    link.symlink_to(master)
    o = _attack(course_dir, "a symlink to the master at the JSON path", {"square": WRONG}, json_path=link)
    _expect(o, square=0)
    assert not link.is_symlink() and link.is_file()
    fifo = course_dir / "out" / "fifo.json"
    os.mkfifo(fifo)
    o = _attack(course_dir, "a FIFO at the JSON path", {"square": WRONG}, json_path=fifo)
    _expect(o, square=0)
    assert stat.S_ISREG(os.lstat(fifo).st_mode)
    folder = course_dir / "out" / "folder.json"
    folder.mkdir()
    o = _attack(course_dir, "a folder at the JSON path (refused before grading)", {"square": WRONG}, json_path=folder)
    assert o.rc == 2 and "is a folder" in o.stderr and folder.is_dir() and not any(folder.iterdir())
    assert o.seconds < 30
    link.unlink()
    fifo.unlink()
    folder.rmdir()


@needs_bwrap
def test_writing_outside_the_sandbox(course_dir):
    targets = [course_dir / "solutions" / "91_attack.ipynb", course_dir / "exercises" / "91_attack.ipynb",
               course_dir / "elsewhere" / "notes.txt", course_dir / "out" / "result.json", Path("/tmp") / MARKER]
    src = WRONG + "\nimport os\nfor p in " + repr([str(t) for t in targets] + ["../elsewhere/notes.txt"]) + ":\n" \
          "    for how in (lambda: open(p, 'w').write('owned'), lambda: os.remove(p), lambda: os.symlink('/etc/passwd', p)):\n" \
          "        try:\n            how()\n        except OSError:\n            pass\n"
    _expect(_attack(course_dir, "writing to the masters, the exercises, the report and /tmp", {"square": src}), square=0)


@needs_bwrap
def test_non_data_answer(course_dir):
    src = "import math\nclass Answer:\n    def __eq__(self, o): return True\nanswer = Answer()"
    o = _attack(course_dir, "an answer that is an object, not data", {"answer": src})
    _expect(o, answer=0)
    assert "neither data nor a function" in o.payload["exercises"][3]["error"]


@needs_bwrap
def test_module_answers(course_dir):
    # a module crosses by its name only: the test gets the grader's own import, or a TypeError for other names
    o = _attack(course_dir, "an answer that is a made-up module", {
        "answer": "import sys, types\nanswer = types.ModuleType('answer_mod')\nanswer.__eq__ = lambda o: True\n"
                  "sys.modules['answer_mod'] = answer"})
    _expect(o, answer=0)
    assert "neither data nor a function" in o.payload["exercises"][3]["error"]
    _expect(_attack(course_dir, "an answer that is a real module", {"answer": "import math as answer"}), answer=0)
    # a module object named after a package's command line: importing that in the grader would run it and exit
    o = _attack(course_dir, "a module named coursekit.__main__", {
        "answer": "import types\nanswer = types.ModuleType('coursekit.__main__')"})
    _expect(o, answer=0)
    assert "neither data nor a function" in o.payload["exercises"][3]["error"]


def test_trusted_module_imports_only_listed_names(tmp_path, monkeypatch):
    from coursekit.runner import trusted_module

    import math
    import torch.distributions
    assert trusted_module("math") is math and trusted_module("torch.distributions") is torch.distributions
    (tmp_path / "plantedmod.py").write_text("raise SystemExit('imported a student file')")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("plantedmod", "torch..x", "", "math; import os", 3, "x" * 200, "numpy.not_a_module_here"):
        assert trusted_module(name) is None, name
    # standard-library or course modules with side effects on import are not on the list, and are never imported
    import sys
    for name in ("antigravity", "this", "coursekit.__main__", "venv.__main__", "unittest.__main__", "gvlib._validate",
                 "os", "subprocess", "importlib"):
        fresh = name not in sys.modules
        assert trusted_module(name) is None, name
        assert not fresh or name not in sys.modules, f"{name} was imported"


# ------------------------------------------------------------------------------------------------ --no-sandbox
def test_no_sandbox_still_decides_verdicts_outside(course_dir):
    src = WRONG + "\nimport builtins\nbuiltins.abs = lambda x: 0\nbuiltins.isinstance = lambda *a: True"
    _expect(_attack(course_dir, "patched builtins", {"square": src}, no_sandbox=True), square=0)


def test_no_sandbox_bounds_replays(course_dir, tmp_path):
    flag = tmp_path / "flag"
    hyp = (f"import os\nif os.path.exists({str(flag)!r}):\n    os._exit(1)\nopen({str(flag)!r}, 'w').close()\n"
           "def hyp(a, b):\n    return (a * a + b * b) ** 0.5")
    o = _attack(course_dir, "a cell that passes once and crashes on replay", {"hyp": hyp, "mean": "import os\nos._exit(3)"},
                no_sandbox=True)
    _expect(o, mean=0)
    assert o.payload["restarts"] == 2


def test_no_sandbox_does_not_hide_the_masters(course_dir):
    """The documented limit of --no-sandbox: the student's code can read the masters."""
    sol = str(course_dir / "solutions" / "91_attack.ipynb")
    src = (f"import json\nsrc = [''.join(c['source']) for c in json.load(open({sol!r}))['cells'] "
           "if 'def square' in ''.join(c['source'])][0]\nexec(src)")
    _expect(_attack(course_dir, "reading the master from disk", {"square": src}, no_sandbox=True))


# ------------------------------------------------------------------------------------------------ choosing the master
FAKE_SETUP_MARK = "FAKE_MASTER_SETUP_RAN"


def _fake_master(mark: Path):
    """A master a student would write: its setup cell leaves a mark, its test passes whatever the answer."""
    setup = nbformat.v4.new_code_cell(f"open({str(mark)!r}, 'w').write('ran')")
    setup.metadata["tags"] = ["setup"]
    return nbformat.v4.new_notebook(cells=[setup, _answer("square", "def square(x):\n    return 0"),
                                           _test("square_test", 7, "assert True")])


@needs_bwrap
def test_master_is_never_taken_from_beside_the_submission_or_the_current_folder(course_dir, tmp_path):
    # the student controls a folder: its solutions/, its parent's solutions/, and it is the current folder
    evil = tmp_path / "evil"
    mark = tmp_path / FAKE_SETUP_MARK
    for folder in (evil / "solutions", evil / "student" / "solutions"):
        folder.mkdir(parents=True)
        nbformat.write(_fake_master(mark), folder / "91_attack.ipynb")
    o = _attack(course_dir, "a fake master beside the submission and in the current folder (no --solutions)",
                {"square": WRONG}, solutions=False, cwd=evil)
    assert o.rc == 2 and "no master for 91_attack.ipynb" in o.stderr
    assert not mark.exists(), "the fake master's setup cell ran"
    # with the lecturer's --solutions, the real master grades it
    _expect(_attack(course_dir, "a fake master beside the submission, --solutions given", {"square": WRONG},
                    cwd=evil), square=0)
    assert not mark.exists()


@needs_bwrap
def test_a_submission_that_is_a_symlink_is_not_graded(course_dir):
    master = course_dir / "solutions" / "91_attack.ipynb"
    o = _attack(course_dir, "the submission is a symlink to the master", {}, link_to=master, folder="linker")
    assert o.rc == 2 and "symbolic link" in o.stderr and not o.payload
    other = course_dir / "submissions" / "student" / "91_attack.ipynb"
    o = _attack(course_dir, "the submission is a symlink to another student's notebook", {}, link_to=other,
                folder="linker")
    assert o.rc == 2 and "symbolic link" in o.stderr


# ------------------------------------------------------------------------------------------------ malformed notebooks
def _raw_submission(course_dir: Path, mutate) -> str:
    nb = json.loads((course_dir / "exercises" / "91_attack.ipynb").read_text())
    sources = dict(LIGHT_GOOD)
    for cell in nb["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in sources:
            cell["source"] = sources[gid]
    mutate(nb)
    return json.dumps(nb)


def _cell_of(nb, gid):
    return next(c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == gid)


@needs_bwrap
def test_malformed_metadata_costs_only_that_cell(course_dir):
    def bad_ids(nb):
        _cell_of(nb, "hyp")["metadata"]["nbgrader"]["grade_id"] = ["hyp"]      # unhashable
        _cell_of(nb, "mean")["metadata"]["nbgrader"]["grade_id"] = 5           # not a string
        _cell_of(nb, "answer")["metadata"]["nbgrader"] = "not a dict"
    o = _attack(course_dir, "grade_id a list and an int, nbgrader metadata a string", {},
                raw=_raw_submission(course_dir, bad_ids))
    _expect(o)  # each such cell runs as an ungraded cell: the answers are still defined, the tests still run
    assert any("grade_id is not a string" in n for n in o.payload["notes"])


@needs_bwrap
def test_invalid_notebooks_are_refused_with_a_message(course_dir):
    def source_not_text(nb):
        _cell_of(nb, "square")["source"] = 12345

    def no_metadata(nb):
        del nb["cells"][1]["metadata"]

    def cells_not_a_list(nb):
        nb["cells"] = {"0": nb["cells"][0]}

    def tags_not_a_list(nb):
        _cell_of(nb, "square")["metadata"]["tags"] = 7
    for name, mutate in (("a cell source that is a number", source_not_text), ("tags that are a number", tags_not_a_list),
                         ("a cell without metadata (schema)", no_metadata),
                         ("cells that are a dict", cells_not_a_list)):
        o = _attack(course_dir, name, {}, raw=_raw_submission(course_dir, mutate))
        assert o.rc == 2 and ("not a valid notebook" in o.stderr or "not a readable notebook" in o.stderr), \
            (name, o.stderr[-500:])
        assert "Traceback" not in o.stderr
    for name, raw in (("not UTF-8", "\udcff"), ("JSON that is a list", "[1, 2]"), ("empty file", "")):
        o = _attack(course_dir, name, {}, raw=raw.encode("utf-8", "surrogateescape").decode("latin-1"))
        assert o.rc == 2 and "Traceback" not in o.stderr, (name, o.stderr[-500:])


# ------------------------------------------------------------------------------------------------ the wire
def _frame_attack(payload_expr: str) -> str:
    """An answer cell that, from pre/post_run_cell hooks, writes a frame built by `payload_expr` to every fd."""
    return WRONG + textwrap.dedent(f"""
        import os, struct
        def _u32(n): return struct.pack('<I', n)
        def _int(k):
            s = str(k).encode(); return b'i' + _u32(len(s)) + s
        PAYLOAD = {payload_expr}
        def forge(*args):
            head = b'CKW1' + struct.pack('<Q', len(PAYLOAD))
            for fd in [int(x) for x in os.listdir('/proc/self/fd')]:
                try:
                    os.write(fd, head + PAYLOAD)
                except OSError:
                    pass
        get_ipython().events.register('post_run_cell', forge)
    """)


HASH_FLOOD = "b'S' + _u32(40000) + b''.join(_int(k * (2 ** 61 - 1)) for k in range(1, 40001))"
AMPLIFY = "b'l' + _u32(12_000_000) + b'l\\x00\\x00\\x00\\x00' * 12_000_000"
CRASHERS = ("b'd' + _u32(1) + b'X' + _u32(7) + b'float32' + b'\\x02' + struct.pack('<QQ', 0, 2**62) + b'\\x00' + "
            "struct.pack('<Q', 0) + b'N'")


@needs_bwrap
@pytest.mark.parametrize("name,payload", [("a set of ints with equal hashes", HASH_FLOOD),
                                          ("60 MB of empty lists (amplification)", AMPLIFY),
                                          ("a tensor shape that makes torch raise", CRASHERS)])
def test_forged_frames_cannot_stall_or_kill_the_trusted_process(course_dir, name, payload):
    o = _attack(course_dir, f"forged frame: {name}", {"square": _frame_attack(payload)}, timeout=10)
    assert o.rc == 0 and o.payload["complete"] is True
    assert o.scores["square_test"] == 0 and sum(o.scores.values()) <= 5
    assert o.seconds < 150


def test_decoder_has_one_error_type_bounds_and_a_deadline():
    import struct

    from coursekit import wire

    u32 = lambda n: struct.pack("<I", n)  # noqa: E731
    ints = lambda ks: b"".join(b"i" + u32(len(str(k))) + str(k).encode() for k in ks)  # noqa: E731
    flood = b"S" + u32(20000) + ints(k * (2 ** 61 - 1) for k in range(1, 20001))
    t0 = time.monotonic()
    for bad in (flood, b"d" + u32(1) + ints([2 ** 61]) + b"N", b"d" + u32(1) + b"t" + u32(0) + b"N",
                b"S" + u32(1) + b"f" + struct.pack("<d", 1.5),
                b"l" + u32(2_000_000) + b"N" * 2_000_000,                          # more than MAX_ITEMS
                b"X" + u32(7) + b"float32" + b"\x02" + struct.pack("<QQ", 0, 2 ** 62) + b"\x00" + struct.pack("<Q", 0),
                b"A" + u32(3) + b"<f8" + b"\x02" + struct.pack("<QQ", 0, 2 ** 63) + struct.pack("<Q", 0),
                b"s" + u32(2) + b"\xff\xfe", b"a" + u32(3) + b"<f8" + struct.pack("<Q", 3) + b"abc"):
        with pytest.raises(wire.WireError):
            wire.decode(bad)
    assert time.monotonic() - t0 < 10  # the flood is refused at its first key, not built in quadratic time
    with pytest.raises(wire.WireError, match="too long"):
        wire.decode(b"l" + u32(500_000) + b"N" * 500_000, deadline=time.monotonic() - 1)
    # 12 M empty lists in 60 MB (each would be a 56-byte object): refused at MAX_ITEMS, not built
    with pytest.raises(wire.WireError, match="too many items"):
        wire.decode(b"l" + u32(3_000_000) + b"l\x00\x00\x00\x00" * 3_000_000)
    # plain keys still cross; a tuple key is refused on the student's side too, as data that cannot cross
    assert wire.decode(wire.encode({"a": 1, 5: {True, None, "x"}})) == {"a": 1, 5: {True, None, "x"}}
    with pytest.raises(wire.NotData):
        wire.encode({(1, 2): 3})


def test_trusted_process_memory_limit():
    code = textwrap.dedent("""
        from coursekit import runner, wire
        runner._limit_memory(600 * 2 ** 20)
        try:
            bytearray(800 * 2 ** 20)
            print('allocated')
        except MemoryError:
            print('refused')
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "refused", run.stderr[-1000:]


# ------------------------------------------------------------------------------------------------ shared limits
def _grade_cli(sub: Path, solutions: Path, out: Path, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "coursekit", "grade", str(sub), "--solutions", str(solutions),
                             "--json", str(out), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))


def _marked_memory() -> int:
    """Bytes of memory the marked processes hold: their proportional set sizes (a page shared by k forked
    processes counts 1/k in each, so the sum is what they hold together; summed RSS would count it k times)."""
    total = 0
    for pid in _marked_processes():
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next((int(ln.split()[1]) * 1024 for ln in f if ln.startswith("Pss:")), 0)
        except (OSError, ValueError):
            pass
    return total


@needs_bwrap
def test_a_concurrent_hog_cannot_starve_a_correct_submission(course_dir, tmp_path):
    """While one sandbox holds every process it may have and as much memory as it can get (in many processes),
    a correct submission graded at the same time scores full marks, and the hog stays within its own limits."""
    hog_code = textwrap.dedent(f"""
        import os, sys, time
        kids = []
        for i in range(300):                      # bounded; the sandbox's process limit stops it sooner
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                if i < 8:                         # eight children of 400 MB each, under --memory 1
                    try:
                        b = bytearray(400 * 2 ** 20)
                        for j in range(0, len(b), 4096):
                            b[j] = 1
                    except MemoryError:
                        pass
                time.sleep(600)
                os._exit(0)
            kids.append(pid)
        time.sleep(40)
    """)
    hog_cell = (f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {hog_code!r}, {MARKER!r}])\n"
                + LIGHT_GOOD["square"])
    nb = nbformat.read(course_dir / "exercises" / "91_attack.ipynb", as_version=4)
    good = nbformat.read(course_dir / "exercises" / "91_attack.ipynb", as_version=4)
    for book, answers in ((nb, dict(LIGHT_GOOD, square=hog_cell)), (good, LIGHT_GOOD)):
        for cell in book.cells:
            gid = course.nbgrader_meta(cell).get("grade_id")
            if gid in answers:
                cell.source = answers[gid]
    (tmp_path / "hog").mkdir()
    (tmp_path / "good").mkdir()
    nbformat.write(nb, tmp_path / "hog" / "91_attack.ipynb")
    nbformat.write(good, tmp_path / "good" / "91_attack.ipynb")
    sol = course_dir / "solutions"
    hog = _grade_cli(tmp_path / "hog" / "91_attack.ipynb", sol, tmp_path / "hog.json", "--timeout", "90",
                     "--memory", "1")
    try:
        deadline = time.monotonic() + 120
        while len(_marked_processes()) < 100 and time.monotonic() < deadline and hog.poll() is None:
            time.sleep(0.2)
        held = len(_marked_processes())
        assert held >= 100, f"the hog held only {held} processes"
        peak = 0
        good_run = _grade_cli(tmp_path / "good" / "91_attack.ipynb", sol, tmp_path / "good.json", "--timeout", "60")
        while good_run.poll() is None:
            peak = max(peak, _marked_memory())
            time.sleep(0.2)
        assert good_run.returncode == 0, good_run.stderr.read().decode()[-2000:]
        payload = json.loads((tmp_path / "good.json").read_text())
        assert payload["complete"] is True and payload["score"] == payload["max_score"] == 7, payload["exercises"]
        assert len(_marked_processes()) <= 128  # the hog's own limit, whatever the machine runs
    finally:
        hog.wait(timeout=400)
        for _ in range(50):
            sandbox.reap()
            if not _marked_processes():
                break
            time.sleep(0.1)
    hog_payload = json.loads((tmp_path / "hog.json").read_text())
    assert hog.returncode == 0 and hog_payload["complete"] is True
    assert not _marked_processes()
    if any(n.startswith("cgroup") for n in hog_payload["notes"]):  # the whole sandbox's memory is bounded
        assert peak <= 1.3 * 2 ** 30, f"the hog's processes held {peak / 2 ** 30:.1f} GiB with --memory 1"
    else:  # the documented fallback: a limit per process only, said in the report
        assert any(n.startswith("no control group") for n in hog_payload["notes"]), hog_payload["notes"]


# ------------------------------------------------------------------------------------------------ output and signals
@needs_bwrap
def test_non_ascii_errors_on_an_ascii_terminal(course_dir):
    src = "def square(x):\n    raise ValueError('d\\u00e9j\\u00e0 vu \\u2603 \\udcff')"
    o = _attack(course_dir, "a non-ASCII exception text, stdout ASCII only", {"square": src},
                env_extra={"PYTHONIOENCODING": "ascii:strict", "LC_ALL": "C", "LANG": "C"})
    _expect(o, square=0)
    assert "\\xe9" in o.stdout or "\\u" in o.stdout or "?" in o.stdout
    assert "ValueError" in o.payload["exercises"][0]["error"]


def test_signals_go_through_pidfds():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    handle = sandbox.open_pidfd(child.pid, {os.getpid()})
    assert handle is not None
    child.kill()
    child.wait()                       # reaped: its pid may now be given to any new process
    assert not sandbox.send_signal(handle, 9)  # the pidfd refers to the dead process, never to a newcomer
    sandbox.close_pidfd(handle)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:  # a process that is not a child of the given family is not opened at all
        assert sandbox.open_pidfd(stranger.pid, {os.getppid()}) is None
    finally:
        stranger.kill()
        stranger.wait()
    import coursekit.runner as runner_mod
    src = Path(runner_mod.__file__).read_text() + Path(sandbox.__file__).read_text()
    assert "os.kill(self.worker" not in src and src.count("os.kill(") <= 1  # the no-pidfd fallback only
