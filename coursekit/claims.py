"""Every checked claim of some notebooks, with what each random stream measured: ``coursekit claims``.

    coursekit claims --offsets 0 1000 2000 --out runs/claims.md chapters/*.ipynb

Each notebook is executed once per seed offset (``GVLIB_SEED_OFFSET``, as ``make test-portable`` does, with
``ATEN_CPU_CAPABILITY=default`` unless ``--native-kernels``), in memory: the committed notebook is not touched.
The verdict lines (``✓ ...``/``✗ ...``) and their ``measured:`` lines are collected from the outputs, a claim that
failed included (``GVLIB_CLAIMS_KEEP_GOING=1``: a false claim prints ``✗`` and the run goes on), and written as one Markdown table per notebook: a claim per row, an
offset per column. This is how "holds over seeds" is shown with figures, not just with a green test.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat

__all__ = ["claims_in", "run_notebook", "report", "main"]

_MEASURED = "measured: "


def claims_in(nb) -> list[tuple[str, bool, str]]:
    """(statement, held, measured figures) for every claim printed in an executed notebook, in order."""
    lines = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                lines += out.get("text", "").splitlines()
            elif out.get("output_type") == "error" and out.get("ename") == "ClaimError":
                lines += str(out.get("evalue", "")).splitlines()
    found = []
    for line in lines:
        text = line.strip()
        if text.startswith(("✓ ", "✗ ")):
            found.append([text[2:].strip(), text.startswith("✓"), ""])
        elif text.startswith(_MEASURED) and found and not found[-1][2]:
            found[-1][2] = text[len(_MEASURED):]
    return [tuple(f) for f in found]


def run_notebook(path: Path, offset: int, portable_kernels: bool = True, timeout: int = 600):
    """Execute a copy of the notebook in memory with seed offset `offset`; returns (claims, seconds, error)."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    saved = {k: os.environ.get(k) for k in ("GVLIB_SEED_OFFSET", "ATEN_CPU_CAPABILITY", "GVLIB_QUIET",
                                            "GVLIB_CLAIMS_KEEP_GOING")}
    os.environ["GVLIB_SEED_OFFSET"] = str(offset)
    os.environ["GVLIB_CLAIMS_KEEP_GOING"] = "1"  # a false claim prints its verdict and the notebook runs on
    os.environ["GVLIB_QUIET"] = "1"
    if portable_kernels:
        os.environ["ATEN_CPU_CAPABILITY"] = "default"
    start, error = time.perf_counter(), None
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(Path(path).parent.resolve())}}).execute()
    except Exception as exc:  # a timeout or a dead kernel: report what ran
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error" and out.get("ename") != "ClaimError" and error is None:
                error = f"{out.get('ename')}: {out.get('evalue', '')}".strip()
    return claims_in(nb), time.perf_counter() - start, error


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def report(results: dict, offsets: list[int], portable: bool = True) -> str:
    """Markdown: per notebook, a row per claim (in the order of the first offset's run), a column per offset."""
    kernels = ("ATen's portable kernels (`ATEN_CPU_CAPABILITY=default`, as `make test-portable` runs them), so offset "
               "0 can differ from the committed notebook, executed with this CPU's kernels, where training is chaotic "
               "(chapter 08's GANs)" if portable else "this CPU's ATen kernels")
    lines = ["# Claims over random streams", "",
             f"Each notebook executed with `GVLIB_SEED_OFFSET` = {', '.join(map(str, offsets))} and {kernels}; a cell "
             "holds the verdict (✓ held, ✗ failed, – not reached) and what that run measured.", ""]
    for name, runs in results.items():
        lines += [f"## {name}", ""]
        for off in offsets:
            _, seconds, error = runs[off]
            lines.append(f"- offset {off}: {seconds:.0f} s" + (f", **error**: {_cell(error)}" if error else ""))
        statements = []
        for off in offsets:
            for statement, _, _ in runs[off][0]:
                if statement not in statements:
                    statements.append(statement)
        lines += ["", "| claim | " + " | ".join(f"offset {o}" for o in offsets) + " |",
                  "| --- |" + " --- |" * len(offsets)]
        for statement in statements:
            row = [_cell(statement)]
            for off in offsets:
                hit = [c for c in runs[off][0] if c[0] == statement]
                row.append("–" if not hit else f"{'✓' if hit[0][1] else '✗'} {_cell(hit[0][2])}".strip())
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="coursekit claims", description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="+", type=Path)
    p.add_argument("--offsets", type=int, nargs="+", default=[0, 1000, 2000], help="seed offsets (default 0 1000 2000)")
    p.add_argument("--out", type=Path, default=None, help="write the Markdown here (default: print it)")
    p.add_argument("--native-kernels", action="store_true", help="keep this CPU's ATen kernels (default: 'default')")
    p.add_argument("--timeout", type=int, default=600, help="seconds a cell may run")
    args = p.parse_args(argv)
    missing = [str(nb) for nb in args.notebooks if not nb.is_file()]
    if missing:
        p.error(f"no such notebook: {', '.join(missing)}")
    if len(set(args.offsets)) != len(args.offsets):
        p.error(f"--offsets must be distinct, got {args.offsets}")
    results, failed = {}, 0
    for nb in args.notebooks:
        results[str(nb)] = {}
        for off in args.offsets:
            claims, seconds, error = run_notebook(nb, off, not args.native_kernels, args.timeout)
            results[str(nb)][off] = (claims, seconds, error)
            bad = sum(not held for _, held, _ in claims)
            failed += bool(bad or error)
            print(f"{nb} offset {off}: {len(claims)} claims, {bad} failed, {seconds:.0f} s"
                  + (f", error: {error}" if error else ""), file=sys.stderr, flush=True)
    text = report(results, args.offsets, not args.native_kernels)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    return 1 if failed else 0
