"""The Binder configuration: CPU torch, gvlib's own dependencies and the widgets, nothing heavier."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_binder_installs_what_the_notebooks_import_and_the_cpu_torch():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = [line.strip() for line in (REPO / "binder" / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    options = [line for line in lines if line.startswith("-")]
    requirements = {_name(line): line.replace(" ", "") for line in lines if not line.startswith("-")}
    assert options == ["--extra-index-url https://download.pytorch.org/whl/cpu"]
    declared = {_name(r): r.replace(" ", "") for r in project["dependencies"]}
    widgets = {_name(r): r.replace(" ", "") for r in project["optional-dependencies"]["course"]
               if _name(r) in ("ipywidgets", "ipykernel")}
    assert requirements == {**declared, **widgets}


def test_postbuild_installs_gvlib_without_dependencies():
    post = REPO / "binder" / "postBuild"
    assert post.stat().st_mode & 0o111, "postBuild must be executable"
    assert "pip install --no-deps" in post.read_text() and "-e ." in post.read_text()
