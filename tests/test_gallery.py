"""coursekit.gallery: the README's gallery and chapter table are generated from the notebooks and checked."""
from __future__ import annotations

import base64
import shutil
from pathlib import Path

import nbformat
import pytest

from coursekit import gallery

REPO = Path(__file__).resolve().parent.parent
CHAPTERS = ("01_elbo.ipynb", "02_reparameterization.ipynb")


def test_the_readme_gallery_and_chapter_table_are_up_to_date():
    problems = gallery.check(REPO)
    assert problems == [], "run `make gallery`:\n" + "\n".join(problems)


def _png_cells(nb) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
            and any("image/png" in o.get("data", {}) for o in c.get("outputs", []))]


@pytest.fixture
def course(tmp_path) -> Path:
    """A copy of the course with two chapters, their masters and exercises, and a gallery tag in each chapter."""
    for folder in ("chapters", "solutions", "exercises"):
        (tmp_path / folder).mkdir()
        for name in CHAPTERS:
            shutil.copy2(REPO / folder / name, tmp_path / folder / name)
    shutil.copy2(REPO / "README.md", tmp_path / "README.md")
    for name in CHAPTERS:
        path = tmp_path / "chapters" / name
        nb = nbformat.read(path, as_version=4)
        cell = nb.cells[_png_cells(nb)[0]]
        cell.metadata.setdefault("tags", []).append(gallery.GALLERY_TAG)
        nbformat.write(nb, path)
    return tmp_path


def test_tagged_figures_are_extracted_byte_for_byte_and_listed(course):
    assert gallery.check(course) != []          # nothing generated yet
    changed = gallery.regenerate(course)
    assert "README.md" in changed
    assert gallery.check(course) == []
    for name in CHAPTERS:
        nb = nbformat.read(course / "chapters" / name, as_version=4)
        cell = next(c for c in nb.cells if gallery.GALLERY_TAG in c.metadata.get("tags", []))
        png = next(o["data"]["image/png"] for o in cell.outputs if "image/png" in o.get("data", {}))
        written = (course / "book" / "gallery" / name.replace(".ipynb", ".png")).read_bytes()
        assert written == base64.b64decode(png) and written[:8] == b"\x89PNG\r\n\x1a\n"
    readme = (course / "README.md").read_text()
    assert "![01 · The evidence lower bound (ELBO)](book/gallery/01_elbo.png)" in readme
    assert "[01 · The evidence lower bound (ELBO)](chapters/01_elbo.ipynb)" in readme
    assert gallery.regenerate(course) == []     # idempotent


def test_a_changed_tagged_output_fails_the_check_until_regenerated(course):
    gallery.regenerate(course)
    path = course / "chapters" / "01_elbo.ipynb"
    nb = nbformat.read(path, as_version=4)
    cells = _png_cells(nb)
    tagged = next(i for i in cells if gallery.GALLERY_TAG in nb.cells[i].metadata.get("tags", []))
    other = next(i for i in cells if i != tagged)
    # the tagged cell now draws another figure (as a re-execution with changed code would)
    nb.cells[tagged].outputs = nb.cells[other].outputs
    nbformat.write(nb, path)
    problems = gallery.check(course)
    assert any("book/gallery/01_elbo.png differs" in p for p in problems), problems
    gallery.regenerate(course)
    assert gallery.check(course) == []


def test_an_untagged_figure_is_removed_and_a_tag_without_figure_is_an_error(course):
    gallery.regenerate(course)
    path = course / "chapters" / "02_reparameterization.ipynb"
    nb = nbformat.read(path, as_version=4)
    for c in nb.cells:
        c.metadata["tags"] = [t for t in c.metadata.get("tags", []) if t != gallery.GALLERY_TAG]
    nbformat.write(nb, path)
    problems = gallery.check(course)
    assert any("02_reparameterization.png comes from no tagged cell" in p for p in problems), problems
    assert any("gallery section is out of date" in p for p in problems), problems
    gallery.regenerate(course)
    assert not (course / "book" / "gallery" / "02_reparameterization.png").exists()
    nb.cells[0].cell_type = "code"  # a markdown cell turned code cell, tagged, without output
    nb.cells[0].metadata["tags"] = [gallery.GALLERY_TAG]
    nb.cells[0].outputs, nb.cells[0].execution_count = [], None
    nbformat.write(nb, path)
    with pytest.raises(ValueError, match="tagged 'gallery' but has no PNG output"):
        gallery.check(course)


def test_a_re_executed_chapter_makes_the_table_stale(course):
    gallery.regenerate(course)
    path = course / "chapters" / "01_elbo.ipynb"
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for c in code:  # executed again, in 100 s this time
        c.metadata["execution"].update({"iopub.execute_input": "2030-01-01T00:00:00.000000Z",
                                        "shell.execute_reply": "2030-01-01T00:00:01.000000Z"})
    code[-1].metadata["execution"]["shell.execute_reply"] = "2030-01-01T00:01:40.000000Z"
    nbformat.write(nb, path)
    assert gallery.run_seconds(nbformat.read(path, as_version=4)) == pytest.approx(100.0)
    assert any("chapters section is out of date" in p for p in gallery.check(course))
    gallery.regenerate(course)
    assert "| 01 | [The evidence lower bound (ELBO)](chapters/01_elbo.ipynb) | 100 s |" in (course / "README.md").read_text()


def _stamped(seconds: list[tuple[str, str]]):
    nb = nbformat.v4.new_notebook()
    for start, end in seconds:
        cell = nbformat.v4.new_code_cell("pass")
        cell.metadata["execution"] = {"iopub.execute_input": start, "shell.execute_reply": end}
        nb.cells.append(cell)
    return nb


def test_run_time_spans_the_first_start_to_the_last_reply():
    nb = _stamped([("2026-12-01T09:00:00.500000Z", "2026-12-01T09:00:01.000000Z"),
                   ("2026-12-01T09:00:01.000000Z", "2026-12-01T09:00:03.750000Z")])
    assert gallery.run_seconds(nb) == pytest.approx(3.25)
    assert gallery.run_seconds(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])) is None


def test_the_table_counts_graded_exercises_points_and_written_answers(tmp_path):
    (tmp_path / "chapters").mkdir()
    (tmp_path / "solutions").mkdir()
    (tmp_path / "exercises").mkdir()
    chapter = _stamped([("2026-12-01T09:00:00Z", "2026-12-01T09:00:00.400000Z")])
    chapter.cells.insert(0, nbformat.v4.new_markdown_cell("# 03 · A chapter\n\ntext"))
    nbformat.write(chapter, tmp_path / "chapters" / "03_x.ipynb")
    master = nbformat.v4.new_notebook()
    for gid, points in (("a", 2), ("b", 3)):
        answer = nbformat.v4.new_code_cell("x = 1")
        answer.metadata["nbgrader"] = {"grade": False, "grade_id": gid, "solution": True}
        test = nbformat.v4.new_code_cell("assert x == 1")
        test.metadata["nbgrader"] = {"grade": True, "grade_id": f"{gid}_test", "points": points, "solution": False}
        master.cells += [answer, test]
    written = nbformat.v4.new_markdown_cell("Why?")
    written.metadata["nbgrader"] = {"grade": True, "grade_id": "why", "points": 0, "solution": True}
    master.cells.append(written)
    nbformat.write(master, tmp_path / "solutions" / "03_x.ipynb")
    nbformat.write(master, tmp_path / "exercises" / "03_x.ipynb")
    table = gallery.table_markdown(gallery.chapter_rows(tmp_path))
    assert table.splitlines()[-1] == ("| 03 | [A chapter](chapters/03_x.ipynb) | < 1 s | "
                                      "[2 graded, 5 points, 1 written](exercises/03_x.ipynb) |")


def test_markers_must_be_present_once():
    with pytest.raises(ValueError, match="needs the markers"):
        gallery.replace_section("no markers here", "gallery", "x")
    begin, end = gallery.MARKERS["gallery"]
    assert gallery.replace_section(f"a\n{begin}\nold\n{end}\nb", "gallery", "new") == f"a\n{begin}\nnew\n{end}\nb"
