"""gvlib.iw_objectives: each arm's surrogate has the gradient it claims, for the decoder and for the encoder."""
import math

import pytest
import torch

from gvlib.iw_objectives import encoder_parameters, fit_split, split_losses
from gvlib.models import HierarchicalVAE


def _model(seed=0):
    torch.manual_seed(seed)
    return HierarchicalVAE(x_dim=6, layers=[((8,), 3)]).double()


def _grads(model, loss):
    phi, theta = encoder_parameters(model)
    g = torch.autograd.grad(loss, phi + theta, allow_unused=True)
    return [torch.zeros_like(p) if gi is None else gi for p, gi in zip(phi + theta, g)], len(phi)


def _plain(model, x, K, which, seed):
    """-objective with the same noise as split_losses (one randn of shape (K, batch, d) after the encoder pass)."""
    torch.manual_seed(seed)
    mu, logvar = model.recognition[0](x).chunk(2, -1)
    h = mu + torch.exp(0.5 * logvar) * torch.randn(K, *mu.shape, dtype=mu.dtype)
    log_w = (model.log_likelihood(x, model.decoder(h)) + torch.distributions.Normal(0.0, 1.0).log_prob(h).sum(-1)
             - torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(h).sum(-1))
    if which == "iwae":
        return -(torch.logsumexp(log_w, 0) - math.log(K)).mean()
    return -log_w.mean()


X = (torch.rand(4, 6, generator=torch.Generator().manual_seed(1)) < 0.5).double()


def test_iwae_arm_is_the_plain_iwae_gradient():
    m = _model()
    torch.manual_seed(3)
    split, n_phi = _grads(m, split_losses(m, X, 7, {"iwae": 1.0})["loss"])
    plain, _ = _grads(m, _plain(m, X, 7, "iwae", 3))
    for a, b in zip(split, plain):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_elbo_arm_decoder_on_iwae_encoder_on_elbo():
    m = _model()
    torch.manual_seed(4)
    split, n_phi = _grads(m, split_losses(m, X, 5, {"elbo": 1.0})["loss"])
    iwae, _ = _grads(m, _plain(m, X, 5, "iwae", 4))
    elbo, _ = _grads(m, _plain(m, X, 5, "elbo", 4))
    for i, a in enumerate(split):
        torch.testing.assert_close(a, (elbo if i < n_phi else iwae)[i], rtol=1e-10, atol=1e-12)


def test_piwae_extremes_are_iwae_and_elbo():
    m = _model()
    for M, other in ((1, "iwae"), (6, "elbo")):
        torch.manual_seed(5)
        a, _ = _grads(m, split_losses(m, X, 6, {"piwae": 1.0}, M=M)["loss"])
        torch.manual_seed(5)
        b, _ = _grads(m, split_losses(m, X, 6, {other: 1.0})["loss"])
        for u, v in zip(a, b):
            torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)


def test_dreg_encoder_gradient_has_the_iwae_mean_and_less_noise():
    m = _model()
    phi, _ = encoder_parameters(m)
    diffs, dreg_all, iwae_all = [], [], []
    for s in range(1500):
        torch.manual_seed(100 + s)
        d = torch.autograd.grad(split_losses(m, X[:1], 5, {"dreg": 1.0})["loss"], phi)
        torch.manual_seed(100 + s)
        i = torch.autograd.grad(split_losses(m, X[:1], 5, {"iwae": 1.0})["loss"], phi)
        d, i = torch.cat([t.reshape(-1) for t in d]), torch.cat([t.reshape(-1) for t in i])
        diffs.append(d - i)
        dreg_all.append(d)
        iwae_all.append(i)
    diffs = torch.stack(diffs)
    z = diffs.mean(0) / (diffs.std(0) / math.sqrt(diffs.shape[0]) + 1e-300)
    assert (z.abs() < 5).all(), z.abs().max()                     # paired: same noise, same expectation
    assert torch.stack(dreg_all).var(0).sum() < torch.stack(iwae_all).var(0).sum()


def test_decoder_gradient_does_not_depend_on_the_encoder_arm():
    m = _model()
    _, theta = encoder_parameters(m)
    outs = []
    for arm in ("iwae", "dreg", "elbo"):
        torch.manual_seed(9)
        outs.append(torch.autograd.grad(split_losses(m, X, 6, {arm: 1.0})["loss"], theta, allow_unused=True))
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_errors():
    m = _model()
    with pytest.raises(ValueError, match="keyed"):
        split_losses(m, X, 4, {"rws": 1.0})
    with pytest.raises(ValueError, match="M dividing K"):
        split_losses(m, X, 5, {"piwae": 1.0}, M=2)
    with pytest.raises(ValueError, match="one stochastic layer"):
        split_losses(HierarchicalVAE(x_dim=6, layers=[((4,), 2), ((4,), 2)]), X.float(), 4)
    with pytest.raises(ValueError, match="encoder must be"):
        fit_split(m, X, "nope", 4, 1)


def test_fit_split_improves_the_bound():
    torch.manual_seed(0)
    x = (torch.rand(60, 6) < torch.linspace(0.1, 0.9, 6)).float()
    m = HierarchicalVAE(x_dim=6, layers=[((8,), 2)])
    torch.manual_seed(1)
    before = split_losses(m, x, 10)["L_K"].item()
    fit_split(m, x, "piwae", 10, epochs=30, batch_size=20, lr=1e-2, M=2, dynamic_binarize=False)
    torch.manual_seed(1)
    assert split_losses(m, x, 10)["L_K"].item() > before + 0.5
