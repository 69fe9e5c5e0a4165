"""gvlib.train.fit under torchrun: 2 processes (gloo on CPU; NCCL where 2 GPUs are present) against one process.

On a machine with one GPU the same runs go through NCCL with 1 process (torchrun --nproc_per_node 1), which checks
the NCCL path of fit (process group, DistributedDataParallel on cuda:LOCAL_RANK, collectives) if not the sharding.

The worker (tests/_ddp_worker.py) calls fit unchanged; fit sees torchrun's environment and trains data-parallel.
Tolerance: the runs are in float64, and 2 processes differ from 1 only in the order of floating-point sums
(each process sums its share of the batch, then the two gradients are averaged), a relative error of about
1e-16 per sum. A few Adam steps amplify it by at most a few orders of magnitude, so the parameters must agree to
1e-10 (relative, plus 1e-12 absolute); a wrong share or a wrong weight of a share moves them by about 1e-3.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gvlib
from gvlib import train

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

RTOL, ATOL = 1e-10, 1e-12
BACKENDS = [pytest.param(("cpu", 2), id="gloo-cpu"),
            pytest.param(("cuda", 1), id="nccl-1gpu", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                               reason="needs a GPU")),
            pytest.param(("cuda", 2), id="nccl-2gpu", marks=pytest.mark.skipif(torch.cuda.device_count() < 2,
                                                                               reason="needs 2 GPUs"))]


def torchrun(out: Path, device: str, nproc: int = 2) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(HERE / "_ddp_worker.py"), str(out), device]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"torchrun failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}"


def read(out: Path, name: str, rank: int) -> dict:
    return torch.load(out / f"{name}_rank{rank}.pt", weights_only=False)


def assert_params_close(a, b, **tol):
    for p, q in zip(a, b, strict=True):
        torch.testing.assert_close(p, q, **tol)


@pytest.fixture(scope="module", params=BACKENDS)
def runs(request, tmp_path_factory):
    """One torchrun launch per backend: (folder of its outputs, device, number of processes)."""
    device, nproc = request.param
    out = tmp_path_factory.mktemp(f"ddp_{device}_{nproc}")
    torchrun(out, device, nproc)
    return out, device, nproc


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("GVLIB_QUIET", "1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):  # the reference runs are single-process
        monkeypatch.delenv(name, raising=False)


def single_process_det(device, **change):
    import _ddp_worker as w

    model = w.autoencoder()
    kw = {**w.DET, **change}
    h = train.fit(model, w.bce, w.data(101).to(device), valid=w.data(30, seed=1).to(device), device=device, **kw)
    return model, h


def test_two_processes_give_the_single_process_parameters(runs):
    out, device, nproc = runs
    model, h = single_process_det(device)
    ref = [p.detach().cpu() for p in model.parameters()]
    for rank in range(nproc):
        got = read(out, "det", rank)
        assert_params_close(got["params"], ref, rtol=RTOL, atol=ATOL)
        # the reported losses are the whole batches', over both processes
        assert got["history"]["train"] == pytest.approx(h.train, rel=1e-10)
        assert got["history"]["valid"] == pytest.approx(h.valid, rel=1e-10)
        assert got["history"]["train_terms"]["mse"] == pytest.approx(h.train_terms["mse"], rel=1e-10)
    # every process holds the same weights, bit for bit
    for rank in range(1, nproc):
        assert_params_close(read(out, "det", 0)["params"], read(out, "det", rank)["params"], rtol=0, atol=0)


def test_a_wrong_share_would_fail_the_tolerance(runs):
    # the tolerance is tight enough to see a mistake of one share's weight: training on 12 of the 13 rows of a share
    out, device, nproc = runs
    other, _ = single_process_det(device, batch_size=24)
    diff = max((p.detach().cpu() - q).abs().max().item()
               for p, q in zip(other.parameters(), read(out, "det", 0)["params"]))
    assert diff > 1e3 * (ATOL + RTOL)


def test_a_two_process_checkpoint_resumes_in_one_process(runs):
    out, device, nproc = runs
    full, h_full = single_process_det(device)
    import _ddp_worker as w

    resumed = w.autoencoder()
    h = train.fit(resumed, w.bce, w.data(101).to(device), valid=w.data(30, seed=1).to(device), device=device,
                  checkpoint=out / "det.pt", **w.DET)
    assert h.epoch == [1, 2, 3]
    assert_params_close([p.detach() for p in resumed.parameters()], [p.detach() for p in full.parameters()],
                        rtol=RTOL, atol=ATOL)


def test_a_resumed_two_process_run_continues_exactly_where_it_stopped(runs):
    # a sampling loss: each process draws its own noise, and a resume restores every process's streams
    out, _, nproc = runs
    for rank in range(nproc):
        assert_params_close(read(out, "noisy_resumed", rank)["params"], read(out, "noisy_full", rank)["params"],
                            rtol=0, atol=0)
    if nproc > 1:  # each process has a random stream of its own
        assert not torch.equal(read(out, "noisy_full", 0)["after"], read(out, "noisy_full", 1)["after"])


def test_only_rank_0_writes_the_checkpoint_and_shows_progress(runs):
    out, _, nproc = runs
    first = read(out, "noisy_half", 0)
    assert first["saves"] == 2 and "2/2" in first["stderr"]  # one checkpoint per epoch, and the bar, on rank 0
    for rank in range(1, nproc):
        other = read(out, "noisy_half", rank)
        assert other["saves"] == 0 and other["stderr"] == ""
    state = torch.load(out / "noisy.pt", weights_only=True)["extra"]["fit_state"]
    assert len(state["rng_ranks"]) == nproc and state["epoch"] == 4


def test_other_settings_are_refused_on_every_process(runs):
    out, _, nproc = runs
    for rank in range(nproc):
        message = read(out, "refused", rank)["message"]
        assert message is not None and "other settings" in message and "optimizer" in message, message


def test_outside_torchrun_fit_starts_no_process_group():
    import torch.distributed as dist

    train.fit(torch.nn.Linear(2, 2), lambda m, b: (m(b[0]) ** 2).mean(), torch.randn(8, 2), epochs=1)
    assert not (dist.is_available() and dist.is_initialized())
    gvlib.seed_everything(0)

