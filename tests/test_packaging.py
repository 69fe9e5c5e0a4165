"""Packaging: gvlib needs no Jupyter, the tooling package has its commands, environment.yml mirrors pyproject.toml."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
JUPYTER = ("IPython", "ipykernel", "ipywidgets", "jupyter_client", "jupyter_core", "nbformat", "nbclient",
           "jupyterlab", "notebook", "nbval", "coursekit")


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_gvlib_imports_nothing_from_jupyter_or_the_tooling():
    code = ("import sys, json\n"
            "import gvlib, gvlib.models, gvlib.bounds, gvlib.train, gvlib.data, gvlib.plot, gvlib.claims, "
            "gvlib.distributions, gvlib.experiments.iwae_table\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {list(JUPYTER)!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert json.loads(out.stdout) == []


def test_gvlib_needs_only_five_packages_and_the_tooling_has_an_extra():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert sorted(_name(r) for r in project["dependencies"]) == ["matplotlib", "numpy", "scikit-learn", "torch", "tqdm"]
    assert "nbformat" in {_name(r) for r in project["optional-dependencies"]["course"]}
    assert project["scripts"]["coursekit"] == "coursekit.cli:main"


def test_no_path_arithmetic_on_the_packages_own_location():
    # Paths come from arguments (defaults: the current directory), so a non-editable install works.
    for package in ("gvlib", "coursekit"):
        for path in (REPO / package).rglob("*.py"):
            text = path.read_text()
            assert not re.search(r"Path\(__file__\)[^\n]*\.parent", text), f"{path} derives a path from its own location"


def test_the_grade_alias_and_the_commands_work():
    for argv in ([sys.executable, "-m", "gvlib.grade", "--help"], [sys.executable, "-m", "coursekit", "--help"],
                 [str(Path(sys.executable).parent / "coursekit"), "bench", "--help"]):
        out = subprocess.run(argv, capture_output=True, text=True)
        assert out.returncode == 0 and "usage" in (out.stdout + out.stderr).lower(), (argv, out.stderr)


def test_environment_yml_installs_what_pyproject_declares():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = {_name(r): r.replace(" ", "") for r in project["dependencies"] + extras["course"] + extras["dev"] + extras["docs"]
                if not r.startswith("gvlib")}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert any(d.startswith("python") for d in conda) and "pip" in conda
    assert "-e ." in pip, "environment.yml must install the course itself (pip: -e .)"
    listed = {_name(r): r.replace(" ", "") for r in pip if not r.startswith("-")}
    assert listed == declared, (
        f"environment.yml and pyproject.toml disagree: only in environment.yml {sorted(set(listed.items()) - set(declared.items()))}, "
        f"only in pyproject.toml {sorted(set(declared.items()) - set(listed.items()))}")
    python_min = project["requires-python"].replace(">=", "")
    assert f"python>={python_min}" in conda


def test_documents_cite_only_files_that_exist():
    # CONTRIBUTING.md, README.md and environment.yml name files with backticks or in comments; each must exist.
    for doc in ("CONTRIBUTING.md", "README.md", "environment.yml"):
        text = (REPO / doc).read_text()
        for ref in re.findall(r"(?<![\w/.-])((?:tests|scripts|coursekit|gvlib|chapters|solutions|exercises|results|jupyter|\.ci)/[\w./-]+\.\w+)", text):
            if "*" in ref or "NN" in ref:
                continue
            assert (REPO / ref).exists(), f"{doc} cites {ref}, which does not exist"
