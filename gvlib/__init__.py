"""gvlib: the helper library of the deep generative models course.

One module per idea: ``data``, ``distributions``, ``bounds``, ``models``, ``train``, ``plot``, ``claims``,
``experiments``. The few functions every notebook needs first live here. The course's own machinery (exercise
builder, grader, nbval plugin, bench) is the separate package ``coursekit``; gvlib needs no Jupyter.

Seeds: every seed gvlib uses for randomness (`seed_everything`, `generator`, the `seed=` of `data.loader`,
`train.fit` and `data.toy_2d`) is shifted by $GVLIB_SEED_OFFSET (default 0), so a whole notebook can be
re-run on another random stream (`make test-portable`). Fixed data (the digits split, the fixed binarizations)
never moves.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

__version__ = "0.2.0"

PROFILES = ("cpu", "full")
_DEVICE_NAMES = ("cpu", "cuda", "mps")

__all__ = ["get_device", "seed_everything", "seed_offset", "generator", "profile", "by_profile", "PROFILES",
           "cpu_threads"]
_SUBMODULES = ("data", "distributions", "bounds", "models", "train", "plot", "claims", "classifier", "metrics", "zoo",
               "autoregressive", "experiments", "conditional_prior", "draw",
               "ensemble", "hierarchy")


def __getattr__(name):
    """`gvlib.data`, `gvlib.models`, ... load on first use, so `import gvlib` alone stays light."""
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'gvlib' has no attribute {name!r}")


def cpu_threads() -> int | None:
    """The number of CPU threads torch gets when gvlib is imported: $GVLIB_THREADS, else 1 in the cpu profile.

    The cpu profile's nets are small, and on them threading costs more than it gains: on a 2-core machine
    chapter 06 takes 67 s on one thread against 94 s on two, and every chapter ran faster on one thread under
    nbval than on two under `make execute`. In the full profile (meant for a GPU) torch keeps its own default,
    and this returns None. Set GVLIB_THREADS=N to choose (N a positive integer), e.g. on a many-core CPU that
    runs the full profile. An invalid $GVLIB_PROFILE is left for `profile()` to report.
    """
    value = os.environ.get("GVLIB_THREADS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"GVLIB_THREADS={value!r} is not a positive integer: unset it, or set it to e.g. 1 or 4")
        return int(value)
    try:
        return 1 if profile() == "cpu" else None
    except ValueError:
        return None


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def get_device(prefer: str | None = None) -> torch.device:
    """The device notebooks compute on: `prefer`, else $GVLIB_DEVICE, else cuda (GPU $LOCAL_RANK under torchrun), mps, cpu."""
    choice = prefer if prefer is not None else os.environ.get("GVLIB_DEVICE") or None
    if choice is None:
        if torch.cuda.is_available():
            # under torchrun each process has its own GPU, number $LOCAL_RANK (when several are visible)
            local = int(os.environ.get("LOCAL_RANK", "0") or 0)
            return torch.device("cuda", local) if torch.cuda.device_count() > 1 else torch.device("cuda")
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


def seed_offset() -> int:
    """The shift $GVLIB_SEED_OFFSET (an int, default 0) that gvlib adds to every seed it uses for randomness."""
    value = os.environ.get("GVLIB_SEED_OFFSET", "").strip()
    if not value:
        return 0
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"GVLIB_SEED_OFFSET={value!r} is not an int (it shifts every seed, e.g. 1000)") from None


def _shifted(seed, name: str = "seed") -> int:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"{name} must be an int, got {type(seed).__name__}")
    return int(seed) + seed_offset()


def seed_everything(seed: int = 0) -> int:
    """Seed Python's, NumPy's and torch's generators (all devices) with seed + $GVLIB_SEED_OFFSET; returns that seed."""
    seed = _shifted(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds cuda and mps generators too
    return seed


def generator(seed: int = 0, device=None) -> torch.Generator:
    """A torch.Generator on `device` (default cpu) seeded with seed + $GVLIB_SEED_OFFSET, for draws a cell controls itself."""
    g = torch.Generator(device=device) if device is not None else torch.Generator()
    return g.manual_seed(_shifted(seed) % 2**63)


def profile() -> str:
    """The run profile, "cpu" (default: digits, small nets) or "full" (MNIST, papers' sizes), from $GVLIB_PROFILE."""
    value = os.environ.get("GVLIB_PROFILE", "cpu").strip().lower() or "cpu"
    if value not in PROFILES:
        raise ValueError(f"GVLIB_PROFILE={value!r} is not a profile: expected one of {PROFILES}")
    return value


def by_profile(cpu, full):
    """`cpu` in the cpu profile and `full` in the full one: `epochs = by_profile(cpu=20, full=500)`."""
    return full if profile() == "full" else cpu


_threads = cpu_threads()
if _threads is not None and torch.get_num_threads() != _threads:
    torch.set_num_threads(_threads)
