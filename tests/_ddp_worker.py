"""One process of the data-parallel tests (tests/test_ddp.py): `torchrun --nproc_per_node 2 _ddp_worker.py OUT device`.

Every process calls gvlib.train.fit exactly as a single process would; fit sees torchrun's RANK and WORLD_SIZE
and trains data-parallel. Each process writes what it ended with to OUT/<name>_rank<r>.pt (the test reads them):
a deterministic run, a sampling run, the same sampling run interrupted after 2 epochs and resumed by a new fit
call (fresh model, other global random state), and a resume with other settings (which must fail everywhere).
The test imports this file for its data and settings only.
"""
from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import torch
from torch import nn

import gvlib
from gvlib import train



def data(n, d=6, seed=0):
    """Grey levels in [0, 1] (fit binarizes them dynamically)."""
    g = torch.Generator().manual_seed(seed)
    return torch.sigmoid(torch.randn(n, 2, generator=g) @ torch.randn(2, d, generator=g)).double()


def autoencoder():
    gvlib.seed_everything(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 6)).double()


def bce(model, batch):
    """A loss without sampling: the same parameters with 1 or 2 processes, up to the order of sums."""
    x = batch[0]
    logits = model(x)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1).mean()
    return {"loss": loss, "mse": ((torch.sigmoid(logits) - x) ** 2).mean()}


class Noisy(nn.Module):
    """Gaussian encoder, reparameterized sample from the global RNG, Bernoulli decoder: a sampling loss."""

    def __init__(self):
        super().__init__()
        self.enc, self.dec = nn.Linear(6, 4), nn.Linear(2, 6)

    def loss(self, x):
        mu, logvar = self.enc(x).chunk(2, -1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        rec = nn.functional.binary_cross_entropy_with_logits(self.dec(z), x, reduction="none").sum(-1)
        return (rec + 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)).mean()


def noisy():
    gvlib.seed_everything(0)
    return Noisy().double()


def noisy_loss(model, batch):
    return model.loss(batch[0])


# the settings the test repeats in a single process: 101 rows in batches of 25 = shares of 13 and 12 rows, and a
# last batch of 1 row, which one of two processes has no share of
DET = dict(epochs=3, batch_size=25, lr=1e-2, dynamic_binarize=True, seed=5)
NOISY = dict(epochs=4, batch_size=20, lr=1e-2, seed=2)


def main(out: Path, device: torch.device, rank: int) -> None:
    def dump(name, model, **extra):
        torch.save({"params": [p.detach().cpu() for p in model.parameters()], **extra}, out / f"{name}_rank{rank}.pt")

    model = autoencoder()
    h = train.fit(model, bce, data(101).to(device), valid=data(30, seed=1).to(device), device=device, **DET)
    dump("det", model, history=h.as_dict())

    model = autoencoder()  # interrupted after 2 of 3 epochs: the test resumes it in one process
    train.fit(model, bce, data(101).to(device), valid=data(30, seed=1).to(device), device=device,
              checkpoint=out / "det.pt", **{**DET, "epochs": 2})

    model = noisy()
    train.fit(model, noisy_loss, data(80).to(device), device=device, **NOISY)
    dump("noisy_full", model, after=torch.rand(4))  # a draw from this process's global stream after fit

    saves, real_save, err = [], train.save, io.StringIO()
    train.save = lambda *a, **kw: saves.append(1) or real_save(*a, **kw)
    model = noisy()
    with contextlib.redirect_stderr(err):  # interrupted after 2 of 4 epochs
        train.fit(model, noisy_loss, data(80).to(device), device=device, checkpoint=out / "noisy.pt",
                  progress=True, **{**NOISY, "epochs": 2})
    train.save = real_save
    dump("noisy_half", model, saves=len(saves), stderr=err.getvalue())

    model = noisy()
    torch.manual_seed(1234 + rank)  # a resumed run must not depend on the state it finds
    train.fit(model, noisy_loss, data(80).to(device), device=device, checkpoint=out / "noisy.pt", **NOISY)
    dump("noisy_resumed", model)

    try:
        train.fit(autoencoder(), bce, data(101).to(device), device=device, checkpoint=out / "det.pt",
                  valid=data(30, seed=1).to(device), **{**DET, "lr": 1e-3})
        message = None
    except train.CheckpointError as e:
        message = str(e)
    dump("refused", model, message=message)


if __name__ == "__main__":
    import os

    main(Path(sys.argv[1]), torch.device(sys.argv[2]), int(os.environ["RANK"]))
