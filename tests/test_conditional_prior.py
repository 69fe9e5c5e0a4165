"""gvlib.conditional_prior: the learned-prior CVAE's bounds against independent Monte Carlo computations."""
import math

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from gvlib.bounds import estimate_log_likelihood
from gvlib.conditional_prior import ConditionalPriorVAE


def _model(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    m = ConditionalPriorVAE(6, 3, 2, hidden=(16,)).to(dtype)
    with torch.no_grad():                                   # a prior away from N(0, I)
        m.prior_net[-1].bias.add_(torch.tensor([0.8, -0.5, 0.3, -0.4], dtype=dtype))
    return m


def _data(n=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.bernoulli(torch.full((n, 6), 0.4, dtype=dtype), generator=g),
            torch.rand(n, 3, generator=g, dtype=dtype))


def test_elbo_kl_against_torch_distributions():
    m, (x, y) = _model(), _data()
    _, kl = m.elbo_terms(x, y)
    [(mu, logvar)] = m.encode(x, y)
    mu_p, logvar_p = m.prior(y)
    ref = kl_divergence(Independent(Normal(mu, (0.5 * logvar).exp()), 1), Independent(Normal(mu_p, (0.5 * logvar_p).exp()), 1))
    assert torch.allclose(kl, ref, atol=1e-12)


def test_log_weights_average_to_the_elbo():
    """E_q[log w] = ELBO (closed-form KL): the Monte Carlo mean of log_weights within 5 standard errors of elbo's mean."""
    m, (x, y) = _model(), _data()
    torch.manual_seed(1)
    lw = m.log_weights(x, 5000, y=y)                                      # (k, n)
    el = torch.stack([m.elbo(x, y) for _ in range(5000)])                # (k, n)
    se = (lw.var(0) / lw.shape[0] + el.var(0) / el.shape[0]).sqrt()
    assert ((lw.mean(0) - el.mean(0)).abs() < 5 * se).all()


def test_gsnn_and_likelihood_estimate_bound_the_same_log_p():
    """log p(x|y) by prior sampling (k large) and by importance sampling agree; GSNN and ELBO lie below them."""
    m, (x, y) = _model(), _data()
    torch.manual_seed(2)
    k = 50000
    mu_p, logvar_p = m.prior(y)
    z = mu_p + (0.5 * logvar_p).exp() * torch.randn(k, *mu_p.shape, dtype=mu_p.dtype)
    with torch.no_grad():
        log_lik = Independent(Bernoulli(logits=m.decode(z, y)), 1).log_prob(x)   # (k, n)
    by_prior = torch.logsumexp(log_lik, 0) - math.log(k)
    by_is = estimate_log_likelihood(m, x, k=10000, chunk=5000, batch_size=5, y=y)
    assert torch.allclose(by_prior, by_is, atol=0.06)          # two consistent estimators, each with its own noise
    with torch.no_grad():
        gsnn = torch.stack([m.gsnn(x, y) for _ in range(2000)]).mean(0)
        elbo = torch.stack([m.elbo(x, y) for _ in range(2000)]).mean(0)
    assert (gsnn < by_is + 0.03).all() and (elbo < by_is + 0.03).all()          # bounds, up to the estimators' noise
    assert gsnn.mean() < by_is.mean() and elbo.mean() < by_is.mean()


def test_hybrid_interpolates_and_routes_gradients():
    m, (x, y) = _model(), _data()
    torch.manual_seed(3)
    m.hybrid(x, y, 0.0).sum().backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in m.encoder.parameters()), "alpha = 0 ignores q"
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.prior_net.parameters())
    with pytest.raises(ValueError):
        m.hybrid(x, y, 1.5)


def test_shapes_sampling_and_errors():
    m, (x, y) = _model(dtype=torch.float32), _data(dtype=torch.float32)
    assert m.log_weights(x, 7, y=y).shape == (7, 5)
    s = m.sample(y, mean=False)
    assert s.shape == (5, 6) and set(s.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="y must be"):
        m.prior(torch.zeros(5, 4))
    with pytest.raises(ValueError, match="x must have shape"):
        m.encode(torch.zeros(4, 6), y)
