"""The course map, read from the notebooks themselves so it cannot go stale.

    rows = course_map()          # one CourseEntry per chapters/NN_*.ipynb, found from the working directory up
    print(map_markdown(rows))    # a Markdown table: chapter, title, one line, run time, exercises

Each entry holds the chapter's title (its `# NN · Title` heading), the first sentence of its introduction, the run
time recorded in the README's chapter table (or, failing that, the notebook's own execution timestamps), its graded
exercises from solutions/NN_*.ipynb (nbgrader metadata: graded code cells, points, written answers), and how often its
text names each family of generative models (`FAMILIES`). Notebooks are read as JSON: no Jupyter is needed.

A pip-installed gvlib has no notebooks beside it: `find_course_root` then returns None and `course_map` raises
FileNotFoundError saying where it looked and how to point it at a checkout (`root=` or $GVLIB_COURSE_ROOT).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

__all__ = ["FAMILIES", "CourseEntry", "find_course_root", "course_map", "map_markdown", "family_shares"]

# Families of generative models and the words that name them in a chapter's prose (case-insensitive regexes).
FAMILIES = {
    "latent-variable (VAE)": r"\blatent|\bVAEs?\b|\bELBO\b|\bencoder",
    "autoregressive": r"autoregressive|PixelCNN|WaveNet|\bPixelRNN",
    "flows (not in this course)": r"normali[sz]ing flows?|\bRealNVP\b|\bGlow\b|\bflows \(not",
    "implicit / adversarial (GAN)": r"\bGANs?\b|adversarial|discriminator",
    "energy- and score-based": r"energy-based|(?<!free )\benergy\b|\bRBMs?\b|Boltzmann|score matching|score-based|score of the data|diffusion",
}


@dataclass
class CourseEntry:
    number: str                      # "01"
    title: str                       # "The evidence lower bound (ELBO)"
    summary: str                     # the first sentence of the introduction
    notebook: Path                   # relative to the course root
    seconds: float | None            # run time as recorded (README table, else the notebook's timestamps)
    exercises: int = 0               # graded code exercises in solutions/NN_*.ipynb
    points: float = 0.0
    written: int = 0                 # written (ungraded or graded markdown) answers
    mentions: dict = field(default_factory=dict)   # family -> number of times the prose names it


def find_course_root(start: str | os.PathLike | None = None) -> Path | None:
    """The nearest folder at or above `start` (default: $GVLIB_COURSE_ROOT, else the working directory) with chapters/."""
    env = os.environ.get("GVLIB_COURSE_ROOT")
    here = Path(start if start is not None else (env or os.getcwd())).resolve()
    for folder in (here, *here.parents):
        if (folder / "chapters").is_dir() and any((folder / "chapters").glob("[0-9][0-9]*_*.ipynb")):
            return folder
    return None


def _markdown_cells(nb) -> list[str]:
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in nb.get("cells", []) if c.get("cell_type") == "markdown"]


def _plain(text: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)        # links: keep the words
    text = re.sub(r"\*\*|`", "", text)
    text = re.sub(r"^\s*[-*]\s+", "", text, flags=re.M)         # bullets
    return re.sub(r"\s+", " ", text).strip()


def _title_and_summary(cells: list[str], fallback: str) -> tuple[str, str]:
    for text in cells:
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("# "):
                title = re.sub(r"^\d\d[a-z]?\s*[·:.-]\s*", "", line[2:].strip())
                body = _plain("\n".join(lines[i + 1:]).split("\n## ")[0])
                parts = re.split(r"(?<=[.!?])\s", body) if body else [""]
                sentence = parts[0] if len(parts[0]) >= 60 or len(parts) == 1 else parts[0] + " " + parts[1]
                if len(sentence) > 170:
                    cut = sentence[:167].rsplit(" ", 1)[0]
                    if cut.count("$") % 2:                      # never cut inside inline maths
                        cut = cut[:cut.rfind("$")].rstrip()
                    sentence = cut + " …"
                return title, sentence
    return fallback, ""


def _stamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _notebook_seconds(nb) -> float | None:
    starts, ends = [], []
    for cell in nb.get("cells", []):
        ex = cell.get("metadata", {}).get("execution", {}) if cell.get("cell_type") == "code" else {}
        start, end = ex.get("iopub.execute_input"), ex.get("shell.execute_reply")
        if start and end:
            starts.append(_stamp(start))
            ends.append(_stamp(end))
    return (max(ends) - min(starts)).total_seconds() if starts else None


def _readme_seconds(root: Path) -> dict[str, float]:
    """Run times of the README's generated chapter table: '| 01 | [Title](chapters/01_x.ipynb) | 4 s | ...'."""
    readme = root / "README.md"
    if not readme.is_file():
        return {}
    out = {}  # keyed by the notebook's file name: the three parts of chapter 09 share the number "09"
    for m in re.finditer(r"^\|\s*\d\d[a-z]?\s*\|[^|]*\]\(chapters/([^)|]+\.ipynb)\)[^|]*\|\s*(\d+(?:\.\d+)?)\s*s\s*\|",
                         readme.read_text(encoding="utf-8"), re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def _exercises(path: Path) -> tuple[int, float, int]:
    if not path.is_file():
        return 0, 0.0, 0
    nb = json.loads(path.read_text(encoding="utf-8"))
    graded, points, written = 0, 0.0, 0
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if not meta.get("grade"):
            continue
        if cell.get("cell_type") == "markdown":
            written += 1
        else:
            graded += 1
            points += float(meta.get("points", 0))
    return graded, points, written


def course_map(root: str | os.PathLike | None = None) -> list[CourseEntry]:
    """One CourseEntry per chapters/NN_*.ipynb under the course root (see `find_course_root`), in chapter order."""
    found = Path(root).resolve() if root is not None else find_course_root()
    if found is None or not (found / "chapters").is_dir():
        raise FileNotFoundError(
            f"no course checkout (a folder with chapters/NN_*.ipynb) at or above {root or os.getcwd()}: the course map "
            "is read from the notebooks, which a pip-installed gvlib does not carry; pass root= or set "
            "$GVLIB_COURSE_ROOT to a checkout of the course")
    readme = _readme_seconds(found)
    entries = []
    for path in sorted((found / "chapters").glob("[0-9][0-9]*_*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = _markdown_cells(nb)
        title, summary = _title_and_summary(cells, path.stem)
        number = path.name.split("_", 1)[0]                 # "04", or "04b" for a chapter split in two
        prose = " ".join(cells)
        graded, points, written = _exercises(found / "solutions" / path.name)
        entries.append(CourseEntry(
            number=number, title=title, summary=summary, notebook=path.relative_to(found),
            seconds=readme.get(path.name, _notebook_seconds(nb)), exercises=graded, points=points, written=written,
            mentions={fam: len(re.findall(rx, prose, flags=re.I)) for fam, rx in FAMILIES.items()}))
    return entries


def family_shares(entries: list[CourseEntry]):
    """(chapters, families) array: the share of each chapter's family mentions that name each family (rows sum to 1)."""
    import numpy as np

    counts = np.array([[e.mentions.get(f, 0) for f in FAMILIES] for e in entries], dtype=float)
    totals = counts.sum(1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def map_markdown(entries: list[CourseEntry]) -> str:
    """The map as a Markdown table: chapter, title and first sentence, run time, exercises."""
    lines = ["| | chapter | run time | exercises |", "| --- | --- | --- | --- |"]
    for e in entries:
        time = f"{e.seconds:.0f} s" if e.seconds is not None else "not run yet"
        ex = (f"{e.exercises} graded, {e.points:g} points" + (f", {e.written} written" if e.written else "")
              if e.exercises or e.written else "none yet")
        lines.append(f"| {e.number} | **{e.title}**: {e.summary} | {time} | {ex} |")
    return "\n".join(lines)
