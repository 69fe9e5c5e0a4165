"""gvlib.distributions.kl_mvn_tril against torch.distributions, Monte Carlo, the diagonal formula and gradcheck."""
import math

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from gvlib.distributions import kl_mvn_tril, kl_normal_normal


def _random(d, batch=(), seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(*batch, d, d, generator=g, dtype=torch.float64)
    S = A @ A.transpose(-1, -2) + 0.1 * torch.eye(d, dtype=torch.float64)
    return torch.randn(*batch, d, generator=g, dtype=torch.float64), torch.linalg.cholesky(S), S


@pytest.mark.parametrize("d", [1, 2, 5])
def test_matches_torch_distributions(d):
    mu0, L0, S0 = _random(d, (7,), seed=d)
    mu1, L1, S1 = _random(d, (7,), seed=100 + d)
    ours = kl_mvn_tril(mu0, L0, mu1, L1)
    ref = kl_divergence(MultivariateNormal(mu0, S0), MultivariateNormal(mu1, S1))
    assert ours.shape == (7,)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_matches_monte_carlo():
    mu0, L0, S0 = _random(3, seed=1)
    mu1, L1, S1 = _random(3, seed=2)
    g = torch.Generator().manual_seed(3)
    z = mu0 + torch.randn(200_000, 3, generator=g, dtype=torch.float64) @ L0.T
    terms = MultivariateNormal(mu0, S0).log_prob(z) - MultivariateNormal(mu1, S1).log_prob(z)
    se = terms.std().item() / math.sqrt(len(terms))
    assert abs(terms.mean().item() - kl_mvn_tril(mu0, L0, mu1, L1).item()) < 5 * se


def test_diagonal_case_and_broadcast():
    g = torch.Generator().manual_seed(4)
    mq, lq, mp, lp = torch.randn(4, 6, 3, generator=g, dtype=torch.float64)
    Lq, Lp = torch.diag_embed(torch.exp(0.5 * lq)), torch.diag_embed(torch.exp(0.5 * lp))
    torch.testing.assert_close(kl_mvn_tril(mq, Lq, mp, Lp), kl_normal_normal(mq, lq, mp, lp), rtol=1e-12, atol=1e-12)
    # one prior for the whole batch: (6, 3) against (3,), (3, 3)
    out = kl_mvn_tril(mq, Lq, torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(out, kl_normal_normal(mq, lq, torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)))
    assert kl_mvn_tril(mq[0], Lq[0], mq[0], Lq[0]).abs().max() < 1e-12


def test_gradcheck_float64():
    mu0, L0, _ = _random(3, seed=5)
    mu1, L1, _ = _random(3, seed=6)
    args = [t.clone().requires_grad_(True) for t in (mu0, L0, mu1, L1)]
    tril = lambda m0, l0, m1, l1: kl_mvn_tril(m0, torch.tril(l0), m1, torch.tril(l1))
    assert torch.autograd.gradcheck(tril, args)


def test_float32_and_bad_shapes():
    mu0, L0, _ = _random(4, seed=7)
    out = kl_mvn_tril(mu0.float(), L0.float(), torch.zeros(4), torch.eye(4))
    assert out.dtype == torch.float32 and torch.isfinite(out)
    with pytest.raises(ValueError, match="must be"):
        kl_mvn_tril(mu0, L0[:3, :3], mu0, L0)
