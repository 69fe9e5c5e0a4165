"""A whole class at a time: `coursekit grade FOLDER` grades every submission in it and writes a gradebook.

    coursekit grade submitted/ --solutions PRIVATE/solutions --out grades/ -j 2
    coursekit grade submitted/ --solutions PRIVATE/solutions --out grades/ --shard 3/20   # one part (Slurm array)
    coursekit grade submitted/ --solutions PRIVATE/solutions --out grades/ --collect      # gradebook from the parts

Layouts it reads (both at once):
- ``submitted/<student>/<notebook>.ipynb``: the folder is the student, the file name picks the master;
- ``submitted/<file>.ipynb`` as an LMS downloads them (``smithjane_12345_67890_03_closed_form_kl-1.ipynb``,
  ``Jane Smith_12345_assignsubmission_file_03_closed_form_kl (1).ipynb``): the file is matched to the master
  whose name it contains (the longest), and the student is what comes before that name.
Two files of one student for one master: the newest (modification time) is graded; the summary names the other.
A symbolic link (file or student folder) is never followed: it scores 0 and the summary says so.

It writes, in --out:
- ``parts/<student>/<master>.json``: one report per submission (coursekit grade's JSON, plus the submission's
  SHA-256 and the grading's fingerprint). A re-run grades only submissions that are new or changed (another
  hash, another master, other options) or whose grading did not finish; --force grades all again.
- ``gradebook.csv``: one row per student, a column per exercise (``<master>:<exercise>``), per master and in all.
- ``feedback/<student>.md``: per notebook, each exercise's points, verdict and message, and the student's
  written answers (for the lecturer to read and mark).
- ``summary.md``: counts, time, and every failure (not a notebook, a link, grading incomplete, unmatched file).

Sharding: --shard K/N grades the K-th of N parts (0 <= K < N, a fixed split of the sorted submissions) and writes
only its parts; --collect builds the gradebook, feedback and summary from every part already written.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import stat
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import sandbox as _sandbox
from .grade import (GradeError, GradingFailed, Master, Report, Trusted, _choose_sandbox, _read_bytes,
                    add_common_options, check_common_options, course_solutions, grade_submission, load_master,
                    read_submission, report_payload, write_report, NO_SANDBOX_WARNING)

__all__ = ["Entry", "find_submissions", "grade_class", "collect", "main"]
PART_VERSION = 1


@dataclass
class Entry:
    student: str
    master: str          # the master's file stem
    path: Path
    problem: str = ""    # why it cannot be graded (a link, ...), else ""
    superseded: list[str] = field(default_factory=list)


def _norm(name: str) -> str:
    """A file name as compared with the masters': lower case, copies' '(1)' and resubmissions' '-1' dropped."""
    stem = name[:-6] if name.lower().endswith(".ipynb") else name
    stem = re.sub(r"\s*\(\d+\)$", "", stem)
    stem = re.sub(r"-\d+$", "", stem)
    return re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")


def _match(name: str, masters: dict[str, Path]) -> tuple[str | None, str]:
    """(the master's stem, the text before it in the name) for a submission's file name; (None, "") if none."""
    n = _norm(name)
    best = None
    for stem in masters:
        m = _norm(stem)
        if n == m:
            return stem, ""
        if re.search(rf"(^|_){re.escape(m)}($|_)", n) and (best is None or len(m) > len(_norm(best))):
            best = stem
    if best is None:
        return (next(iter(masters)), n) if len(masters) == 1 else (None, "")
    m = _norm(best)
    before = n[: re.search(rf"(^|_){re.escape(m)}($|_)", n).start()].strip("_")
    return best, before


def _student_of_flat(before: str) -> str:
    """The student part of an LMS name: 'smithjane_12345_67890' -> 'smithjane_12345' (Canvas: name_userid_subid),
    'jane_smith_12345_assignsubmission_file' -> 'jane_smith_12345' (Moodle)."""
    before = re.sub(r"_assignsubmission_(file|onlinetext)$", "", before)
    parts = before.split("_")
    if len(parts) >= 3 and parts[-1].isdigit() and parts[-2].isdigit():
        parts = parts[:-1]  # Canvas: the submission id changes with each upload; the user id stays
    return "_".join(parts) or "unknown"


def find_submissions(root: Path, masters: dict[str, Path]) -> tuple[list[Entry], list[str]]:
    """The submissions under `root` (see the module's doc); -> (entries, notes on files not graded)."""
    found: dict[tuple[str, str], list[Entry]] = {}
    notes: list[str] = []

    def add(student: str, path: Path, problem: str = ""):
        stem, before = _match(path.name, masters)
        if stem is None:
            notes.append(f"{path}: matches no master ({', '.join(sorted(masters))}); not graded")
            return
        student = student or _student_of_flat(before)
        found.setdefault((student, stem), []).append(Entry(student, stem, path, problem))

    for item in sorted(root.iterdir()):
        if item.name.startswith("."):
            continue
        st = os.lstat(item)
        if stat.S_ISLNK(st.st_mode):
            if item.name.lower().endswith(".ipynb"):
                add("", item, "a symbolic link, not a regular file: not graded")
            else:
                notes.append(f"{item}: a symbolic link to a folder; not followed, nothing in it graded")
            continue
        if stat.S_ISDIR(st.st_mode):
            for sub in sorted(item.rglob("*.ipynb")):
                rel = sub.relative_to(item)
                if any(p.startswith(".") for p in rel.parts):
                    continue  # .ipynb_checkpoints and the like
                if any(os.path.islink(item.joinpath(*rel.parts[:k])) for k in range(1, len(rel.parts))):
                    notes.append(f"{sub}: under a symbolic link; not followed")
                    continue
                problem = "" if stat.S_ISREG(os.lstat(sub).st_mode) else \
                    "a symbolic link or special file, not a regular file: not graded"
                add(item.name, sub, problem)
        elif item.name.lower().endswith(".ipynb"):
            add("", item, "" if stat.S_ISREG(st.st_mode) else "not a regular file: not graded")
    entries = []
    for (student, stem), group in sorted(found.items()):
        def mtime(e):
            try:
                return os.lstat(e.path).st_mtime
            except OSError:
                return 0.0
        group.sort(key=lambda e: (mtime(e), str(e.path)))
        chosen = group[-1]
        chosen.superseded = [str(e.path) for e in group[:-1]]
        entries.append(chosen)
    return entries, notes


def _safe_name(student: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", student).strip("._") or "student"
    return name[:100]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _part_path(out: Path, entry: Entry) -> Path:
    return out / "parts" / _safe_name(entry.student) / f"{entry.master}.json"


def _load_part(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            part = json.load(f)
        return part if isinstance(part, dict) and part.get("version") == PART_VERSION else None
    except (OSError, ValueError):
        return None


@dataclass
class Options:
    sandbox: str
    timeout: float
    budget: float
    restarts: int
    memory: int
    trusted_memory: int

    def fingerprint(self) -> str:
        return _sha256(json.dumps(asdict(self), sort_keys=True).encode())[:16]


def grade_class(root: Path, masters: dict[str, Path], out: Path, opts: Options, jobs: int = 1,
                shard: tuple[int, int] = (0, 1), force: bool = False, log=None, progress=None) -> dict:
    """Grade every new or changed submission under `root` into out/parts; -> {"graded", "kept", "seconds", "notes"}."""
    t0 = time.monotonic()
    entries, notes = find_submissions(root, masters)
    k, n = shard
    entries = [e for i, e in enumerate(entries) if i % n == k]
    loaded: dict[str, Master] = {}
    master_sha = {}
    for stem, path in masters.items():
        loaded[stem] = load_master(path)
        master_sha[stem] = _sha256(_read_bytes(path, "master notebook"))
    fingerprint = opts.fingerprint()
    todo = []
    kept = 0
    for e in entries:
        part_path = _part_path(out, e)
        try:
            data = b"" if e.problem else _read_bytes(e.path, "student notebook")
            sha = _sha256(data)
        except GradeError as exc:
            e.problem, sha = str(exc), ""
        old = None if force else _load_part(part_path)
        if old and old.get("sha256") == sha and old.get("master_sha256") == master_sha[e.master] \
                and old.get("fingerprint") == fingerprint and old.get("status") in ("graded", "invalid") \
                and old.get("path") == str(e.path):
            kept += 1
            continue
        todo.append((e, sha))
    local = threading.local()
    all_trusted: list[Trusted] = []
    lock = threading.Lock()
    limits = _sandbox.Limits(memory=opts.memory)
    limits.cpu_seconds = int(max(limits.cpu_seconds, opts.budget + 30))
    done_count = [0]

    def trusted_for(stem: str) -> Trusted:
        pool = getattr(local, "pool", None)
        if pool is None:
            pool = local.pool = {}
        if stem not in pool:
            pool[stem] = Trusted(loaded[stem], opts.sandbox, _sandbox.Limits(**asdict(limits)), opts.timeout,
                                 opts.budget, opts.restarts, opts.trusted_memory)
            with lock:
                all_trusted.append(pool[stem])
        return pool[stem]

    def one(item):
        e, sha = item
        master = loaded[e.master]
        started = time.monotonic()
        part = {"version": PART_VERSION, "student": e.student, "master": e.master, "path": str(e.path),
                "sha256": sha, "master_sha256": master_sha[e.master], "fingerprint": fingerprint,
                "superseded": e.superseded, "max_score": master.max_score}
        try:
            if e.problem:
                raise GradeError(e.problem)
            sub = read_submission(e.path, master)
            report = grade_submission(trusted_for(e.master), sub, [root.resolve(), out.resolve()], log)
            part.update(report_payload(e.path, report))
            part["status"] = "graded" if report.complete else "incomplete"
        except GradeError as exc:
            part.update(status="invalid", error=str(exc), score=0.0, exercises=[
                {"exercise": ex.grade_id, "points": ex.points, "score": 0.0, "passed": False,
                 "error": "not graded: the submission is not a valid notebook"} for ex in master.exercises],
                written=[])
        except GradingFailed as exc:
            part.update(status="failed", error=str(exc), score=0.0, exercises=[], written=[])
        except Exception as exc:  # the grader's own failure on one submission must not stop the class
            part.update(status="failed", error=f"{type(exc).__name__}: {exc}", score=0.0, exercises=[], written=[])
        part["wall_seconds"] = round(time.monotonic() - started, 2)
        path = _part_path(out, e)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_report(path, part)
        with lock:
            done_count[0] += 1
            if progress:
                print(f"[{done_count[0]}/{len(todo)}] {e.student} {e.master}: {part['status']} "
                      f"{part.get('score', 0):g}/{master.max_score:g} ({part['wall_seconds']:.1f} s)",
                      file=progress, flush=True)
        return part

    try:
        if jobs <= 1:
            for item in todo:
                one(item)
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                list(pool.map(one, todo))
    finally:
        for t in all_trusted:
            t.close()
    return {"graded": len(todo), "kept": kept, "seconds": round(time.monotonic() - t0, 1), "notes": notes}


def _csv_cell(value) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}markdown\n{text}\n{fence}"


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def collect(out: Path, masters: dict[str, Path], extra_notes: list[str] = ()) -> dict:
    """gradebook.csv, feedback/<student>.md and summary.md from out/parts; -> the summary's figures."""
    loaded = {stem: load_master(path) for stem, path in masters.items()}
    parts: dict[str, dict[str, dict]] = {}
    for path in sorted((out / "parts").glob("*/*.json")):
        part = _load_part(path)
        if part and part.get("master") in loaded and isinstance(part.get("student"), str):
            parts.setdefault(part["student"], {})[part["master"]] = part
    stems = sorted(loaded)
    columns = [(stem, ex.grade_id) for stem in stems for ex in loaded[stem].exercises]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student"] + [f"{s}:{g}" for s, g in columns] + [f"{s}:total" for s in stems] + ["total", "max", "status"])
    maximum = sum(loaded[s].max_score for s in stems)
    failures = []
    for student in sorted(parts):
        row = [_csv_cell(student)]
        mine = parts[student]
        for stem, gid in columns:
            ex = next((x for x in mine.get(stem, {}).get("exercises", []) if x.get("exercise") == gid), None)
            row.append(f"{ex['score']:g}" if ex and isinstance(ex.get("score"), (int, float)) else "")
        totals = [mine[s].get("score", 0.0) if s in mine else "" for s in stems]
        row += [f"{t:g}" if t != "" else "" for t in totals]
        row += [f"{sum(t for t in totals if t != ''):g}", f"{maximum:g}"]
        statuses = sorted({p.get("status", "?") for p in mine.values()})
        row.append(",".join(statuses) + ("" if len(mine) == len(stems) else ",missing"))
        w.writerow(row)
        for stem, p in sorted(mine.items()):
            if p.get("status") != "graded":
                failures.append(f"{student} / {stem}: {p.get('status')}: {p.get('error') or 'grading did not finish'}"
                                f" ({p.get('path')})")
            for other in p.get("superseded", []):
                failures.append(f"{student} / {stem}: {other} not graded, a newer file was ({p.get('path')})")
        _write_feedback(out, student, mine, loaded)
    (out / "gradebook.csv").write_text(buf.getvalue(), encoding="utf-8")
    statuses: dict[str, int] = {}
    cpu = wall = 0.0
    for mine in parts.values():
        for p in mine.values():
            statuses[p.get("status", "?")] = statuses.get(p.get("status", "?"), 0) + 1
            c = p.get("cpu_seconds") if isinstance(p.get("cpu_seconds"), dict) else {}
            cpu += sum(v for v in c.values() if isinstance(v, (int, float)))
            wall += p.get("wall_seconds", 0.0) if isinstance(p.get("wall_seconds"), (int, float)) else 0.0
    lines = [f"# Grading summary", "", f"{len(parts)} students, {sum(statuses.values())} submissions: "
             + ", ".join(f"{n} {k}" for k, n in sorted(statuses.items())), "",
             f"Grading took {wall:.0f} s of wall-clock time per worker in all and {cpu:.0f} CPU seconds (the trusted "
             "processes' and the sandboxes'; the grader's own start-up is not in it).", ""]
    lines += ["## Needs a look", ""] + [f"- {f}" for f in failures + list(extra_notes)] if failures or extra_notes \
        else ["Every submission was graded to the end."]
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"students": len(parts), "statuses": statuses, "failures": failures + list(extra_notes), "cpu": cpu,
            "wall": wall}


def _write_feedback(out: Path, student: str, mine: dict[str, dict], loaded: dict[str, Master]) -> None:
    lines = [f"# Feedback for {student}", ""]
    for stem in sorted(loaded):
        p = mine.get(stem)
        lines += [f"## {stem}", ""]
        if p is None:
            lines += ["No submission.", ""]
            continue
        lines += [f"Score: **{p.get('score', 0):g} / {loaded[stem].max_score:g}**"
                  + ("" if p.get("status") == "graded" else f" ({p.get('status')}: {_md_cell(p.get('error', ''))})"), ""]
        if p.get("exercises"):
            lines += ["| exercise | points | verdict | message |", "| --- | --- | --- | --- |"]
            for ex in p["exercises"]:
                lines.append(f"| {_md_cell(ex.get('exercise'))} | {ex.get('score', 0):g} / {ex.get('points', 0):g} | "
                             f"{'passed' if ex.get('passed') else 'failed'} | {_md_cell(ex.get('error', ''))} |")
            lines.append("")
        for answer in p.get("written", []):
            lines += [f"### Written answer `{answer.get('grade_id')}`", ""]
            text = answer.get("text")
            lines += [_fence(text) if isinstance(text, str) else "(no answer: the cell is missing)", ""]
    folder = out / "feedback"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{_safe_name(student)}.md").write_text("\n".join(lines), encoding="utf-8")


def _masters(args) -> dict[str, Path]:
    if args.master:
        return {args.master.stem: args.master}
    folder = args.solutions or course_solutions()
    if folder is None:
        raise GradeError("pass --solutions DIR (the folder of masters) or --master PATH")
    found = {p.stem: p for p in sorted(Path(folder).glob("*.ipynb")) if not p.is_symlink()}
    if not found:
        raise GradeError(f"no masters (*.ipynb) in {folder}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="coursekit grade FOLDER", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("folder", type=Path, help="the submissions: FOLDER/<student>/<notebook>.ipynb or LMS file names")
    parser.add_argument("--out", type=Path, required=True, help="folder for parts/, gradebook.csv, feedback/, summary.md")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="submissions graded at the same time (default 1)")
    parser.add_argument("--shard", default="0/1", help="K/N: grade only the K-th of N parts (a Slurm array task)")
    parser.add_argument("--collect", action="store_true", help="grade nothing: build the gradebook from the parts")
    parser.add_argument("--force", action="store_true", help="grade every submission again, changed or not")
    parser.add_argument("-q", "--quiet", action="store_true", help="no line per submission")
    add_common_options(parser)
    args = parser.parse_args(argv)
    check_common_options(parser, args)
    try:
        k, n = (int(x) for x in args.shard.split("/"))
        assert 0 <= k < n
    except (ValueError, AssertionError):
        parser.error("--shard must be K/N with 0 <= K < N")
    if args.jobs < 1:
        parser.error("-j must be at least 1")
    try:
        masters = _masters(args)
        if not args.folder.is_dir() or args.folder.is_symlink():
            raise GradeError(f"{args.folder} is not a folder of submissions")
        args.out.mkdir(parents=True, exist_ok=True)
        notes: list[str] = []
        if not args.collect:
            if args.no_sandbox:
                print(f"warning: {NO_SANDBOX_WARNING}", file=sys.stderr)
            opts = Options("none" if args.no_sandbox else _choose_sandbox("auto"), args.timeout, args.budget,
                           args.restarts, int(args.memory * 1024 ** 3), int(args.trusted_memory * 1024 ** 3))
            done = grade_class(args.folder, masters, args.out, opts, args.jobs, (k, n), args.force,
                               log=sys.stderr if args.verbose else None, progress=None if args.quiet else sys.stderr)
            notes = done["notes"]
            print(f"graded {done['graded']} submissions, kept {done['kept']} unchanged, in {done['seconds']} s "
                  f"(-j {args.jobs})", file=sys.stderr)
            if n > 1:
                print(f"shard {k}/{n} done; build the gradebook with --collect once every shard has run",
                      file=sys.stderr)
                return 0
        summary = collect(args.out, masters, notes)
    except GradeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{summary['students']} students: " + ", ".join(f"{v} {k}" for k, v in sorted(summary["statuses"].items()))
          + f"; {len(summary['failures'])} to look at (summary.md); gradebook: {args.out / 'gradebook.csv'}")
    return 0
