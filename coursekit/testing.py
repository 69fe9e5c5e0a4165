"""Assertion helpers for the masters' test cells: ``from coursekit.testing import assert_close, ...``.

Each test cell imports what it uses at its top, so a student who redefines `assert_close` in the notebook
cannot change what the test calls (the import binds the name again), under coursekit's grader and under
nbgrader alike. Everything here takes plain data (tensors, arrays, numbers, lists) and returns nothing or a
plain value; nothing here computes an exercise's answer.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["as_float64", "assert_close", "assert_shape", "assert_finite", "assert_mean_within", "generator"]


def as_float64(value, what: str = "result") -> torch.Tensor:
    """`value` (tensor, array, number or nested list of numbers) as a float64 CPU tensor; AssertionError if it is none of these."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64)
    if isinstance(value, bool) or value is None:
        raise AssertionError(f"{what}: expected numbers, got {value!r}")
    try:
        return torch.as_tensor(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        raise AssertionError(f"{what}: expected a tensor or numbers, got a {type(value).__name__}") from None


def assert_shape(value, shape, what: str = "result") -> None:
    """AssertionError unless `value` is a tensor/array of exactly `shape`."""
    got = tuple(as_float64(value, what).shape)
    if got != tuple(shape):
        raise AssertionError(f"{what}: expected shape {tuple(shape)}, got {got}")


def assert_finite(value, what: str = "result") -> None:
    """AssertionError if `value` holds a NaN or an infinity (names the first one)."""
    t = as_float64(value, what)
    bad = ~torch.isfinite(t)
    if bad.any():
        i = int(bad.reshape(-1).nonzero()[0])
        raise AssertionError(f"{what}: element {i} is {t.reshape(-1)[i].item()}")


def assert_close(value, expected, rtol: float = 1e-6, atol: float = 1e-9, what: str = "result") -> None:
    """|value - expected| <= atol + rtol |expected| elementwise, in float64, shapes equal; the message shows the worst element."""
    out, ref = as_float64(value, what), as_float64(expected, "reference")
    if out.shape != ref.shape:
        raise AssertionError(f"{what}: expected shape {tuple(ref.shape)}, got {tuple(out.shape)}")
    err = (out - ref).abs()
    bad = ~(err <= atol + rtol * ref.abs())  # NaN counts as bad
    if bad.any():
        scaled = torch.where(torch.isnan(err), torch.full_like(err, math.inf), err / (atol + rtol * ref.abs()))
        i = int(scaled.reshape(-1).argmax())
        raise AssertionError(f"{what}: got {out.reshape(-1)[i].item():.10g}, expected {ref.reshape(-1)[i].item():.10g} "
                             f"(tolerance {atol:g} + {rtol:g} x |expected|; {int(bad.sum())} of {bad.numel()} elements off)")


def assert_mean_within(samples, truth, k: float = 5.0, what: str = "estimate") -> None:
    """The mean of independent `samples` (n,) lies within k standard errors (sample s.d. / sqrt n) of `truth`.

    With k = 5 a correct, unbiased estimator fails with probability below 1e-6 when the mean is close to normal.
    """
    s = as_float64(samples, what).reshape(-1)
    if s.numel() < 2:
        raise AssertionError(f"{what}: need at least 2 samples, got {s.numel()}")
    assert_finite(s, what)
    se = s.std().item() / math.sqrt(s.numel())
    gap = abs(s.mean().item() - float(truth))
    if gap > k * se + 1e-12:
        raise AssertionError(f"{what}: mean {s.mean().item():.6g} is {gap / max(se, 1e-300):.1f} standard errors from "
                             f"{float(truth):.6g} (allowed {k:g})")


def generator(seed: int) -> torch.Generator:
    """A CPU torch.Generator seeded with `seed`: tests draw their own inputs, independent of the notebook's RNG."""
    return torch.Generator().manual_seed(int(seed))
