"""gvlib.hierarchy: per-unit rates against torch.distributions and model.rates; vary_one_layer's contract."""
from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

import gvlib
from gvlib.hierarchy import unit_rates, vary_one_layer
from gvlib.models import HierarchicalVAE

D = 16


def _x(n=30):
    return (torch.rand(n, D, generator=torch.Generator().manual_seed(1)) < 0.4).float()


@pytest.mark.parametrize("inference", ["bottom_up", "top_down", "factorised"])
def test_unit_rates_sum_to_the_layer_rates(inference):
    gvlib.seed_everything(0)
    m = HierarchicalVAE(D, [((8,), 3), ((6,), 2)], inference=inference)
    x = _x()
    per_unit = unit_rates(m, x, n_draws=400)
    with torch.no_grad():
        draws = [m.rates(x)[1] for _ in range(400)]
    for l in range(2):
        rate = torch.stack([d[l] for d in draws]).mean().item()
        assert per_unit[l].shape == (m.latent_dims[l],)
        assert abs(per_unit[l].sum().item() - rate) < 0.05 * (1 + abs(rate)), (inference, l)


def test_top_layer_unit_rates_are_closed_form_kls():
    gvlib.seed_everything(0)
    m = HierarchicalVAE(D, [((8,), 3), ((6,), 2)], inference="top_down")
    x = _x()
    mu, logvar = m.encode(x)[1]
    ref = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).mean(0)
    assert torch.allclose(unit_rates(m, x, n_draws=3)[1], ref, atol=1e-5)
    assert (unit_rates(m, x, n_draws=3)[0] >= -1e-6).all()          # top-down: every entry is a KL


def test_vary_one_layer_contract():
    gvlib.seed_everything(0)
    m = HierarchicalVAE(D, [((8,), 3), ((6,), 2)], inference="top_down")
    x = _x(5)
    out = vary_one_layer(m, x, keep=2, n=7)
    assert out.shape == (7, 5, D) and (out >= 0).all() and (out <= 1).all()
    assert vary_one_layer(m, x, keep=1, n=4).shape == (4, 5, D)
    with pytest.raises(ValueError, match="keep"):
        vary_one_layer(m, x, keep=3, n=2)
    with pytest.raises(ValueError, match="top-down"):
        vary_one_layer(HierarchicalVAE(D, [((8,), 3), ((6,), 2)]), x, keep=1, n=2)


def test_feature_ladder_feeds_hidden_features_and_keeps_closed_form_rates():
    from gvlib.hierarchy import FeatureLadderVAE
    gvlib.seed_everything(0)
    m = FeatureLadderVAE(D, [((8, 7), 3), ((6,), 2)])
    assert m.recognition[1][0].in_features == 7                       # net 2 reads net 1's last hidden layer
    x = _x()
    with torch.no_grad():
        ups = m._bottom_up_pass(x)
        feats = m.recognition[0][:-1](x)
        assert torch.allclose(ups[1][0], m.recognition[1](feats).chunk(2, -1)[0])
        terms = m.layer_terms(x[:3], k=4000)
        _, rates = m.rates(x[:3].repeat(4000, 1))
    for l in range(2):                                                 # Monte Carlo terms average to the closed-form KLs
        mc, cf = -terms[l + 1].mean(0), rates[l].view(4000, 3).mean(0)
        assert torch.allclose(mc, cf, atol=0.15), (l, mc, cf)
    with pytest.raises(ValueError, match="top-down"):
        FeatureLadderVAE(D, [((8,), 3), ((6,), 2)], inference="bottom_up")


def test_batch_norm_ladder_normalises_every_hidden_layer_with_batch_statistics():
    from gvlib.hierarchy import BatchNormLadderVAE
    gvlib.seed_everything(0)
    m = BatchNormLadderVAE(D, [((8,), 3), ((6,), 2)]).eval()
    bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm1d)]
    assert len(bns) == 4 and all(b.running_mean is None for b in bns)
    x = _x()
    with torch.no_grad():
        h = m.recognition[0][:2](x)                                    # Linear + BatchNorm, in eval mode
    assert h.mean(0).abs().max() < 1e-5 and (h.std(0, unbiased=False) - 1).abs().max() < 1e-3
    assert list(m.state_dict()) == [k for k in m.state_dict() if "running" not in k]
    rec, rates = m.rates(x)
    assert rec.shape == (30,) and all(r.shape == (30,) and (r >= -1e-6).all() for r in rates)
