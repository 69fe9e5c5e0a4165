"""The course as a static website: jupyter-book 1.x over the committed, executed notebooks (never re-executed).

    coursekit book [--out build/book] [--mathjax cdn|local] [--no-strict]

The sources are staged in OUT/src, so nothing in the repository is written: book/_config.yml, a table of contents
made from the notebooks present (chapters/NN_*.ipynb in order, then exercises/NN_*.ipynb), the landing page made from
README.md (its opening, the chapter table and the gallery) and copies of the notebooks in which a widget view (the
notebooks store no widget state, so no page could draw it) is replaced by a one-line note. The build runs with
warnings as errors and nit-picky references (-W -n --keep-going). The site is OUT/_build/html/index.html.

MathJax: `cdn` (the default) loads it as the theme does, from its CDN; `local` copies MathJax from the npm cache of
`make web-assets` (build/web/node_modules/mathjax) into the site, so the pages render offline (CI's browser test).
"""
from __future__ import annotations

import argparse
import copy
import html
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import yaml

from .webassets import DEFAULT_NODE_MODULES, copy_mathjax

__all__ = ["stage", "build", "landing_page", "toc", "replace_widget_views", "markdown_problems", "main",
           "WIDGET_VIEW", "BookError"]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# The README sections that the landing page keeps, besides its opening (title and first paragraphs).
LANDING_SECTIONS = ("Contents", "Gallery")


class BookError(RuntimeError):
    """A notebook's markdown that the website would render wrongly, and that book/allow.yml does not allow."""


# A line that Markdown reads as a list item or a heading, which ends the paragraph an inline $$...$$ sits in. Any
# indentation counts: inside a list item, a line indented past the item's text starts a nested list.
_BREAKS_PARAGRAPH = re.compile(r"^\s*([-+*]|\d{1,9}[.)]|#{1,6})(\s|$)")


def markdown_problems(nb) -> list[tuple[int, str, str]]:
    """Markdown cells whose $$...$$ the website cannot render: [(cell index, cell id, why)].

    JupyterLab lifts the math out before it parses the Markdown, so these look right there; Sphinx (and GitHub)
    parse the Markdown first. A line inside the math that starts like a list item (`+ `, `- `, `* `, `1. `) or a
    heading, or a blank line inside it, ends the paragraph, and the equation is shown as raw TeX.
    """
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        text = re.sub(r"```.*?```", "", cell.source, flags=re.S)
        text = re.sub(r"`[^`\n]*`", "", text)
        parts = text.split("$$")
        for k, math in enumerate(parts):
            if k % 2 == 0:
                continue
            before = parts[k - 1].rstrip(" ")
            if k == 1 and not before.strip() or before.endswith("\n\n"):
                continue  # a $$ block in a paragraph of its own: Markdown keeps it whole
            lines = math.split("\n")
            bad = next((ln for ln in lines[1:] if _BREAKS_PARAGRAPH.match(ln) or not ln.strip()), None)
            if bad is not None:
                what = "a blank line" if not bad.strip() else f"a line starting {bad.strip()[:2]!r}"
                out.append((i, cell.get("id", ""), f"{what} inside $$...$$ ends the paragraph in Markdown, so the "
                            f"equation shows as raw TeX on the website: start the line with something else, or put "
                            f"the $$ block in a paragraph of its own ({lines[0].strip()[:40]!r}...)"))
                break
    return out


def _allowed(root: Path) -> set[tuple[str, str]]:
    path = root / "book" / "allow.yml"
    entries = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None
    return {(e["notebook"], str(e["cell"])) for e in entries or []}


def _numbered(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("[0-9][0-9]*_*.ipynb"))


def toc(chapters: list[str], exercises: list[str]) -> dict:
    """jupyter-book's _toc.yml: the landing page, the chapters in order, then the exercises (paths without suffix)."""
    parts = [{"caption": "Chapters", "chapters": [{"file": c} for c in chapters]}]
    if exercises:
        parts.append({"caption": "Exercises", "chapters": [{"file": e} for e in exercises]})
    return {"format": "jb-book", "root": "index", "parts": parts}


def _sections(markdown: str) -> list[tuple[str, str]]:
    """README split at its `## ` headings: [(heading or '', text)], the opening first."""
    out: list[tuple[str, str]] = []
    heading, lines = "", []
    fence = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fence = not fence
        if not fence and line.startswith("## "):
            out.append((heading, "\n".join(lines)))
            heading, lines = line[3:].strip(), []
        lines.append(line)
    out.append((heading, "\n".join(lines)))
    return out


def landing_page(readme: str, sections=LANDING_SECTIONS) -> str:
    """The website's index page: the README's opening and the sections named (the chapter table, the gallery)."""
    kept = [text for heading, text in _sections(readme) if heading == "" or heading in sections]
    return "\n\n".join(t.strip() for t in kept) + "\n"


def _widget_note(output) -> dict:
    plain = output.get("data", {}).get("text/plain", "")
    plain = "".join(plain) if isinstance(plain, list) else plain
    controls = re.findall(r"description='([^']*)'", plain)
    which = f" (controls: {', '.join(controls)})" if controls else ""
    text = (f"Interactive widget{which}: it runs in JupyterLab, not on this page. "
            "The chapter draws the same sweep as a static figure beside it.")
    return nbformat.v4.new_output("display_data", data={
        "text/html": f'<p class="course-widget-note"><em>{html.escape(text)}</em></p>', "text/plain": text})


def replace_widget_views(nb) -> int:
    """Replace each widget view by a note when the notebook stores no widget state; returns how many."""
    if WIDGET_STATE in nb.metadata.get("widgets", {}):
        return 0
    n = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for i, out in enumerate(cell.get("outputs", [])):
            if WIDGET_VIEW in out.get("data", {}):
                cell.outputs[i] = _widget_note(out)
                n += 1
    return n


def stage(root: Path, src: Path, mathjax: str = "cdn", web: Path | None = None, strict: bool = True) -> Path:
    """Write the book's sources into `src` (emptied first) from the repository at `root`; returns `src`."""
    root, src = Path(root), Path(src)
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    config = yaml.safe_load((root / "book" / "_config.yml").read_text(encoding="utf-8"))
    if mathjax == "local":
        # Not under _static/: jupyter-book would add every .js file found there to every page.
        copy_mathjax(src / "_mathjax" / "mathjax", web or root / DEFAULT_NODE_MODULES)
        sphinx = config.setdefault("sphinx", {}).setdefault("config", {})
        sphinx["html_static_path"] = [*sphinx.get("html_static_path", []), "_mathjax"]
        sphinx["mathjax_path"] = "mathjax/tex-mml-chtml.js"
    elif mathjax != "cdn":
        raise ValueError(f"mathjax must be 'cdn' or 'local', got {mathjax!r}")
    (src / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    chapters, exercises = [], []
    allowed, used, problems = _allowed(root), set(), []
    for folder, listed in (("chapters", chapters), ("exercises", exercises)):
        for path in _numbered(root / folder):
            nb = nbformat.read(path, as_version=4)
            name = f"{folder}/{path.name}"
            for i, cid, why in markdown_problems(nb):
                if (name, cid) in allowed:
                    used.add((name, cid))
                    print(f"book: allowed by book/allow.yml: {name} cell {i} (id {cid}): {why}", file=sys.stderr)
                else:
                    problems.append(f"{name} cell {i} (id {cid}): {why}")
            replace_widget_views(nb)
            (src / folder).mkdir(exist_ok=True)
            nbformat.write(nb, src / folder / path.name)
            listed.append(f"{folder}/{path.stem}")
    if not chapters:
        raise FileNotFoundError(f"no chapters/NN_*.ipynb under {root}")
    for name, cid in sorted(allowed - used):
        print(f"book: book/allow.yml allows {name} cell id {cid}, which renders now: remove the entry", file=sys.stderr)
    if problems and strict:
        raise BookError("markdown the website would render wrongly:\n  " + "\n  ".join(problems))
    for p in problems:
        print(f"book: warning: {p}", file=sys.stderr)
    (src / "_toc.yml").write_text(yaml.safe_dump(toc(chapters, exercises), sort_keys=False), encoding="utf-8")
    (src / "index.md").write_text(landing_page((root / "README.md").read_text(encoding="utf-8")), encoding="utf-8")
    gallery = root / "book" / "gallery"
    if gallery.is_dir():
        shutil.copytree(gallery, src / "book" / "gallery")
    return src


def build(root: Path = Path("."), out: Path = Path("build/book"), mathjax: str = "cdn", strict: bool = True,
          web: Path | None = None) -> Path:
    """Stage and build the website; returns the folder of its HTML. Raises CalledProcessError on a warning."""
    out = Path(out).resolve()
    src = stage(Path(root), out / "src", mathjax=mathjax, web=web, strict=strict)
    if (out / "_build").exists():
        shutil.rmtree(out / "_build")
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(src),
           "--path-output", str(out), "--builder", "html", "--all", "-q"]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    subprocess.run(cmd, check=True)
    return out / "_build" / "html"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="coursekit book", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path("."), help="the course's folder (default: .)")
    p.add_argument("--out", type=Path, default=Path("build/book"), help="build folder (default: build/book)")
    p.add_argument("--mathjax", choices=("cdn", "local"), default="cdn",
                   help="cdn: as the theme loads it (default); local: a copy from `make web-assets`, for offline use")
    p.add_argument("--web", type=Path, default=None, help="node_modules of `make web-assets` (default: build/web/node_modules)")
    p.add_argument("--no-strict", dest="strict", action="store_false", help="do not turn warnings into errors")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        html_dir = build(args.root, args.out, args.mathjax, args.strict, args.web)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BookError as exc:
        print(f"coursekit book: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError:
        print("coursekit book: the build failed or warned (warnings are errors); see the messages above",
              file=sys.stderr)
        return 1
    print(f"book: {html_dir / 'index.html'} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
