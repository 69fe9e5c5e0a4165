"""Shared fixtures: `device` runs a test on cpu and on every accelerator this machine has (cuda, mps)."""
from __future__ import annotations

import pytest
import torch


def _devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    backend = getattr(torch.backends, "mps", None)
    if backend is not None and backend.is_available():
        devices.append("mps")
    return devices


DEVICES = _devices()


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Each available device in turn: cpu, then cuda and mps when present."""
    return torch.device(request.param)

