"""gvlib.ensemble.fit_together: seeded initialisation, one gradient per model, histories, against a model trained alone."""
from __future__ import annotations

import math

import pytest
import torch

import gvlib
from gvlib.ensemble import fit_together
from gvlib.models import HierarchicalVAE

D = 16


def _make():
    return HierarchicalVAE(D, [((8,), 3), ((6,), 2)], inference="top_down")


def _loss(model, x, progress, scale):
    rec, rates = model.rates(x)
    elbo = (rec - sum(rates)).mean()
    return {"loss": -scale * elbo, "rate1": rates[0].mean(), "progress": torch.as_tensor(progress)}


def _data(n=40):
    return (torch.rand(n, D, generator=torch.Generator().manual_seed(0)) < 0.4).float()


def test_zero_epochs_gives_the_seeded_initialisation():
    models, hist = fit_together(_make, [3, 5], _loss, _data(), epochs=0, settings={"scale": torch.ones(2)})
    for s, m in zip([3, 5], models):
        gvlib.seed_everything(s)
        ref = _make()
        for (name, a), b in zip(m.named_parameters(), ref.parameters()):
            assert torch.equal(a, b), name
    assert hist == {}


def test_each_model_gets_only_its_own_gradient_and_history_shapes():
    x = _data()
    before = fit_together(_make, [0, 1, 2], _loss, x, epochs=0, settings={"scale": torch.ones(3)})[0]
    models, hist = fit_together(_make, [0, 1, 2], _loss, x, epochs=3, batch_size=10,
                                settings={"scale": torch.tensor([1.0, 0.0, 1.0])})
    moved = [max((a - b).abs().max().item() for a, b in zip(m.parameters(), m0.parameters()))
             for m, m0 in zip(models, before)]
    assert moved[1] == 0.0 and moved[0] > 1e-3 and moved[2] > 1e-3, moved   # a zero loss leaves its model alone
    assert set(hist) == {"loss", "rate1", "progress"}
    assert hist["rate1"].shape == (3, 3)
    assert torch.allclose(hist["progress"][:, 0], torch.tensor([0.0, 1 / 3, 2 / 3]))   # progress = epochs done / epochs
    assert all(not m.training for m in models)


def test_training_together_matches_training_alone_in_distribution():
    """The ELBO reached by a model trained in the stack is that of the same model trained alone, within noise."""
    x = _data(80)
    stacked, _ = fit_together(_make, [0, 1, 2, 3], _loss, x, epochs=30, batch_size=20, lr=1e-2,
                              settings={"scale": torch.ones(4)})
    alone = [fit_together(_make, [s], _loss, x, epochs=30, batch_size=20, lr=1e-2,
                          settings={"scale": torch.ones(1)})[0][0] for s in (0, 1, 2, 3)]
    with torch.no_grad():
        gvlib.seed_everything(0)
        e_stacked = [m.elbo(x.repeat(20, 1)).mean().item() for m in stacked]
        e_alone = [m.elbo(x.repeat(20, 1)).mean().item() for m in alone]
    start = -D * math.log(2)                                        # a fair-coin model, about where training starts
    assert min(e_stacked) > start and min(e_alone) > start
    assert abs(sum(e_stacked) / 4 - sum(e_alone) / 4) < 1.0, (e_stacked, e_alone)
