"""gvlib.bounds: the IWAE bound, weights, log-likelihood estimates and active units, against exact answers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn
from torch.distributions import MultivariateNormal, Normal

from gvlib.bounds import (
    active_units,
    effective_sample_size,
    elbo,
    estimate_log_likelihood,
    iwae_bound,
    normalized_weights,
    posterior_mean_variances,
)
from gvlib.models import VAE, HierarchicalVAE

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)


# ------------------------------------------------------------------ a model with an exact log p(x)
class LinearGaussian(nn.Module):
    """p(z) = N(0, I), p(x | z) = N(W z + b, s^2 I), so p(x) = N(b, W W^T + s^2 I) exactly.

    q(z | x) is deliberately imperfect: the exact posterior's mean shifted by `shift` and a diagonal
    covariance `widen` times the exact posterior's marginal variances (it ignores their correlations).
    All log-densities come from torch.distributions, independently of gvlib.distributions.
    """

    def __init__(self, x_dim=5, z_dim=2, s=0.5, shift=0.1, widen=2.0, seed=0, dtype=torch.float64):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = nn.Parameter(torch.randn(x_dim, z_dim, generator=g, dtype=dtype))
        self.b = nn.Parameter(torch.randn(x_dim, generator=g, dtype=dtype))
        self.s, self.shift, self.widen = s, shift, widen
        self.latent_dims, self.x_dim = [z_dim], x_dim

    def log_px(self, x):
        """Exact log p(x) = log N(x; b, W W^T + s^2 I): (batch, D) -> (batch,)."""
        cov = self.W @ self.W.T + self.s**2 * torch.eye(self.x_dim, dtype=self.W.dtype)
        return MultivariateNormal(self.b, covariance_matrix=cov).log_prob(x)

    def sample_x(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.W.shape[1], generator=g, dtype=self.W.dtype)
        return z @ self.W.T + self.b + self.s * torch.randn(n, self.x_dim, generator=g, dtype=self.W.dtype)

    def encode(self, x, sample=False):
        precision = torch.eye(self.W.shape[1], dtype=x.dtype) + self.W.T @ self.W / self.s**2
        cov = torch.linalg.inv(precision)
        mu = (x - self.b) @ self.W @ cov / self.s**2 + self.shift
        logvar = torch.log(self.widen * torch.diagonal(cov)).expand_as(mu)
        return [(mu, logvar)]

    def log_weights(self, x, k=1):
        (mu, logvar), = self.encode(x)
        q = Normal(mu, torch.exp(0.5 * logvar))
        z = q.rsample((k,))                                             # (k, batch, d)
        log_q = q.log_prob(z).sum(-1)
        log_prior = Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_lik = Normal(z @ self.W.T + self.b, self.s).log_prob(x).sum(-1)
        return log_prior + log_lik - log_q


# ------------------------------------------------------------------------------------ the bounds
def test_iwae_bound_at_k1_is_the_log_weight_and_the_elbo():
    log_w = torch.randn(1, 6) * 30
    assert torch.equal(iwae_bound(log_w), log_w[0])
    assert torch.equal(elbo(log_w), log_w[0])


@SETTINGS
@given(k=st.integers(1, 50), batch=st.integers(1, 5), seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.1, 3.0, 15.0]))
def test_iwae_bound_matches_naive_float64_formula(k, batch, seed, scale):
    g = torch.Generator().manual_seed(seed)
    log_w = torch.randn(k, batch, generator=g, dtype=torch.float64) * scale - 2.0
    naive = torch.log(torch.exp(log_w).mean(0))  # fine in float64 at this magnitude
    torch.testing.assert_close(iwae_bound(log_w), naive, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(iwae_bound(log_w.float()).double(), naive, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(elbo(log_w), log_w.sum(0) / k)
    # Jensen: ELBO <= L_k <= max log w
    assert (elbo(log_w) <= iwae_bound(log_w) + 1e-12).all()
    assert (iwae_bound(log_w) <= log_w.max(0).values + 1e-12).all()


@pytest.mark.parametrize("centre", [1e4, -1e4])
def test_iwae_bound_stable_at_magnitude_1e4(centre):
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(100, 3, generator=g, dtype=torch.float64) * 5
    expected = centre + torch.log(torch.exp(delta).mean(0))  # shift invariance, computed where exp is safe
    for dtype, tol in [(torch.float64, 1e-9), (torch.float32, 2e-3)]:
        got = iwae_bound((centre + delta).to(dtype))
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got.double(), expected, rtol=0, atol=tol)
    # the naive formula overflows or underflows there: this is what the bound must avoid
    assert not torch.isfinite(torch.log(torch.exp(centre + delta).mean(0))).all()


def test_iwae_bound_along_another_dim_and_on_device(device):
    log_w = torch.randn(4, 7, device=device)
    torch.testing.assert_close(iwae_bound(log_w.T.contiguous(), dim=1), iwae_bound(log_w, dim=0))
    torch.testing.assert_close(iwae_bound(log_w, dim=-2), iwae_bound(log_w))
    assert iwae_bound(log_w).device.type == device.type


def test_iwae_bound_gradient_is_self_normalized_weights():
    log_w = torch.randn(6, 2, requires_grad=True)
    iwae_bound(log_w).sum().backward()
    torch.testing.assert_close(log_w.grad, torch.softmax(log_w.detach(), 0))


@pytest.mark.parametrize("fn", [elbo, iwae_bound, effective_sample_size, normalized_weights])
def test_bad_log_weights_raise_clear_errors(fn):
    with pytest.raises(ValueError, match="k >= 1"):
        fn(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="out of range"):
        fn(torch.zeros(2, 3), dim=2)
    with pytest.raises(ValueError, match="scalar"):
        fn(torch.tensor(1.0))
    with pytest.raises(TypeError):
        fn([[0.0, 1.0]])
    with pytest.raises(TypeError, match="floating"):
        fn(torch.zeros(2, 3, dtype=torch.long))


# ------------------------------------------------------------------------------------------- ESS
@pytest.mark.parametrize("k", [1, 7, 1000])
def test_ess_of_equal_weights_is_k(k):
    for c in (0.0, 1e4, -1e4):
        torch.testing.assert_close(effective_sample_size(torch.full((k, 2), c, dtype=torch.float64)),
                                   torch.full((2,), float(k), dtype=torch.float64))


def test_ess_of_one_dominant_weight_is_one():
    log_w = torch.full((50, 3), -1e4)
    log_w[7] = 1e4
    torch.testing.assert_close(effective_sample_size(log_w), torch.ones(3))
    log_w = torch.full((50,), -math.inf)
    log_w[0] = 0.0
    assert effective_sample_size(log_w).item() == 1.0


@SETTINGS
@given(k=st.integers(1, 40), seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.5, 4.0]))
def test_ess_matches_naive_formula_and_lies_in_1_k(k, seed, scale):
    log_w = torch.randn(k, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    w = torch.exp(log_w)
    naive = w.sum(0) ** 2 / (w**2).sum(0)
    ess = effective_sample_size(log_w)
    torch.testing.assert_close(ess, naive)
    assert ((ess >= 1 - 1e-9) & (ess <= k + 1e-9)).all()
    torch.testing.assert_close(effective_sample_size(log_w + 5e3), ess)  # shift invariant
    nw = normalized_weights(log_w)
    torch.testing.assert_close(nw, w / w.sum(0))
    torch.testing.assert_close(1.0 / (nw**2).sum(0), ess)


# ---------------------------------------------------------------- log-likelihood on a known model
def test_linear_gaussian_reference_is_right():
    """The test model itself: log p(x) exact, and E_q[w] = p(x) within Monte Carlo error."""
    model = LinearGaussian()
    x = model.sample_x(3)
    torch.manual_seed(0)
    w = torch.exp(model.log_weights(x, 200_000) - model.log_px(x))  # E[w / p(x)] = 1
    assert ((w.mean(0) - 1).abs() < 5 * w.std(0) / math.sqrt(w.shape[0])).all()


def test_mean_iwae_bound_is_non_decreasing_in_k():
    model = LinearGaussian(shift=0.3)  # a poorer q than the default: L_1 is ~2.7 nats below log p(x)
    x = model.sample_x(200)
    torch.manual_seed(0)
    exact = model.log_px(x).mean().item()
    with torch.no_grad():
        means, ses = [], []
        for k in (1, 5, 50, 500):
            reps = torch.stack([iwae_bound(model.log_weights(x, k)) for _ in range(10)])  # (10, batch)
            per_x = reps.mean(0)
            means.append(per_x.mean().item())
            ses.append((reps.std(0) / math.sqrt(reps.shape[0])).pow(2).mean().sqrt().item() / math.sqrt(x.shape[0]))
    gaps = [exact - m for m in means]
    assert all(g > 0 for g in gaps), f"every L_k is a lower bound: gaps {gaps}"
    for k_pair, (a, b) in zip([(1, 5), (5, 50), (50, 500)], zip(means, means[1:])):
        assert b >= a, f"mean L_k decreased from k={k_pair[0]} to k={k_pair[1]}: {a:.4f} -> {b:.4f} (exact {exact:.4f})"
    assert gaps[0] > 10 * ses[0]  # q is imperfect enough for the comparison to mean something


def test_estimate_log_likelihood_within_005_nats_of_exact():
    # q's ELBO is ~0.6 nats below log p(x); with 5000 samples the relative standard error of the estimate
    # of p(x) is sqrt(1/ESS - 1/k) ~ 0.01 (ESS >= 3000 here), so 0.05 nats is a 4-5 sigma bound per input
    model = LinearGaussian()
    x = model.sample_x(20, seed=3)
    torch.manual_seed(0)
    est = estimate_log_likelihood(model, x, k=5000, chunk=700, batch_size=3)
    exact = model.log_px(x)
    assert est.shape == (20,) and not est.requires_grad
    err = (est - exact).abs().max().item()
    assert err < 0.05, f"max |estimate - exact| = {err:.4f} nats"
    # and a single sample (the ELBO) is clearly worse: the 0.05 test is not vacuous
    elbo_gap = (exact - estimate_log_likelihood(model, x, k=1)).mean().item()
    assert elbo_gap > 0.2


class _Spy(nn.Module):
    """Wraps a model and records the (k, batch) of every log_weights call, and the labels it got."""

    def __init__(self, model, conditional=False):
        super().__init__()
        self.model, self.calls, self.conditional = model, [], conditional

    def log_weights(self, x, k=1, **kwargs):
        self.calls.append((k, x.shape[0], kwargs.get("y")))
        assert not torch.is_grad_enabled() and not self.training
        return self.model.log_weights(x, k)


def test_estimate_chunks_samples_and_batch_and_combines_them_exactly():
    model = LinearGaussian()
    x = model.sample_x(7)
    spy = _Spy(model)
    spy.train()
    torch.manual_seed(0)
    est = estimate_log_likelihood(spy, x, k=1000, chunk=300, batch_size=3)
    assert spy.training, "the model's train/eval mode is restored"
    assert max(c[0] for c in spy.calls) == 300 and max(c[1] for c in spy.calls) == 3
    assert sum(k * b for k, b, _ in spy.calls) == 1000 * 7  # every input got exactly k samples
    # the chunks' combination equals log mean exp over all k samples: replay the same draws unchunked and
    # reduce them with NumPy's logaddexp (an implementation independent of torch and of gvlib.bounds)
    torch.manual_seed(0)
    parts = [[model.log_weights(x[i:i + 3], kk) for kk in (300, 300, 300, 100)] for i in range(0, 7, 3)]
    full = np.concatenate([np.logaddexp.reduce(torch.cat(p, 0).detach().numpy(), axis=0) - math.log(1000)
                           for p in parts])
    np.testing.assert_allclose(est.numpy(), full, rtol=0, atol=1e-10)


def test_estimate_passes_labels_through():
    model = LinearGaussian()
    x, y = model.sample_x(5), torch.arange(5)
    spy = _Spy(model)
    estimate_log_likelihood(spy, x, k=10, chunk=10, batch_size=2, y=y)
    assert [c[2].tolist() for c in spy.calls] == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError, match="one row per input"):
        estimate_log_likelihood(spy, x, k=10, y=torch.arange(4))


@pytest.mark.parametrize("kwargs", [dict(k=0), dict(k=2.5), dict(chunk=0), dict(batch_size=-1)])
def test_estimate_rejects_bad_sizes(kwargs):
    model = LinearGaussian()
    with pytest.raises(ValueError, match="positive int"):
        estimate_log_likelihood(model, model.sample_x(2), **kwargs)


def test_estimate_rejects_a_model_with_wrong_log_weight_shape():
    class Bad(nn.Module):
        def log_weights(self, x, k=1):
            return torch.zeros(x.shape[0], k)
    with pytest.raises(ValueError, match=r"\(k, batch\)"):
        estimate_log_likelihood(Bad(), torch.zeros(3, 2), k=4, chunk=4, batch_size=3)


def test_estimate_on_device(device):
    torch.manual_seed(0)
    model = VAE(6, 2, hidden=(8,)).to(device)
    x = torch.rand(5, 6, device=device).round()
    est = estimate_log_likelihood(model, x, k=64, chunk=20, batch_size=2)
    assert est.device.type == device.type and est.shape == (5,) and torch.isfinite(est).all()


# ----------------------------------------------------------------------------------- active units
def test_active_units_single_layer_with_dead_units():
    torch.manual_seed(0)
    model = VAE(10, 6, hidden=(16,))
    head = model.encoder[-1]  # outputs [mu (6), logvar (6)]
    with torch.no_grad():
        head.weight[:6] *= 20  # large spread of the means over x: clearly active
        head.weight[[1, 4]] = 0.0  # ... except units 1 and 4, whose mean no longer depends on x
        head.bias[[1, 4]] = 3.0
    x = torch.rand(400, 10)
    var = posterior_mean_variances(model, x)[0]
    assert var[[1, 4]].abs().max() < 1e-10 and (var[[0, 2, 3, 5]] > 1e-2).all()
    assert active_units(model, x) == [4]
    assert active_units(model, x, threshold=1e9) == [0]
    # the statistic itself, computed by hand
    torch.testing.assert_close(var, model.encode(x)[0][0].detach().var(0))


def test_active_units_hierarchical_uses_monte_carlo_over_the_layer_below():
    torch.manual_seed(0)
    model = HierarchicalVAE(12, [((16,), 4), ((8,), 3)])
    with torch.no_grad():
        model.recognition[0][-1].weight[:4] *= 20
        model.recognition[0][-1].weight[[0]] = 0.0  # h1 unit 0 dead
        model.recognition[1][-1].weight[:3] *= 20
        model.recognition[1][-1].weight[[2]] = 0.0  # h2 unit 2 dead
        # h1's posterior noise is large: E_q[h2 | x] differs from mu2(mu1(x)), which the estimate must see
        model.recognition[0][-1].bias[4:] = 1.0
    x = torch.rand(300, 12)
    assert active_units(model, x, n_samples=50) == [3, 2]
    var2 = posterior_mean_variances(model, x, n_samples=200)[1]
    # reference: average mu2(h1) over 200 draws h1 ~ q(h1 | x) by hand
    with torch.no_grad():
        (mu1, lv1), = [model.encode(x)[0]]
        h1 = mu1 + torch.exp(0.5 * lv1) * torch.randn(2000, *mu1.shape)
        mean2 = model.recognition[1](h1)[..., :3].mean(0)
    torch.testing.assert_close(var2, mean2.var(0), rtol=0.1, atol=1e-3)
    plug_in = model.encode(x)[1][0].detach().var(0)
    assert (plug_in[:2] - var2[:2]).abs().max() > 0.05 * var2[:2].max()


def test_active_units_rejects_bad_input():
    model = VAE(4, 2, hidden=(4,))
    with pytest.raises(ValueError, match="at least 2 inputs"):
        active_units(model, torch.rand(1, 4))
    with pytest.raises(ValueError, match="threshold"):
        active_units(model, torch.rand(5, 4), threshold=-1)


def test_active_units_top_down_uses_monte_carlo_over_the_layer_above():
    torch.manual_seed(0)
    model = HierarchicalVAE(12, [((16,), 4), ((8,), 3)], inference="top_down")
    with torch.no_grad():
        model.recognition[1][-1].weight[:3] *= 20           # the top's mean moves with x
        model.recognition[1][-1].bias[3:] = 1.0             # ... and q(h2 | x) is broad: E_q[h1 | x] is an average
    x = torch.rand(300, 12)
    var = posterior_mean_variances(model, x, n_samples=200)
    with torch.no_grad():
        (mu2, lv2) = model.encode(x)[1]
        up1 = model.recognition[0](x).chunk(2, -1)
        h2 = mu2 + torch.exp(0.5 * lv2) * torch.randn(2000, *mu2.shape)                 # h2 ~ q(h2 | x)
        p_mu, p_lv = model.priors[0](h2).chunk(2, -1)
        w = torch.sigmoid(p_lv - up1[1])                                               # precision weight of q^
        mean1 = (w * up1[0] + (1 - w) * p_mu).mean(0)
    torch.testing.assert_close(var[1], mu2.var(0))          # the top layer: exact
    torch.testing.assert_close(var[0], mean1.var(0), rtol=0.1, atol=1e-3)
