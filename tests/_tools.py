"""Helpers shared by the tests of tools that `make docs-install` / `make web-assets` provide."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NODE_MODULES = REPO / "build" / "web" / "node_modules"
# make test-docs (CI) sets COURSE_NO_SKIP=1: there a missing tool fails the test instead of skipping it.
NO_SKIP = os.environ.get("COURSE_NO_SKIP") == "1"


def skip(reason: str):
    """Skip, or fail under COURSE_NO_SKIP=1 (CI must not pass by skipping)."""
    if NO_SKIP:
        pytest.fail(f"COURSE_NO_SKIP=1 but {reason}")
    pytest.skip(reason)


def need(module: str, reason: str):
    """Skip (or fail, see `skip`) unless `module` imports."""
    try:
        __import__(module)
    except ImportError:
        skip(reason)
