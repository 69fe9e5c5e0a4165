"""Slides from the chapters: a reveal.js deck per notebook, laid out at build time from the notebook's structure.

    coursekit slides [NB ...] [--out build/slides] [--assets local|cdn]
    coursekit slides --annotate DIR [NB ...]      (copies with the slide metadata written in, for live slides)

The notebooks carry no slide metadata; `SlideLayout` derives it from their structure, in the deck's copy only:
- the title cell and each `## ` section start a slide, each `### ` a sub-slide; markdown cells are split at
  headings, and where one would overflow a slide, at paragraph breaks;
- a claim (a markdown cell that opens in bold, as **Check: ...** does) starts a sub-slide, and the check cell
  after it (`# NBVAL_CHECK_OUTPUT`) follows as a fragment, so the verdict appears on the next click;
- whatever would overflow the current slide (long derivations, figures) starts a sub-slide below it;
- code before the first section (imports, set-up) and widget cells are skipped (their static figure stays);
  code longer than CODE_MAX lines is collapsed: its output is shown, the code goes to the speaker notes (S),
  and a collapsed cell without output is skipped.
An author overrides any cell: a `slideshow.slide_type` already in its metadata (JupyterLab's property inspector
writes it, RISE reads it) is kept as it is, and the tags `slides-show-code` / `slides-hide-code` force the code
on or off.

The decks load reveal.js and MathJax 3 from `_assets/` beside them (copied from `make web-assets`'s npm cache), so
the folder works offline and can be copied as a whole; `--assets cdn` writes decks that load both from CDNs.
"""
from __future__ import annotations

import argparse
import base64
import copy
import html
import math
import re
import struct
import sys
import time
from pathlib import Path

import nbformat

from .webassets import DEFAULT_NODE_MODULES, MATHJAX3_CDN, REVEAL_CDN, copy_mathjax, copy_reveal

__all__ = ["layout", "SlideLayout", "exporter", "build", "annotate", "main", "CAPACITY", "CODE_MAX",
           "SHOW_CODE_TAG", "HIDE_CODE_TAG"]

# A 960 x 700 slide holds about this many lines of body text at the deck's font size (cell weights below).
CAPACITY = 24.0
CODE_MAX = 8
CHARS_PER_LINE = 70
LINE_PX = 25.0
SLIDE_WIDTH_PX = 900.0
SHOW_CODE_TAG = "slides-show-code"
HIDE_CODE_TAG = "slides-hide-code"
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
ASSETS = "_assets"


# ---------------------------------------------------------------------------------------------- weights
def _md_weight(text: str) -> float:
    w = 0.0
    for line in text.splitlines():
        s = line.strip()
        if not s:
            w += 0.4
        elif s.startswith("#"):
            w += 2.0
        elif s.startswith("$$") or s.startswith("\\begin") or s.startswith("\\end"):
            w += 2.0
        else:
            w += math.ceil(len(s) / CHARS_PER_LINE)
    return w


def _png_height(b64: str) -> float:
    """Displayed height in lines of a PNG output (scaled to the slide's width), from its IHDR header."""
    head = base64.b64decode("".join(b64).replace("\n", "")[:44])
    try:
        width, height = struct.unpack(">II", head[16:24])
    except struct.error:
        return CAPACITY / 2
    return height * min(1.0, SLIDE_WIDTH_PX / max(width, 1)) / LINE_PX


def _output_weight(out) -> float:
    if out.get("output_type") == "stream":
        text = "".join(out.get("text", ""))
        return 0.5 + 0.85 * min(len(text.splitlines()), 14)
    data = out.get("data", {})
    if "image/png" in data:
        return _png_height(data["image/png"])
    if "image/jpeg" in data or "image/svg+xml" in data:
        return CAPACITY / 2
    if "text/html" in data:
        return 0.85 * min(len("".join(data["text/html"]).splitlines()), 14) + 0.5
    if "text/plain" in data:
        return 0.5 + 0.85 * min(len("".join(data["text/plain"]).splitlines()), 14)
    return 1.0


def _code_weight(cell, show_input: bool) -> float:
    w = sum(_output_weight(o) for o in cell.get("outputs", []))
    if show_input:
        w += 1.0 + 0.85 * len(cell.source.splitlines())
    return w


# ---------------------------------------------------------------------------------------------- splitting
def _blocks(text: str) -> list[str]:
    """Paragraphs of a markdown text (split at blank lines outside code fences and $$ blocks); headings alone."""
    blocks, cur = [], []
    fence = dmath = False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("```") or s.startswith("~~~"):
            fence = not fence
        elif not fence and s.count("$$") % 2 == 1:
            dmath = not dmath
        if not fence and not dmath and re.match(r"#{1,6} ", line) and cur:
            blocks.append("\n".join(cur))
            cur = []
        if not fence and not dmath and not s:
            if cur:
                blocks.append("\n".join(cur))
                cur = []
            continue
        cur.append(line)
    if cur:
        blocks.append("\n".join(cur))
    return blocks


def _split_markdown(text: str) -> list[str]:
    """A markdown cell's text as chunks: a new chunk at each heading, and before a paragraph that would overflow."""
    chunks: list[list[str]] = []
    weight = 0.0
    for block in _blocks(text):
        w = _md_weight(block)
        heading = bool(re.match(r"#{1,6} ", block))
        if not chunks or heading or (weight + w > CAPACITY and not re.match(r"#{1,6} ", chunks[-1][-1])):
            chunks.append([block])
            weight = w
        else:
            chunks[-1].append(block)
            weight += w + 0.4
    return ["\n\n".join(c) for c in chunks] or [text]


# ---------------------------------------------------------------------------------------------- layout
def _slide_type(cell) -> str | None:
    st = cell.get("metadata", {}).get("slideshow", {})
    return st.get("slide_type") if isinstance(st, dict) else None


def _set(cell, slide_type: str) -> None:
    cell.metadata["slideshow"] = {"slide_type": slide_type}


def _is_widget(cell) -> bool:
    return any(WIDGET_VIEW in o.get("data", {}) for o in cell.get("outputs", []))


def _hide_input(cell) -> None:
    cell.metadata.setdefault("transient", {})["remove_source"] = True


def layout(nb, code_max: int = CODE_MAX, notes: bool = True):
    """A copy of the notebook with slide metadata derived from its structure (see the module's docstring)."""
    nb = copy.deepcopy(nb)
    heading = next((line[2:].strip() for c in nb.cells if c.cell_type == "markdown"
                    for line in c.source.splitlines() if line.startswith("# ")), None)
    if heading and "title" not in nb.metadata:
        nb.metadata["title"] = heading  # the deck's <title>
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "markdown" and _slide_type(cell) is None:
            for chunk in _split_markdown(cell.source):
                piece = copy.deepcopy(cell)
                piece.source = chunk
                piece.pop("id", None)
                cells.append(piece)
        else:
            cells.append(cell)

    out = []
    used = 0.0            # weight of the current (sub-)slide
    in_section = False    # past the first `## ` heading
    after_claim = False   # the last shown cell was a claim
    first = True
    for cell in cells:
        own = _slide_type(cell)
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell.cell_type == "markdown":
            text = cell.source.lstrip()
            w = _md_weight(text)
            if own is None:
                if first or text.startswith("# "):
                    own = "slide"
                elif text.startswith("## "):
                    own = "slide"
                elif text.startswith("### "):
                    own = "subslide"
                elif text.startswith("**"):
                    own = "subslide"
                else:
                    own = "subslide" if used + w > CAPACITY and used > 0 else "-"
                _set(cell, own)
            if text.startswith("## "):
                in_section = True
            after_claim = text.startswith("**")
            first = False
            used = w if own in ("slide", "subslide") else used + (0 if own in ("skip", "notes") else w)
            out.append(cell)
            continue
        if cell.cell_type != "code":
            if own is None:
                _set(cell, "skip")
            out.append(cell)
            continue
        lines = len(cell.source.splitlines())
        show = (SHOW_CODE_TAG in tags) or (HIDE_CODE_TAG not in tags and lines <= code_max)
        if own is None:
            visible_outputs = [o for o in cell.get("outputs", []) if o.get("output_type") != "error"]
            if not in_section or _is_widget(cell) or (not show and not visible_outputs):
                own = "skip"
            else:
                w = _code_weight(cell, show)
                check = cell.source.startswith(CHECK_MARK)
                if used + w > CAPACITY and used > 0:
                    own = "subslide"
                elif check and after_claim:
                    own = "fragment"
                else:
                    own = "-"
            _set(cell, own)
        if not show:
            _hide_input(cell)
        elif cell.source.startswith(CHECK_MARK):  # the marker is for nbval, not for the room
            cell.source = cell.source[len(CHECK_MARK):].lstrip("\n")
        if own not in ("skip", "notes"):
            w = _code_weight(cell, show)
            used = w if own in ("slide", "subslide") else used + w
            after_claim = False
        out.append(cell)
        if notes and not show and own not in ("skip", "notes") and cell.source.strip():
            note = nbformat.v4.new_markdown_cell(f"```python\n{cell.source}\n```")
            note.pop("id", None)
            _set(note, "notes")
            out.append(note)
    nb.cells = out
    # fresh ids: split cells would otherwise share one
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"slide-{i}"
    return nb


try:
    from nbconvert.preprocessors import Preprocessor
except ImportError:  # nbconvert is optional for the layout itself
    Preprocessor = object  # type: ignore[assignment,misc]


class SlideLayout(Preprocessor):  # type: ignore[misc,valid-type]
    """nbconvert preprocessor: `jupyter nbconvert --to slides --SlidesExporter.preprocessors=coursekit.slides.SlideLayout`."""

    def preprocess(self, nb, resources):
        return layout(nb), resources


# ---------------------------------------------------------------------------------------------- export
TEMPLATE_NAME = "coursekit_slides.html.j2"
# nbconvert's reveal template, less what would reach the network (jQuery, require.js, mermaid, widget managers),
# with MathJax 3 (the book's version) and reveal.js loaded by plain script tags from the url prefixes given.
TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{% block html_head_js %}{% endblock html_head_js %}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}
<script>
window.MathJax = {
  tex: {inlineMath: [['$', '$'], ['\\(', '\\)']], displayMath: [['$$', '$$'], ['\\[', '\\]']],
        processEscapes: true, processEnvironments: true, tags: 'ams'},
  options: {ignoreHtmlClass: 'tex2jax_ignore', processHtmlClass: 'tex2jax_process'}
};
</script>
<script defer src="{{ resources.mathjax_url }}"></script>
<style>
.reveal section img { max-height: 620px; }
.reveal .jp-OutputArea-output pre { font-size: 70%; }
:root { --jp-code-font-size: 15px; }
/* headings as written: the theme's capitals (loaded after this) would turn log p(x) into LOG P(X) */
.reveal h1, .reveal h2, .reveal h3 { text-transform: none !important; }
</style>
{%- endblock html_head_js_mathjax -%}
{% block footer_js %}
<script src="{{ resources.reveal.url_prefix }}/dist/reveal.js"></script>
<script src="{{ resources.reveal.url_prefix }}/plugin/notes/notes.js"></script>
<script>
(function () {
  var height = {{ resources.reveal.height or 700 }};
  Reveal.initialize({
    controls: true, progress: true, history: true, center: false,
    transition: "{{ resources.reveal.transition }}", slideNumber: "{{ resources.reveal.number }}",
    width: {{ resources.reveal.width or 960 }}, height: height, plugins: [RevealNotes]
  });
  // A (sub-)slide taller than the screen scrolls instead of being clipped.
  function fit() {
    if (!{{ resources.reveal.scroll | json_dumps }}) return;
    var s = Reveal.getCurrentSlide();
    if (s && s.scrollHeight > height * 0.95) {
      s.style.height = (height * 0.95) + 'px';
      s.style.overflowY = 'auto';
    }
  }
  Reveal.on('ready', fit);
  Reveal.on('slidechanged', fit);
  window.addEventListener('load', function () {
    if (window.MathJax && MathJax.startup) MathJax.startup.promise.then(fit);
  });
})();
</script>
{% endblock footer_js %}
"""


def exporter(assets: str = "local"):
    """nbconvert's SlidesExporter with the course's template, layout and asset locations."""
    from jinja2 import DictLoader
    from nbconvert import SlidesExporter
    from traitlets.config import Config

    if assets == "local":
        reveal, mathjax = f"{ASSETS}/reveal.js", f"{ASSETS}/mathjax/tex-mml-chtml.js"
    elif assets == "cdn":
        reveal, mathjax = REVEAL_CDN, MATHJAX3_CDN
    else:
        raise ValueError(f"assets must be 'local' or 'cdn', got {assets!r}")
    c = Config()
    c.SlidesExporter.preprocessors = [SlideLayout]
    c.SlidesExporter.reveal_url_prefix = reveal
    c.SlidesExporter.mathjax_url = mathjax
    c.SlidesExporter.reveal_theme = "white"      # its fonts ship with reveal.js ("simple" imports web fonts)
    c.SlidesExporter.reveal_scroll = True
    c.SlidesExporter.reveal_number = "c/t"
    c.SlidesExporter.reveal_transition = "slide"
    c.SlidesExporter.exclude_anchor_links = True
    return SlidesExporter(config=c, extra_loaders=[DictLoader({TEMPLATE_NAME: TEMPLATE})],
                          template_file=TEMPLATE_NAME)


def build(notebooks: list[Path], out: Path = Path("build/slides"), assets: str = "local",
          node_modules: Path = DEFAULT_NODE_MODULES) -> list[Path]:
    """Write OUT/NAME.slides.html for each notebook (and OUT/_assets for local assets); returns the decks."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if assets == "local":
        copy_reveal(out / ASSETS / "reveal.js", node_modules)
        copy_mathjax(out / ASSETS / "mathjax", node_modules)
    exp = exporter(assets)
    written = []
    for path in notebooks:
        path = Path(path)
        nb = nbformat.read(path, as_version=4)
        body, _ = exp.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
        deck = out / f"{path.stem}.slides.html"
        deck.write_text(body, encoding="utf-8")
        written.append(deck)
    _index(out)
    return written


def _index(out: Path) -> None:
    """OUT/index.html: a list of every deck in the folder, each with its chapter's title."""
    items = []
    for deck in sorted(out.glob("*.slides.html")):
        m = re.search(r"<title>(.*?) slides</title>", deck.read_text(encoding="utf-8"))
        items.append(f'<li><a href="{html.escape(deck.name)}">{html.escape(html.unescape(m.group(1))) if m else deck.name}</a></li>')
    (out / "index.html").write_text(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Slides</title></head>\n"
        "<body style=\"font-family: sans-serif; max-width: 50em; margin: 2em auto\">\n<h1>Slides</h1>\n"
        "<p>Arrows or space to move, Esc for the overview, S for the speaker notes, F for full screen.</p>\n"
        "<ul>\n" + "\n".join(items) + "\n</ul>\n</body></html>\n", encoding="utf-8")


def annotate(notebooks: list[Path], out: Path) -> list[Path]:
    """Copies of the notebooks with the derived slide metadata written in (input of collapsed code kept), so
    JupyterLab's live slideshow (jupyterlab-rise) shows the same slides; returns the copies."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        nb = layout(nbformat.read(path, as_version=4), notes=False)
        for cell in nb.cells:
            cell.metadata.pop("transient", None)
        target = out / Path(path).name
        nbformat.write(nb, target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="coursekit slides", description=__doc__.split("\n\n")[0])
    p.add_argument("notebooks", nargs="*", type=Path, help="default: chapters/NN_*.ipynb")
    p.add_argument("--out", type=Path, default=Path("build/slides"), help="folder of the decks (default: build/slides)")
    p.add_argument("--assets", choices=("local", "cdn"), default="local",
                   help="local: reveal.js and MathJax copied beside the decks from `make web-assets` (default); "
                        "cdn: loaded from CDNs")
    p.add_argument("--node-modules", type=Path, default=DEFAULT_NODE_MODULES,
                   help="npm folder of `make web-assets` (default: build/web/node_modules)")
    p.add_argument("--annotate", type=Path, metavar="DIR",
                   help="instead of decks, write copies of the notebooks with the slide metadata into DIR")
    args = p.parse_args(argv)
    notebooks = args.notebooks or sorted(Path("chapters").glob("[0-9][0-9]*_*.ipynb"))
    if not notebooks:
        print("error: no notebooks given and none in chapters/", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        if args.annotate:
            written = annotate(notebooks, args.annotate)
        else:
            written = build(notebooks, args.out, args.assets, args.node_modules)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"slides: {len(written)} written to {args.annotate or args.out} ({time.perf_counter() - t0:.1f} s)")
    for w in written:
        print(f"  {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
