"""Run each chapter's full-profile code path at a tiny budget: `python scripts/tiny_full_profile.py chapters/*.ipynb`.

Part of `make gpu-check`. Every notebook runs top to bottom in a fresh kernel with GVLIB_PROFILE=full (the MNIST
data, the papers' network sizes, the device gvlib.get_device() picks, cuda when GVLIB_DEVICE=cuda), but cheaply:
a first cell, added to a copy in memory (the file is never written), makes

- gvlib.train.fit train 1 epoch on at most $TINY_ROWS rows (default 2000) of its data and validation data;
- gvlib.bounds.estimate_log_likelihood use at most $TINY_K importance samples (default 1000);
- gvlib.claims.claim report a claim that does not hold instead of raising (one epoch proves nothing: the check
  is that every cell runs, on the device, at the full sizes);
- downloads fail at once when $TINY_OFFLINE=1 (a machine without a network: a chapter whose data are not in
  $GVLIB_DATA is then reported as skipped, naming the file).

Prints one line per notebook (seconds, device, claims that did not hold at this budget) and exits 1 if any
notebook failed (0 when every notebook ran or was skipped for missing data).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

PREAMBLE = r'''
import inspect as _inspect, os as _os
import torch as _torch
import gvlib as _gvlib, gvlib.bounds as _bounds, gvlib.claims as _claims, gvlib.data as _data, gvlib.train as _train

_ROWS, _K = int(_os.environ.get("TINY_ROWS", "2000")), int(_os.environ.get("TINY_K", "1000"))
_fit, _estimate, _claim = _train.fit, _bounds.estimate_log_likelihood, _claims.claim
_fit_signature = _inspect.signature(_fit)
_TINY_FAILED_CLAIMS = []


def _few(data):
    if isinstance(data, _torch.Tensor):
        return data[:_ROWS]
    if isinstance(data, tuple) and data and all(isinstance(t, _torch.Tensor) for t in data):
        return tuple(t[:_ROWS] for t in data)
    return data


def _tiny_fit(*args, **kwargs):
    bound = _fit_signature.bind(*args, **kwargs)
    bound.arguments["epochs"] = min(bound.arguments["epochs"], 1)
    for name in ("data", "valid"):
        if name in bound.arguments:
            bound.arguments[name] = _few(bound.arguments[name])
    return _fit(*bound.args, **bound.kwargs)


def _tiny_estimate(model, x, k=5000, chunk=1000, batch_size=4, y=None):
    k = min(k, _K)
    return _estimate(model, x, k=k, chunk=min(chunk, k), batch_size=batch_size, y=y)


def _reported_claim(statement, holds, note=None, **measured):
    try:
        _claim(statement, holds, note, **measured)
    except _claims.ClaimError:
        _TINY_FAILED_CLAIMS.append(statement)
        print(f"(tiny budget: does not hold here) {statement}")


def _offline(*args, **kwargs):
    raise OSError("no downloads in this check (TINY_OFFLINE=1)")


_train.fit, _bounds.estimate_log_likelihood, _claims.claim = _tiny_fit, _tiny_estimate, _reported_claim
if _os.environ.get("TINY_OFFLINE", "0") == "1":
    _data._fetch_url = _offline
assert _gvlib.profile() == "full"
print("TINY_DEVICE", _gvlib.get_device())
'''

REPORT = "print('TINY_REPORT', len(_TINY_FAILED_CLAIMS))"


def run_notebook(path: Path, timeout: int) -> tuple[str, float, str]:
    """(status "ok" | "skipped" | "FAILED", seconds, detail) of one notebook at the tiny budget."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(PREAMBLE))
    nb.cells.append(nbformat.v4.new_code_cell(REPORT))
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    t0 = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as e:
        seconds = time.perf_counter() - t0
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        if getattr(e, "ename", "") in ("DataNotFoundError", "ChecksumError"):
            return "skipped", seconds, f"data not here: {lines[-1][:300] if lines else e.ename}"
        return "FAILED", seconds, f"{getattr(e, 'ename', type(e).__name__)}: {lines[-1][:300] if lines else ''}"
    seconds = time.perf_counter() - t0
    text = "\n".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                     for out in cell.get("outputs", []) if out.get("output_type") == "stream")
    device = next((ln.split()[1] for ln in text.splitlines() if ln.startswith("TINY_DEVICE")), "?")
    failed = next((ln.split()[1] for ln in text.splitlines() if ln.startswith("TINY_REPORT")), "?")
    return "ok", seconds, f"device {device}; {failed} claim(s) not holding at this budget"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="+", type=Path)
    p.add_argument("--timeout", type=int, default=600, help="seconds a cell may run (default 600)")
    args = p.parse_args(argv)
    os.environ["GVLIB_PROFILE"] = "full"
    os.environ.setdefault("GVLIB_QUIET", "1")
    results = []
    for nb in args.notebooks:
        status, seconds, detail = run_notebook(nb, args.timeout)
        results.append(status)
        print(f"{nb}: {status} in {seconds:.1f} s ({detail})", flush=True)
    print(f"tiny full profile: {results.count('ok')} ran, {results.count('skipped')} skipped for missing data, "
          f"{results.count('FAILED')} failed")
    return 1 if "FAILED" in results else 0


if __name__ == "__main__":
    sys.exit(main())
