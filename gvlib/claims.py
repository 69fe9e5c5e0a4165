"""Claims a notebook checks on numbers: `claim(statement, holds, ...)` prints a verdict or raises.

    claim("the gap equals KL(q || p(z|x)) to 1e-9 for 5 random q", max_err < 1e-9, max_err=max_err)

prints

    ✓ the gap equals KL(q || p(z|x)) to 1e-9 for 5 random q
        measured: max_err=2.2e-13

and raises `ClaimError` (an AssertionError) when `holds` is false, so a false claim fails the notebook on
any machine. The first line is the verdict: it holds the statement, which should carry only numbers that
are the same everywhere (tolerances, closed forms, counts fixed by design). The `measured:` line carries
what this run measured (sampling, training, timing): the course's nbval sanitizer masks it, so a GPU, a
Mac or another torch release, which draw other random numbers, compare equal as long as the claim holds.

`coursekit claims` (the course's survey of every claim over several random streams) sets
``GVLIB_CLAIMS_KEEP_GOING=1``: a false claim then prints its ``✗`` verdict and figures and the notebook runs on,
so that one survey run shows every claim. Nothing else should set it.
"""
from __future__ import annotations

import math
import numbers
import os

import numpy as np
import torch

__all__ = ["ClaimError", "claim", "format_measured", "mean_se", "MEASURED_PREFIX"]

MEASURED_PREFIX = "    measured: "


class ClaimError(AssertionError):
    """A claim a notebook states turned out false on this run."""


def _truth(holds) -> bool:
    if isinstance(holds, (bool, np.bool_)):
        return bool(holds)
    if isinstance(holds, torch.Tensor) and holds.dtype == torch.bool:
        return bool(holds.all().item())
    if isinstance(holds, np.ndarray) and holds.dtype == np.bool_:
        return bool(holds.all())
    raise TypeError(f"claim(..., holds) needs a bool (or a bool tensor/array, all of which must hold), got "
                    f"{type(holds).__name__}; write the condition out, e.g. abs(a - b) < tol")


def _fmt(value) -> str:
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu")
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.ndarray):
        value = value.item() if value.size == 1 else value.tolist()
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{float(value):.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def format_measured(note: str | None = None, **measured) -> str:
    """The figures of one run as one line: the note, then name=value pairs (floats to 4 significant digits)."""
    parts = ([note] if note else []) + [f"{k}={_fmt(v)}" for k, v in measured.items()]
    return ", ".join(parts)


def claim(statement: str, holds, note: str | None = None, **measured) -> None:
    """Print '✓ statement' and the measured figures; raise ClaimError('✗ statement ...') when `holds` is false.

    holds: a bool, or a bool tensor/array that must hold everywhere. note / measured: what this run measured
    (printed on a `measured:` line that nbval does not compare; see the module docstring).
    """
    if not isinstance(statement, str) or not statement.strip():
        raise TypeError("claim's statement must be a non-empty string saying what is claimed")
    ok = _truth(holds)
    figures = format_measured(note, **measured)
    if not ok:
        verdict = f"✗ {statement}" + (f"\n{MEASURED_PREFIX}{figures}" if figures else "")
        if os.environ.get("GVLIB_CLAIMS_KEEP_GOING") == "1":
            print(verdict, flush=True)
            return
        raise ClaimError(verdict)
    print(f"✓ {statement}" + (f"\n{MEASURED_PREFIX}{figures}" if figures else ""), flush=True)


def mean_se(values) -> tuple[float, float]:
    """(mean, standard error) of independent measurements: the sample s.d. (n - 1) over sqrt(n).

    For a paired comparison pass the differences: `mean_se(nll_a - nll_b)`. values: a tensor, array or list of
    at least 2 finite numbers (any shape; all entries count).
    """
    x = torch.as_tensor(values.detach().cpu() if isinstance(values, torch.Tensor) else np.asarray(values, dtype=float),
                        dtype=torch.float64).flatten()
    if x.numel() < 2:
        raise ValueError(f"mean_se needs at least 2 values for a standard error, got {x.numel()}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("mean_se got NaN or infinite values")
    return x.mean().item(), (x.std() / math.sqrt(x.numel())).item()
