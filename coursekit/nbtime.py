"""pytest plugin (`-p coursekit.nbtime`): print each notebook's run time under nbval, and the total.

The course promises every notebook in under 60 s on a 2-core CPU (90 s for 06-10) and `make test` in
under 8 minutes; this table keeps those budgets visible in every CI log. Under pytest-xdist the times are
summed from the workers' reports, so they are per notebook whichever worker ran it.
"""
from __future__ import annotations

import os
from collections import defaultdict

_times: dict[str, float] = defaultdict(float)
_failed: set[str] = set()
BUDGET_S = {"06": 90.0, "07": 90.0, "08": 90.0, "09": 90.0, "10": 90.0}
DEFAULT_BUDGET_S = 60.0


def _notebook(nodeid: str) -> str | None:
    path = nodeid.split("::", 1)[0]
    return path if path.endswith(".ipynb") else None


def pytest_runtest_logreport(report):
    nb = _notebook(report.nodeid)
    if nb is None:
        return
    _times[nb] += report.duration
    if report.failed:
        _failed.add(nb)


def _budget(nb: str) -> float:
    return BUDGET_S.get(os.path.basename(nb)[:2], DEFAULT_BUDGET_S)


def pytest_terminal_summary(terminalreporter):
    if not _times:
        return
    tr = terminalreporter
    tr.write_sep("=", "notebook run times (nbval, this machine)")
    width = max(len(nb) for nb in _times)
    for nb in sorted(_times):
        t = _times[nb]
        flags = []
        if t > _budget(nb):
            flags.append(f"over its {_budget(nb):.0f} s budget")
        if nb in _failed:
            flags.append("FAILED")
        tr.write_line(f"{nb:<{width}}  {t:7.1f} s  {'; '.join(flags)}")
    tr.write_line(f"{'all notebooks':<{width}}  {sum(_times.values()):7.1f} s")
