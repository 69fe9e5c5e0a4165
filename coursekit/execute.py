"""Re-execute notebooks top to bottom in a fresh kernel and save them in place: ``coursekit execute NB [NB ...]``."""
from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat

from .exercises import KERNEL_DISPLAY_NAME, render

__all__ = ["execute_notebook"]


def execute_notebook(path: Path, timeout: int = 600) -> float:
    """Execute a notebook in a fresh kernel (cwd = its folder) and save it in place; returns seconds.

    A cell that fails raises nbclient's CellExecutionError and the file is left untouched. The kernelspec is
    written as JupyterLab writes it ("python3", "Python 3 (ipykernel)"), so opening the notebook changes nothing.
    """
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    nb.metadata.pop("widgets", None)  # widget state is large and goes stale; the static figures stay
    nb.metadata["kernelspec"] = {"display_name": KERNEL_DISPLAY_NAME, "language": "python", "name": "python3"}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render(nb), encoding="utf-8")
    os.replace(tmp, path)
    return seconds
