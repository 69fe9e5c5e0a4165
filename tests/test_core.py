"""gvlib's top-level helpers: device choice, seeding, profiles, lazy submodules."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import gvlib


def test_get_device_picks_the_best_available(monkeypatch):
    monkeypatch.delenv("GVLIB_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "mps" if gvlib._mps_available() else "cpu"
    assert gvlib.get_device().type == expected
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gvlib, "_mps_available", lambda: False)
    assert gvlib.get_device() == torch.device("cpu")


def test_environment_and_argument_choose_the_device(monkeypatch):
    monkeypatch.setenv("GVLIB_DEVICE", "cpu")
    assert gvlib.get_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("GVLIB_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="torch.cuda.is_available"):
        gvlib.get_device()
    # an explicit argument wins over the environment
    assert gvlib.get_device(prefer="cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'.*cpu, cuda, mps"):
        gvlib.get_device(prefer="tpu")


def test_seed_everything_makes_python_numpy_and_torch_repeat():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3).tolist()

    gvlib.seed_everything(123)
    first = draw()
    gvlib.seed_everything(123)
    assert draw() == first
    gvlib.seed_everything(124)
    assert draw() != first
    with pytest.raises(TypeError, match="seed must be an int"):
        gvlib.seed_everything(1.5)


def test_profile_and_by_profile(monkeypatch):
    monkeypatch.delenv("GVLIB_PROFILE", raising=False)
    assert gvlib.profile() == "cpu" and gvlib.by_profile(cpu=3, full=300) == 3
    monkeypatch.setenv("GVLIB_PROFILE", " Full ")
    assert gvlib.profile() == "full" and gvlib.by_profile(cpu=3, full=300) == 300
    monkeypatch.setenv("GVLIB_PROFILE", "gpu")
    with pytest.raises(ValueError, match="GVLIB_PROFILE='gpu' is not a profile"):
        gvlib.profile()


def test_submodules_load_lazily_and_unknown_names_fail():
    assert gvlib.bounds.iwae_bound is not None and gvlib.data.load_digits is not None
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        gvlib.nonsense
