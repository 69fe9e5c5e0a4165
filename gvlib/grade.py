"""`python -m gvlib.grade NOTEBOOK ...` is kept for lecturers' scripts: it is `coursekit grade NOTEBOOK ...`.

The grader is course tooling and lives in the `coursekit` package; it needs the course's extra
(`pip install -e ".[course]"`, which `make lab` and `make test` install).
"""
import sys


def main(argv=None) -> int:
    """Run `coursekit grade` with these arguments (see `coursekit grade --help`)."""
    try:
        from coursekit.grade import main as grade_main
    except ImportError as exc:
        print(f"python -m gvlib.grade needs the course tooling (coursekit and Jupyter): {exc}.\n"
              "Install it with `pip install -e \".[course]\"` from the course's folder (make lab / make test do).",
              file=sys.stderr)
        return 2
    return grade_main(argv)


if __name__ == "__main__":
    sys.exit(main())
