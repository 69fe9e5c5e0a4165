"""A learner's working copy of the course: ``coursekit workspace [--refresh] [--dest my-work]``.

The committed notebooks are what ``git pull`` updates; running them changes their stored outputs, and the next
pull then conflicts. So ``make lab`` opens copies instead: ``my-work/`` (ignored by git) gets ``chapters/``,
``exercises/`` and ``results/`` as they are in the course, and the learner runs and edits those.

- A first run copies every file that is not there yet. Later runs never touch a file that exists.
- ``--refresh`` brings in the course's newer versions. A copy the learner has not changed (its bytes are still
  those copied, as recorded in ``my-work/.workspace.json``) is replaced by the new version. A copy the learner
  changed is kept as it is, and the new version is written beside it as ``NAME.updated.ipynb`` for them to
  compare. Nothing is ever deleted; a file the course removed stays in my-work/.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

__all__ = ["sync", "main", "FOLDERS", "MANIFEST"]

#: What is copied: the notebooks a learner opens, and the results files chapter 07 reads (../results from chapters/).
FOLDERS = ("chapters", "exercises", "results")
MANIFEST = ".workspace.json"
_PATTERNS = {"chapters": ("*.ipynb",), "exercises": ("*.ipynb",), "results": ("*.json", "*.md")}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _updated_name(path: Path) -> Path:
    """NAME.updated.ipynb beside NAME.ipynb (NAME.updated.1.ipynb, ... if the learner kept an older one)."""
    candidate, n = path.with_name(f"{path.stem}.updated{path.suffix}"), 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}.updated.{n}{path.suffix}")
    return candidate


def _copy(src: Path, dst: Path) -> None:
    """Copy atomically (a temporary file renamed into place), so an interrupted copy leaves no half file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def sync(course: Path, dest: Path, refresh: bool = False) -> dict[str, list[str]]:
    """Copy the course's notebooks into `dest` as described above; -> {"copied", "updated", "kept", "beside"}.

    "beside" lists "RELPATH -> NEW RELPATH" for each changed copy whose new version was written next to it.
    """
    course, dest = Path(course), Path(dest)
    if not (course / "chapters").is_dir():
        raise FileNotFoundError(f"{course.resolve()} has no chapters/ folder: run this in the course's folder "
                                "(or pass --course)")
    if dest.resolve() == course.resolve() or dest.resolve() in [(course / f).resolve() for f in FOLDERS]:
        raise ValueError(f"--dest {dest} would copy the course onto itself: choose a folder of its own")
    manifest_path = dest / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except (ValueError, OSError) as exc:  # a damaged manifest: treat every existing copy as the learner's own
        print(f"workspace: {manifest_path} is unreadable ({exc}); existing copies are treated as changed by you",
              file=sys.stderr)
        manifest = {}
    report = {"copied": [], "updated": [], "kept": [], "beside": []}
    for folder in FOLDERS:
        for pattern in _PATTERNS[folder]:
            for src in sorted((course / folder).glob(pattern)):
                rel = f"{folder}/{src.name}"
                dst = dest / rel
                new = _digest(src)
                if not dst.exists():
                    _copy(src, dst)
                    manifest[rel] = new
                    report["copied"].append(rel)
                    continue
                if not refresh or manifest.get(rel) == new:
                    report["kept"].append(rel)
                    continue
                if _digest(dst) == manifest.get(rel):  # untouched by the learner: take the new version
                    _copy(src, dst)
                    manifest[rel] = new
                    report["updated"].append(rel)
                elif _digest(dst) == new:  # the learner's copy already is the new version
                    manifest[rel] = new
                    report["kept"].append(rel)
                else:  # the learner's work: keep it, put the new version beside it
                    beside = _updated_name(dst)
                    _copy(src, beside)
                    manifest[rel] = new
                    report["beside"].append(f"{rel} -> {beside.relative_to(dest).as_posix()}")
    dest.mkdir(parents=True, exist_ok=True)
    tmp = manifest_path.with_name(MANIFEST + ".part")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, manifest_path)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="coursekit workspace", description=__doc__.split("\n")[0])
    p.add_argument("--course", type=Path, default=Path("."), help="the course's folder (default: the current one)")
    p.add_argument("--dest", type=Path, default=Path("my-work"), help="the working copy (default: my-work)")
    p.add_argument("--refresh", action="store_true",
                   help="bring in the course's newer notebooks (your changed ones are kept; the new version goes beside)")
    args = p.parse_args(argv)
    try:
        report = sync(args.course, args.dest, args.refresh)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"workspace {args.dest}: {len(report['copied'])} copied, {len(report['updated'])} updated, "
          f"{len(report['kept'])} left as they were")
    for pair in report["beside"]:
        mine, new = pair.split(" -> ")
        print(f"  you changed {mine}: it is kept as it is, and the course's new version is beside it as {new}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
