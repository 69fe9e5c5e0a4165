"""coursekit.slides: the slide layout derived from a notebook's structure, the author's overrides, the decks."""
from __future__ import annotations

import base64
import re
import struct
import zlib

import nbformat

import pytest

from coursekit import slides

from _tools import NODE_MODULES, REPO, need as _need, skip as _skip


def _png(width: int, height: int) -> str:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\xff" * (3 * width) for _ in range(height))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return base64.b64encode(png).decode()


def _code(source, *outputs, tags=(), **meta):
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = list(outputs)
    if tags:
        cell.metadata["tags"] = list(tags)
    cell.metadata.update(meta)
    return cell


def _stream(text):
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def _image(width=800, height=300):
    return nbformat.v4.new_output("display_data", data={"image/png": _png(width, height), "text/plain": "<Figure>"})


def _types(nb):
    return [(c.cell_type, c.metadata.get("slideshow", {}).get("slide_type"), c.source.splitlines()[0] if c.source else "")
            for c in nb.cells]


def _chapter():
    md = nbformat.v4.new_markdown_cell
    long_code = "\n".join(f"x{i} = {i}" for i in range(20))
    widget = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0},
        "text/plain": "interactive(children=(FloatSlider(value=0.0, description='m'),))"})
    return nbformat.v4.new_notebook(cells=[
        md("# 01 · A title\n\nWhat you will learn."),
        _code("import gvlib"),
        md("## 1. A section\n\nSome text."),
        _code("y = 1\nprint(y)", _stream("1\n")),
        md("A paragraph before a heading.\n\n## 2. Second section\n\nText of section two."),
        md("**Check: the claim.** It holds."),
        _code("# NBVAL_CHECK_OUTPUT\nclaim('x', True)", _stream("✓ x\n")),
        _code(long_code, _stream("done\n")),
        _code(long_code),
        _code("interact(f)", widget),
        _code(long_code, _stream("shown\n"), tags=[slides.SHOW_CODE_TAG]),
        _code("z = 2", tags=[slides.HIDE_CODE_TAG]),
        _code("w = 3", _stream("3\n"), slideshow={"slide_type": "notes"}),
        md("### A subsection"),
        _code("plot()", _image(800, 250), speaker_notes=["the left panel is the prior", "then the posterior"]),
        _code("plot()", _image(800, 250)),
        md("## Summary\n\n- one"),
    ])


def test_sections_become_slides_and_claims_subslides_with_their_check_as_a_fragment():
    nb = slides.layout(_chapter())
    t = _types(nb)
    heads = [(kind, first) for _, kind, first in t if kind == "slide"]
    assert [f for _, f in heads] == ["# 01 · A title", "## 1. A section", "## 2. Second section", "## Summary"]
    # the markdown cell with a heading in its middle was split, the paragraph stays on section 1's slide
    assert ("markdown", "-", "A paragraph before a heading.") in t
    assert ("markdown", "subslide", "**Check: the claim.** It holds.") in t
    check = next(c for c in nb.cells if c.source.startswith("claim("))
    assert check.metadata["slideshow"]["slide_type"] == "fragment"   # and its nbval marker is gone
    assert ("markdown", "subslide", "### A subsection") in t


def test_set_up_widgets_and_long_code_are_skipped_or_collapsed():
    nb = slides.layout(_chapter())
    by_source = {c.source.splitlines()[0] if c.source else "": c for c in nb.cells if c.cell_type == "code"}
    assert by_source["import gvlib"].metadata["slideshow"]["slide_type"] == "skip"      # before the first section
    assert by_source["interact(f)"].metadata["slideshow"]["slide_type"] == "skip"       # widget: no state to draw
    long_cells = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("x0 = 0")]
    with_output, without_output, forced, forced_rest = long_cells
    assert with_output.metadata["transient"]["remove_source"] is True                 # collapsed, output kept
    assert with_output.metadata["slideshow"]["slide_type"] != "skip"
    assert without_output.metadata["slideshow"]["slide_type"] == "skip"                # nothing left to show
    # slides-show-code: 20 lines and their output overflow one slide, so the output follows on the next
    assert "transient" not in forced.metadata and forced.outputs == []
    assert forced_rest.metadata["transient"]["remove_source"] is True and forced_rest.outputs[0].text == "shown\n"
    assert forced_rest.metadata["slideshow"]["slide_type"] == "subslide"
    assert by_source["z = 2"].metadata["slideshow"]["slide_type"] == "skip"             # slides-hide-code, no output
    # hidden code never goes to the speaker notes: they are the author's talking points only
    notes = [c for c in nb.cells if c.metadata.get("slideshow", {}).get("slide_type") == "notes" and c.cell_type == "markdown"]
    assert [n.source for n in notes] == ["- the left panel is the prior\n- then the posterior"]
    i = nb.cells.index(notes[0])
    assert nb.cells[i - 1].source == "plot()"


def test_an_authors_slide_type_is_kept_and_a_figure_that_overflows_starts_a_subslide():
    nb = slides.layout(_chapter())
    w = next(c for c in nb.cells if c.source == "w = 3")
    assert w.metadata["slideshow"]["slide_type"] == "notes"
    plots = [c for c in nb.cells if c.source == "plot()"]
    assert [p.metadata["slideshow"]["slide_type"] for p in plots] == ["-", "subslide"]
    assert len({c.id for c in nb.cells}) == len(nb.cells)
    nbformat.validate(nb)


@pytest.mark.parametrize("path", sorted((REPO / "chapters").glob("[0-9][0-9]*_*.ipynb")), ids=lambda p: p.stem)
def test_every_chapter_gets_a_slide_per_section(path):
    nb = nbformat.read(path, as_version=4)
    sections = sum(1 for c in nb.cells if c.cell_type == "markdown"
                   for line in c.source.splitlines() if re.match(r"## ", line))
    laid = slides.layout(nb)
    kinds = [c.metadata["slideshow"]["slide_type"] for c in laid.cells]
    assert kinds.count("slide") == 1 + sections
    assert kinds.count("subslide") >= 1
    assert all(k in {"slide", "subslide", "fragment", "-", "skip", "notes"} for k in kinds)
    assert nb.cells == nbformat.read(path, as_version=4).cells, "layout must not change the notebook it reads"


def test_a_deck_loads_nothing_from_a_cdn_with_local_assets(tmp_path):
    _need("nbconvert", "nbconvert is not installed (make docs-install)")
    if slides_missing := __import__("coursekit.webassets", fromlist=["missing"]).missing(NODE_MODULES):
        _skip(f"make web-assets first: {slides_missing}")
    deck = slides.build([REPO / "chapters" / "00_start_here.ipynb"], tmp_path, "local", NODE_MODULES)[0]
    html = deck.read_text()
    assert 'src="_assets/reveal.js/dist/reveal.js"' in html and 'src="_assets/mathjax/tex-mml-chtml.js"' in html
    assert not re.search(r"""(src|href)=["']https?://""", html), "the deck links an outside resource"
    assert "require.js" not in html and "jquery" not in html.lower() and "mermaid" not in html
    assert (tmp_path / "_assets" / "reveal.js" / "dist" / "theme" / "white.css").is_file()
    assert (tmp_path / "_assets" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    assert html.count("<section") >= 4 and "<title>00 · Start here slides</title>" in html
    assert 'href="00_start_here.slides.html">00 · Start here</a>' in (tmp_path / "index.html").read_text()


def test_a_cdn_deck_and_the_annotated_copies_for_live_slides(tmp_path):
    _need("nbconvert", "nbconvert is not installed (make docs-install)")
    src = REPO / "chapters" / "00_start_here.ipynb"
    deck = slides.build([src], tmp_path / "cdn", "cdn")[0]
    html = deck.read_text()
    assert slides.REVEAL_CDN + "/dist/reveal.js" in html and slides.MATHJAX3_CDN in html
    copy = slides.annotate([src], tmp_path / "live")[0]
    nb = nbformat.read(copy, as_version=4)
    assert all("slideshow" in c.metadata for c in nb.cells)
    assert not any("transient" in c.metadata for c in nb.cells)
    assert src.read_bytes() != copy.read_bytes()


def test_long_prose_tables_and_outputs_are_shared_out_over_slides_that_fit():
    md = nbformat.v4.new_markdown_cell
    prose = "\n".join(f"Sentence number {i} of a long paragraph, wrapped by hand as the notebooks are." for i in range(40))
    table = "| a | b |\n| --- | --- |\n" + "\n".join(f"| row {i} | {'x ' * 30}|" for i in range(40)) + "\n"
    out_table = nbformat.v4.new_output("display_data", data={"text/markdown": table, "text/plain": "table"})
    long_stream = _stream("\n".join(f"line {i}" for i in range(200)) + "\n")
    nb = slides.layout(nbformat.v4.new_notebook(cells=[
        md("# T"), md("## 1. S\n\n" + prose), _code("show()", out_table), _code("print(lots)", long_stream)]))
    shown = [c for c in nb.cells if c.metadata.get("slideshow", {}).get("slide_type") not in ("skip", "notes")]
    for c in shown:   # every piece fits a slide by the layout's own weights
        w = slides._md_weight(c.source) if c.cell_type == "markdown" else slides._code_weight(c, "transient" not in c.metadata)
        assert w <= slides.CAPACITY, (w, c.source[:60])
    prose_pieces = [c for c in shown if c.cell_type == "markdown" and "Sentence number" in c.source]
    assert len(prose_pieces) >= 3 and "".join(p.source for p in prose_pieces).count("Sentence number") == 40
    tables = [o for c in shown if c.cell_type == "code" for o in c.outputs if "text/markdown" in o.get("data", {})]
    assert len(tables) >= 3 and all(t["data"]["text/markdown"].startswith("| a | b |\n| --- | --- |") for t in tables)
    assert sum(t["data"]["text/markdown"].count("| row ") for t in tables) == 40      # every row, the header repeated
    streams = [o for c in shown if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "stream"]
    assert len(streams) == 1 and streams[0].text.rstrip().endswith("more lines in the notebook)")

