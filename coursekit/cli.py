"""``coursekit``: build, check, execute, grade, bench. Run it from the course's root folder (or pass the paths)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

USAGE = """usage: coursekit COMMAND [options]

  build     write exercises/ from the masters in solutions/
  check     fail when exercises/ is out of date, leaks an answer, or a notebook has a kernelspec JupyterLab rewrites
  execute   re-execute notebooks in place (NB [NB ...])
  grade     grade a student's notebook, or a folder of submissions into a gradebook (`coursekit grade --help`)
  bench     the speed table of gvlib's estimator and of a training epoch (see `coursekit bench --help`)
  book      the course as a static website (jupyter-book 1.x, no re-execution; `coursekit book --help`)
  slides    a reveal.js deck per chapter, laid out from the notebook's structure (`coursekit slides --help`)
  gallery   regenerate (or --check) the README's gallery and chapter table
  claims    every checked claim of notebooks, executed with several seed offsets, as a table (`coursekit claims --help`)
  workspace a learner's working copy in my-work/ that `git pull` never touches (`coursekit workspace --help`)
"""


def _build_or_check(cmd: str, argv: list[str]) -> int:
    from . import exercises

    p = argparse.ArgumentParser(prog=f"coursekit {cmd}")
    p.add_argument("--solutions", type=Path, default=Path("solutions"), help="folder of masters (default: solutions)")
    p.add_argument("--exercises", type=Path, default=Path("exercises"), help="folder of exercises (default: exercises)")
    if cmd == "check":
        p.add_argument("--chapters", type=Path, default=Path("chapters"),
                       help="folder of chapter notebooks whose kernelspec is checked too (default: chapters)")
    args = p.parse_args(argv)
    try:
        if cmd == "build":
            changed = exercises.build(args.solutions, args.exercises)
            print(f"exercises: {len(changed)} written" + "".join(f"\n  {c}" for c in changed))
            return 0
        chapters = args.chapters if args.chapters.is_dir() else None
        problems = exercises.check(args.solutions, args.exercises, chapters)
        if problems:
            print("coursekit check failed:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        n = len(list(args.solutions.glob("*.ipynb")))
        print(f"exercises: {n} up to date, no answer or hidden test leaked; kernelspecs as JupyterLab writes them")
        return 0
    except (exercises.MarkerError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _execute(argv: list[str]) -> int:
    from .execute import execute_notebook

    p = argparse.ArgumentParser(prog="coursekit execute")
    p.add_argument("notebooks", nargs="+", type=Path)
    p.add_argument("--timeout", type=int, default=600, help="seconds a cell may run")
    args = p.parse_args(argv)
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
            lines = str(exc).strip().splitlines()
            print(f"{nb}: FAILED, left unchanged: {type(exc).__name__}: {lines[-1] if lines else ''}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except ModuleNotFoundError as exc:  # gvlib installed without the course extra
        print(f"coursekit needs the course's extra packages ({exc}); install them with "
              "`pip install -e \".[course]\"` in the course's folder (make lab and make test do)", file=sys.stderr)
        return 2


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd in ("build", "check"):
        return _build_or_check(cmd, rest)
    if cmd == "execute":
        return _execute(rest)
    if cmd == "grade":
        from .grade import main as grade_main
        return grade_main(rest)
    if cmd == "bench":
        from .bench import main as bench_main
        return bench_main(rest) or 0
    if cmd in ("book", "slides", "gallery", "claims", "workspace"):
        import importlib
        return importlib.import_module(f"coursekit.{cmd}").main(rest)
    print(f"coursekit: unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
