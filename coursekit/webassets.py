"""Local copies of the JavaScript the slides and the website load: reveal.js and MathJax from npm.

`make web-assets` installs the versions pinned in book/package.json (and book/package-lock.json) into
build/web/node_modules, an ignored cache folder; after that the slides and a `--mathjax local` website build
need no network. Nothing here downloads: it copies from that folder.
"""
from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["DEFAULT_NODE_MODULES", "REVEAL_CDN", "MATHJAX3_CDN", "copy_mathjax", "copy_reveal", "missing"]

DEFAULT_NODE_MODULES = Path("build/web/node_modules")
# The same versions from a CDN, for `--assets cdn` (a machine without npm); book/package.json pins the local ones.
REVEAL_CDN = "https://unpkg.com/reveal.js@4.6.0"
MATHJAX3_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
# MathJax 3's combined TeX + MathML + CommonHTML bundle and what it loads on demand (TeX extensions that
# autoload, fonts, the menu); not the speech-rule engine or the other bundles.
_MATHJAX_KEEP = ("tex-mml-chtml.js", "input", "output", "ui", "a11y", "adaptors")


def missing(node_modules: Path = DEFAULT_NODE_MODULES) -> list[str]:
    """What `make web-assets` has not installed yet under `node_modules` (empty when all is there)."""
    node_modules = Path(node_modules)
    need = [node_modules / "mathjax" / "es5" / "tex-mml-chtml.js", node_modules / "reveal.js" / "dist" / "reveal.js"]
    return [str(p) for p in need if not p.is_file()]


def _check(node_modules: Path) -> None:
    gone = missing(node_modules)
    if gone:
        raise FileNotFoundError(f"no local copy of {', '.join(gone)}: run `make web-assets` once (it needs npm)")


def copy_mathjax(dest: Path, node_modules: Path = DEFAULT_NODE_MODULES) -> Path:
    """Copy MathJax 3 (es5 build) into `dest`; returns the path of its tex-mml-chtml.js."""
    _check(node_modules)
    es5, dest = Path(node_modules) / "mathjax" / "es5", Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in _MATHJAX_KEEP:
        src = es5 / name
        if src.is_dir():
            shutil.copytree(src, dest / name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.map"))
        elif src.is_file():
            shutil.copy2(src, dest / name)
    return dest / "tex-mml-chtml.js"


def copy_reveal(dest: Path, node_modules: Path = DEFAULT_NODE_MODULES) -> Path:
    """Copy reveal.js's dist/ (core, themes and their fonts) and its notes plugin into `dest`; returns `dest`."""
    _check(node_modules)
    src, dest = Path(node_modules) / "reveal.js", Path(dest)
    ignore = shutil.ignore_patterns("*.map", "*.esm.js")
    shutil.copytree(src / "dist", dest / "dist", dirs_exist_ok=True, ignore=ignore)
    shutil.copytree(src / "plugin" / "notes", dest / "plugin" / "notes", dirs_exist_ok=True, ignore=ignore)
    shutil.copy2(src / "LICENSE", dest / "LICENSE")
    return dest
