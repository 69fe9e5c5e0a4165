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
  code longer than CODE_MAX lines is collapsed: its output is shown, its code is not (the notebook has it), and a
  collapsed cell without output is skipped;
- speaker notes (S) are the author's talking points, from a cell's metadata `speaker_notes` (a string or a list
  of points; JupyterLab's property inspector edits it): never the hidden code.
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

__all__ = ["layout", "SlideLayout", "exporter", "build", "annotate", "main", "speaker_notes", "CAPACITY", "CODE_MAX",
           "SHOW_CODE_TAG", "HIDE_CODE_TAG"]

# The deck is 16:9, WIDTH x HEIGHT px (reveal scales it to the screen), with body text at BODY_PX and code and
# outputs at CODE_PX: sizes a room reads at 1280 x 720. A slide holds about CAPACITY lines of body text (a line is
# LINE_PX high); the weights below count code, outputs and figures in those lines.
WIDTH, HEIGHT = 1280, 720
BODY_PX, CODE_PX = 28, 22
LINE_PX = 1.3 * BODY_PX
CODE_LINE = 1.3 * CODE_PX / LINE_PX      # a line of code or output, in lines of body text
CAPACITY = 12.5
CODE_MAX = 8
CHARS_PER_LINE = 80
CODE_CHARS_PER_LINE = 95
SLIDE_WIDTH_PX = 1180.0
FIGURE_MAX_PX = 520                      # figures are scaled to at most this height (CSS below)
SHOW_CODE_TAG = "slides-show-code"
HIDE_CODE_TAG = "slides-hide-code"
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
NOTES_KEY = "speaker_notes"
ASSETS = "_assets"


# ---------------------------------------------------------------------------------------------- weights
def _md_weight(text: str) -> float:
    w = 0.0
    dmath = False
    for line in text.splitlines():
        s = line.strip()
        if not s:
            w += 0.4
        elif s.startswith("#"):
            w += 2.0
        elif s.startswith("$$") or s.startswith("\\begin") or s.startswith("\\end"):
            w += 2.0
            if s.count("$$") % 2 == 1:
                dmath = not dmath
        elif dmath:
            w += 1.6 * math.ceil(len(s) / CHARS_PER_LINE)   # a line of display maths: fractions, sums
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
    return min(height * min(1.0, SLIDE_WIDTH_PX / max(width, 1)), FIGURE_MAX_PX) / LINE_PX + 1.0


def _text_lines(text: str) -> int:
    """Displayed lines of monospaced text wrapped at the slide's width (outputs and code wrap, see the CSS)."""
    return sum(max(1, math.ceil(len(line) / CODE_CHARS_PER_LINE)) for line in text.splitlines())


def _md_table_weight(text: str) -> float:
    """Markdown output (a table, most often): a table row wraps at about 55 characters (its widest column)."""
    w = 0.5
    for row in text.splitlines():
        if row.startswith("|"):
            w += 0.3 + CODE_LINE * max(1, math.ceil(len(row) / 55))
        else:
            w += _md_weight(row)
    return w


def _split_table(out, room: float) -> list:
    """A markdown table output taller than `room`, as several outputs: the header repeated, the rows shared out."""
    text = "".join(out["data"]["text/markdown"])
    rows = text.splitlines()
    if len(rows) < 3 or not rows[0].startswith("|") or not rows[1].startswith("|"):
        return [out]
    head, body = rows[:2], rows[2:]
    parts, cur = [], []
    for row in body:
        if cur and _md_table_weight("\n".join(head + cur + [row])) > room:
            parts.append(cur)
            cur = []
        cur.append(row)
    parts.append(cur)
    pieces = []
    for part in parts:
        piece = copy.deepcopy(out)
        piece["data"] = {"text/markdown": "\n".join(head + part) + "\n"}
        pieces.append(piece)
    return pieces


def _output_weight(out) -> float:
    if out.get("output_type") == "stream":
        return 0.5 + CODE_LINE * _text_lines("".join(out.get("text", "")))
    data = out.get("data", {})
    if "image/png" in data:
        return _png_height(data["image/png"])
    if "image/jpeg" in data or "image/svg+xml" in data:
        return FIGURE_MAX_PX / LINE_PX
    if "text/markdown" in data:
        return _md_table_weight("".join(data["text/markdown"]))
    if "text/html" in data:
        return CODE_LINE * len("".join(data["text/html"]).splitlines()) + 0.5
    if "text/plain" in data:
        return 0.5 + CODE_LINE * _text_lines("".join(data["text/plain"]))
    return 1.0


def _code_weight(cell, show_input: bool) -> float:
    w = sum(_output_weight(o) for o in cell.get("outputs", []))
    if show_input:
        w += 1.2 + CODE_LINE * _text_lines(cell.source)
    return w


# ---------------------------------------------------------------------------------------------- splitting
def _blocks(text: str) -> list[str]:
    """Paragraphs of a markdown text (split at blank lines outside code fences and $$ blocks); headings and
    top-level list items each start a block of their own."""
    blocks, cur = [], []
    fence = dmath = False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("```") or s.startswith("~~~"):
            fence = not fence
        elif not fence and s.count("$$") % 2 == 1:
            dmath = not dmath
        if not fence and not dmath and (re.match(r"#{1,6} ", line) or re.match(r"(\*|-|\d+\.) ", line)) and cur:
            blocks.append("\n".join(cur))   # a heading, and each top-level list item, may start a slide
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


def _sentences(block: str) -> list[str]:
    """A paragraph too tall for half a slide, cut between lines where a sentence or a display equation ends (the
    notebooks wrap their prose by hand, so a line break inside a paragraph is free); short blocks stay whole."""
    if _md_weight(block) <= CAPACITY * 0.6 or block.lstrip().startswith(("```", "~~~", "|")):
        return [block]
    parts, cur, dmath = [], [], False
    for line in block.splitlines():
        cur.append(line)
        s = line.strip()
        if s.count("$$") % 2 == 1:
            dmath = not dmath
        ends = s.endswith((".", ":", "$$", ".)")) and not dmath
        so_far = _md_weight("\n".join(cur))
        # at a sentence's end once a third of a slide is used; anywhere (a line break) rather than overflow
        if (ends and so_far >= CAPACITY * 0.35) or (not dmath and so_far >= CAPACITY * 0.7):
            parts.append("\n".join(cur))
            cur = []
    if cur:
        parts.append("\n".join(cur))
    return parts


def _split_markdown(text: str) -> list[str]:
    """A markdown cell's text as chunks: a new chunk at each heading, and before a paragraph that would overflow."""
    chunks: list[list[str]] = []
    weight = 0.0
    for block in (piece for b in _blocks(text) for piece in _sentences(b)):
        w = _md_weight(block)
        heading = bool(re.match(r"#{1,6} ", block))
        heading_alone = len(chunks[-1]) == 1 and "\n" not in chunks[-1][0].strip() if chunks else False
        if not chunks or heading or (weight + 0.4 + w > CAPACITY and not heading_alone):
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


def speaker_notes(cell) -> str:
    """The author's talking points for the slide a cell is on: its metadata `speaker_notes` (a string or a list of
    strings, one point each), or ""."""
    value = cell.get("metadata", {}).get(NOTES_KEY, "")
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(f"- {v.strip()}" for v in value if v.strip())
    return value.strip() if isinstance(value, str) else ""


def _with_speaker_notes(cells: list) -> list:
    """After each cell that carries speaker notes (and is shown), a notes cell with them; hidden code never is."""
    out = []
    for cell in cells:
        out.append(cell)
        text = speaker_notes(cell)
        if text and _slide_type(cell) not in ("skip", "notes"):
            note = nbformat.v4.new_markdown_cell(text)
            note.pop("id", None)
            _set(note, "notes")
            out.append(note)
    return out


def _truncated(out, lines: int):
    """A copy of a text output cut to `lines` displayed lines, with a line saying how much the notebook has more."""
    out = copy.deepcopy(out)
    key = "text" if out.get("output_type") == "stream" else None
    text = "".join(out["text"]) if key else "".join(out.get("data", {}).get("text/plain", ""))
    kept, used = [], 0
    rows = text.splitlines()
    for row in rows:
        n = max(1, math.ceil(len(row) / CODE_CHARS_PER_LINE))
        if used + n > lines:
            break
        kept.append(row)
        used += n
    if len(kept) < len(rows):
        kept.append(f"... ({len(rows) - len(kept)} more lines in the notebook)")
    if key:
        out["text"] = "\n".join(kept) + "\n"
    else:
        out["data"] = {"text/plain": "\n".join(kept)}
    return out


def _split_outputs(cell, code_max: int) -> list:
    """A code cell whose input and outputs would overflow a slide, as several cells: the input with the first
    outputs, then the rest in copies without input, each group within a slide; a text output taller than a slide
    is cut (the notebook has it whole). Returns [cell] when it fits."""
    tags = set(cell.get("metadata", {}).get("tags", []))
    show = (SHOW_CODE_TAG in tags) or (HIDE_CODE_TAG not in tags and len(cell.source.splitlines()) <= code_max)
    outputs = cell.get("outputs", [])
    room = CAPACITY - 1.0   # a margin: a figure's displayed height is an estimate
    if _code_weight(cell, show) <= room or not outputs:
        return [cell]
    groups, cur, used = [], [], (_code_weight(cell, True) - sum(_output_weight(o) for o in outputs)) if show else 0.0
    expanded = []
    for out in outputs:
        big = _output_weight(out) > room and "text/markdown" in out.get("data", {})
        expanded.extend(_split_table(out, room) if big else [out])
    for out in expanded:
        w = _output_weight(out)
        if w > room and ("text" in out or "text/plain" in out.get("data", {})) and "image/png" not in out.get("data", {}):
            out = _truncated(out, int((room - 0.5) / CODE_LINE))
            w = _output_weight(out)
        if (cur or used > 0) and used + w > room:   # the input alone first, when it and this output overflow
            groups.append(cur)
            cur, used = [], 0.0
        cur.append(out)
        used += w
    groups.append(cur)
    pieces = []
    for k, group in enumerate(groups):
        piece = copy.deepcopy(cell)
        piece.outputs = group
        piece.pop("id", None)
        if k > 0:
            _hide_input(piece)
            piece.metadata["coursekit_continued"] = True
        pieces.append(piece)
    return pieces


def layout(nb, code_max: int = CODE_MAX, notes: bool = True):
    """A copy of the notebook with slide metadata derived from its structure (see the module's docstring)."""
    nb = copy.deepcopy(nb)
    heading = next((line[2:].strip() for c in nb.cells if c.cell_type == "markdown"
                    for line in c.source.splitlines() if line.startswith("# ")), None)
    if heading and "title" not in nb.metadata:
        nb.metadata["title"] = heading  # the deck's <title>
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "code" and _slide_type(cell) is None:
            cells.extend(_split_outputs(cell, code_max))
            continue
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
        if cell.get("metadata", {}).pop("coursekit_continued", False):
            show = False   # the rest of a cell's outputs (`_split_outputs`): its input is on the slide before
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
    if notes:
        out = _with_speaker_notes(out)
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
/* Sizes for a room (the deck is 1280 x 720, scaled to the screen):
   body text 28 px, code and outputs 22 px; figures scaled to fit; long lines wrap at spaces, never mid-number. */
:root { --jp-code-font-size: 22px; --jp-content-font-size1: 28px; --jp-ui-font-size1: 22px; }
.reveal .slides { text-align: left; }
.reveal .jp-RenderedHTMLCommon, .reveal .jp-RenderedMarkdown { font-size: 28px !important; line-height: 1.3; }
.reveal .jp-RenderedHTMLCommon p, .reveal .jp-RenderedHTMLCommon li { font-size: 28px !important; }
.reveal h1 { font-size: 52px !important; } .reveal h2 { font-size: 44px !important; }
.reveal h3 { font-size: 36px !important; }
.reveal section img { max-height: 520px; max-width: 100%; width: auto; height: auto; object-fit: contain; }
.reveal pre, .reveal code, .reveal .jp-OutputArea-output pre, .reveal .CodeMirror, .reveal .cm-editor,
.reveal .jp-InputArea-editor, .reveal .highlight pre {
  font-size: 22px !important; line-height: 1.3 !important; white-space: pre-wrap !important;
  word-break: normal !important; overflow-wrap: normal !important; box-shadow: none; width: auto; }
.reveal .jp-InputPrompt, .reveal .jp-OutputPrompt { display: none !important; }
.reveal table { font-size: 22px !important; width: 100%; max-width: 100%; margin: 0 !important; }
.reveal table th, .reveal table td { padding: 0.1em 0.2em !important; }
.reveal mjx-container[display="true"] { max-width: 100%; overflow-x: auto; overflow-y: hidden; }
/* headings as written: the theme's capitals (loaded after this) would turn log p(x) into LOG P(X) */
.reveal h1, .reveal h2, .reveal h3 { text-transform: none !important; }
</style>
{%- endblock html_head_js_mathjax -%}
{% block footer_js %}
<script src="{{ resources.reveal.url_prefix }}/dist/reveal.js"></script>
<script src="{{ resources.reveal.url_prefix }}/plugin/notes/notes.js"></script>
<script>
(function () {
  var height = {{ resources.reveal.height or 720 }};
  Reveal.initialize({
    controls: true, progress: true, history: true, center: false,
    transition: "{{ resources.reveal.transition }}", slideNumber: "{{ resources.reveal.number }}",
    width: {{ resources.reveal.width or 1280 }}, height: height, margin: 0.04, plugins: [RevealNotes]
  });
  // A display equation wider than the slide is scaled down to fit (MathJax 3 does not break lines); a (sub-)slide
  // taller than the screen scrolls instead of being clipped (the layout avoids both; a browser test checks it).
  function fit() {
    var s = Reveal.getCurrentSlide();
    if (!s) return;
    s.querySelectorAll('mjx-container[display="true"]').forEach(function (m) {
      if (m.clientWidth > 0 && m.scrollWidth > m.clientWidth + 1) {
        m.style.fontSize = Math.floor(100 * m.clientWidth / m.scrollWidth) + '%';
      }
    });
    if (!{{ resources.reveal.scroll | json_dumps }}) return;
    if (s.scrollHeight > height * 0.95) {
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
    c.SlidesExporter.reveal_width = str(WIDTH)
    c.SlidesExporter.reveal_height = str(HEIGHT)
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
