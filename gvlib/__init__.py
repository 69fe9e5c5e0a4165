"""gvlib: the helper library of the deep generative models course.

One module per idea: ``data``, ``distributions``, ``bounds``, ``models``, ``train``, ``plot``;
``course`` builds exercises from their masters and ``grade`` grades a student's notebook.
The few functions every notebook needs first live here.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

__version__ = "0.1.0"

PROFILES = ("cpu", "full")
_DEVICE_NAMES = ("cpu", "cuda", "mps")

__all__ = ["get_device", "seed_everything", "profile", "by_profile", "PROFILES"]
_SUBMODULES = ("data", "distributions", "bounds", "models", "train", "plot", "course", "grade", "experiments")


def __getattr__(name):
    """`gvlib.data`, `gvlib.models`, ... load on first use, so `import gvlib` alone stays light."""
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'gvlib' has no attribute {name!r}")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def get_device(prefer: str | None = None) -> torch.device:
    """The device notebooks compute on: `prefer`, else $GVLIB_DEVICE, else cuda, mps, cpu in that order."""
    choice = prefer if prefer is not None else os.environ.get("GVLIB_DEVICE") or None
    if choice is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = str(choice).split(":")[0]
    if kind not in _DEVICE_NAMES:
        raise ValueError(
            f"unknown device {choice!r}: expected one of {', '.join(_DEVICE_NAMES)} "
            "(optionally with an index, e.g. 'cuda:1'); set it with get_device(prefer=...) or $GVLIB_DEVICE"
        )
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {choice!r} was asked for but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}); unset GVLIB_DEVICE or install a CUDA build of torch"
        )
    if kind == "mps" and not _mps_available():
        raise RuntimeError(f"device {choice!r} was asked for but torch.backends.mps is not available")
    return torch.device(choice)


def seed_everything(seed: int = 0) -> int:
    """Seed Python's, NumPy's and torch's generators (all devices) with `seed`; returns it."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds cuda and mps generators too
    return seed


def profile() -> str:
    """The run profile, "cpu" (default: digits, small nets) or "full" (MNIST, papers' sizes), from $GVLIB_PROFILE."""
    value = os.environ.get("GVLIB_PROFILE", "cpu").strip().lower() or "cpu"
    if value not in PROFILES:
        raise ValueError(f"GVLIB_PROFILE={value!r} is not a profile: expected one of {PROFILES}")
    return value


def by_profile(cpu, full):
    """`cpu` in the cpu profile and `full` in the full one: `epochs = by_profile(cpu=20, full=500)`."""
    return full if profile() == "full" else cpu
