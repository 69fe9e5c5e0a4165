"""gvlib's top-level helpers: device choice, seeding, profiles, lazy submodules."""
from __future__ import annotations

import os
import random
import subprocess
import sys

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


def test_seed_offset_shifts_every_seed_gvlib_uses(monkeypatch):
    from gvlib import data

    monkeypatch.delenv("GVLIB_SEED_OFFSET", raising=False)
    base = (gvlib.seed_everything(3), torch.rand(2).tolist(), torch.rand(2, generator=gvlib.generator(3)).tolist(),
            data.toy_2d("ring8", 4, seed=3).tolist(), next(iter(data.loader(torch.arange(10.0), batch_size=10, seed=3)))[0].tolist())
    monkeypatch.setenv("GVLIB_SEED_OFFSET", "1000")
    shifted = (gvlib.seed_everything(3), torch.rand(2).tolist(), torch.rand(2, generator=gvlib.generator(3)).tolist(),
               data.toy_2d("ring8", 4, seed=3).tolist(), next(iter(data.loader(torch.arange(10.0), batch_size=10, seed=3)))[0].tolist())
    assert shifted[0] == 1003 and base[0] == 3
    assert all(a != b for a, b in zip(base[1:], shifted[1:])), "every stream moved"
    # ... to exactly the stream of seed 1003 without an offset
    monkeypatch.setenv("GVLIB_SEED_OFFSET", "0")
    gvlib.seed_everything(1003)
    assert torch.rand(2).tolist() == shifted[1]
    assert torch.rand(2, generator=gvlib.generator(1003)).tolist() == shifted[2]
    # fixed data never moves
    monkeypatch.setenv("GVLIB_SEED_OFFSET", "1000")
    x_shifted, _ = data.load_digits("train", binarize="fixed")
    monkeypatch.setenv("GVLIB_SEED_OFFSET", "0")
    assert torch.equal(x_shifted, data.load_digits("train", binarize="fixed")[0])
    monkeypatch.setenv("GVLIB_SEED_OFFSET", "many")
    with pytest.raises(ValueError, match="GVLIB_SEED_OFFSET='many' is not an int"):
        gvlib.seed_everything(0)


def test_claim_prints_a_stable_verdict_and_raises_when_false(capsys):
    from gvlib.claims import ClaimError, claim

    claim("1 + 1 = 2 exactly", 1 + 1 == 2)
    claim("the mean is within 5 s.e. of 0", torch.tensor(True), mean=0.0123456, se=torch.tensor(0.01), n=100)
    out = capsys.readouterr().out
    assert out == "✓ 1 + 1 = 2 exactly\n✓ the mean is within 5 s.e. of 0\n    measured: mean=0.01235, se=0.01, n=100\n"
    with pytest.raises(ClaimError, match=r"✗ all are positive\n    measured: values=\[1, -2\]"):
        claim("all are positive", torch.tensor([1, -2]) > 0, values=torch.tensor([1, -2]))
    assert capsys.readouterr().out == "", "a false claim prints no check mark"
    assert issubclass(ClaimError, AssertionError)
    with pytest.raises(TypeError, match="needs a bool"):
        claim("a number is not a verdict", 0.3)
    with pytest.raises(TypeError, match="needs a bool"):
        claim("nor is a list", [True])


def test_mean_se_against_numpy():
    from gvlib.claims import mean_se

    rng = np.random.default_rng(3)
    v = rng.normal(2.0, 3.0, size=(40, 5))
    m, se = mean_se(torch.tensor(v, dtype=torch.float32))
    assert m == pytest.approx(v.mean(), rel=1e-6) and se == pytest.approx(v.std(ddof=1) / np.sqrt(v.size), rel=1e-6)
    assert mean_se([1.0, 3.0]) == (2.0, pytest.approx(1.0))  # s.d. sqrt(2), over sqrt(2)
    with pytest.raises(ValueError, match="at least 2"):
        mean_se([1.0])
    with pytest.raises(ValueError, match="NaN"):
        mean_se([1.0, float("nan")])


def test_keep_going_prints_a_false_verdict_instead_of_raising(capsys, monkeypatch):
    from gvlib.claims import ClaimError, claim

    monkeypatch.setenv("GVLIB_CLAIMS_KEEP_GOING", "1")
    claim("all are positive", torch.tensor([1, -2]) > 0, values=[1, -2])
    assert capsys.readouterr().out == "✗ all are positive\n    measured: values=[1, -2]\n"
    monkeypatch.setenv("GVLIB_CLAIMS_KEEP_GOING", "yes")  # only "1" switches it on
    with pytest.raises(ClaimError):
        claim("all are positive", False)


def test_the_measured_line_is_masked_for_nbval_and_the_verdict_is_not():
    import configparser
    import re
    from pathlib import Path

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).parent / "sanitize.cfg")
    subs = [(s["regex"], s["replace"]) for s in (cfg[n] for n in cfg.sections())]

    def sanitize(text):
        for regex, replace in subs:
            text = re.sub(regex, replace, text)
        return text

    a = "✓ L_5 >= L_1 on 3 seeds\n    measured: gap=0.41, se=0.02\n"
    b = "✓ L_5 >= L_1 on 3 seeds\n    measured: gap=0.38, se=0.03\n"
    assert sanitize(a) == sanitize(b)
    assert sanitize(a) != sanitize(a.replace("3 seeds", "2 seeds"))
    assert sanitize("✗ x") != sanitize("✓ x")


def _threads_after_import(env_extra: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("GVLIB_THREADS", "GVLIB_PROFILE")}
    env.update(env_extra, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")  # gvlib, not these variables, decides in cpu
    code = "import torch; before = torch.get_num_threads(); import gvlib; print(before, torch.get_num_threads())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_import_sets_one_thread_in_the_cpu_profile_and_obeys_gvlib_threads():
    run = _threads_after_import({})
    assert run.returncode == 0, run.stderr
    before, after = map(int, run.stdout.split())
    assert (before, after) == (2, 1)
    run = _threads_after_import({"GVLIB_THREADS": "3"})
    assert run.returncode == 0 and run.stdout.split()[1] == "3", run.stderr
    run = _threads_after_import({"GVLIB_PROFILE": "full"})  # the full profile keeps torch's own choice
    assert run.returncode == 0 and run.stdout.split() == ["2", "2"], run.stderr


def test_bad_gvlib_threads_is_a_clear_error():
    for bad in ("0", "-2", "two", "1.5"):
        run = _threads_after_import({"GVLIB_THREADS": bad})
        assert run.returncode != 0 and "GVLIB_THREADS" in run.stderr and "positive integer" in run.stderr, bad
