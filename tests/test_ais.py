"""gvlib.ais: AIS is unbiased for p(x) forward and for 1/p(x) in reverse, exact when q0 is the posterior."""
import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from gvlib.ais import ais_log_weights, log_mean_exp, sigmoid_schedule

W = torch.tensor([[1.5, -0.3], [-2.2, 0.6], [-1.1, -1.4]], dtype=torch.float64)
B = torch.tensor([-0.6, 0.2, -0.9], dtype=torch.float64)
X = torch.tensor([-0.1, -0.9, -1.0], dtype=torch.float64)
SIGMA = 0.5
COV = W @ W.T + SIGMA ** 2 * torch.eye(3, dtype=torch.float64)
LOG_Z = MultivariateNormal(B, COV).log_prob(X).item()
S = torch.linalg.inv(torch.eye(2, dtype=torch.float64) + W.T @ W / SIGMA ** 2)
M = S @ W.T @ (X - B) / SIGMA ** 2


def log_joint(h):
    return Normal(0.0, 1.0).log_prob(h).sum(-1) + Normal(h @ W.T + B, SIGMA).log_prob(X).sum(-1)


def test_schedule():
    b = sigmoid_schedule(50)
    assert b.shape == (51,) and b[0] == 0 and b[-1] == 1 and (b.diff() > 0).all()
    with pytest.raises(ValueError):
        sigmoid_schedule(0)


def test_forward_and_reverse_weights_are_unbiased():
    g = torch.Generator().manual_seed(0)
    mu0, lv0 = (M + torch.tensor([0.2, -0.1], dtype=torch.float64))[None], torch.log(0.8 * torch.diagonal(S))[None]
    fw, acc = ais_log_weights(log_joint, mu0, lv0, sigmoid_schedule(10), n_chains=4000, n_leapfrog=2, generator=g)
    w = torch.exp(fw - LOG_Z)
    assert abs(w.mean().item() - 1) < 5 * w.std().item() / math.sqrt(w.numel())
    assert 0.5 < acc.item() <= 1
    h = M + torch.randn(4000, 1, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(S).T   # exact draws
    rv, _ = ais_log_weights(log_joint, mu0, lv0, sigmoid_schedule(10), n_chains=4000, h_start=h, n_leapfrog=2,
                            generator=g)
    w = torch.exp(rv + LOG_Z)
    assert abs(w.mean().item() - 1) < 5 * w.std().item() / math.sqrt(w.numel())
    # the sandwich, with many steps: lower below, upper above, both close
    fw, _ = ais_log_weights(log_joint, mu0, lv0, sigmoid_schedule(200), n_chains=64, n_leapfrog=2, generator=g)
    rv, _ = ais_log_weights(log_joint, mu0, lv0, sigmoid_schedule(200), n_chains=64, h_start=h[:64], n_leapfrog=2,
                            generator=g)
    lower, upper = log_mean_exp(fw).item(), -log_mean_exp(rv).item()
    assert LOG_Z - 0.05 < lower < LOG_Z + 0.02 and LOG_Z - 0.02 < upper < LOG_Z + 0.05, (lower, LOG_Z, upper)


def test_exact_when_q0_is_the_posterior():
    # one dimension: q0 = p(h | x) exactly, so log p(x, h) - log q0(h) = log p(x) for every h and every weight is exact
    w1, s1, x1 = 1.3, 0.7, torch.tensor([0.4], dtype=torch.float64)
    var = 1 / (1 + w1 ** 2 / s1 ** 2)
    mean = var * w1 * x1 / s1 ** 2
    log_z = Normal(0.0, math.sqrt(w1 ** 2 + s1 ** 2)).log_prob(x1).item()
    lj = lambda h: Normal(0.0, 1.0).log_prob(h).sum(-1) + Normal(w1 * h[..., 0], s1).log_prob(x1)
    fw, _ = ais_log_weights(lj, mean[None], torch.log(torch.tensor([[var]], dtype=torch.float64)),
                            sigmoid_schedule(5), n_chains=8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(fw, torch.full_like(fw, log_z), rtol=0, atol=1e-6)


def test_errors():
    mu0, lv0 = M[None], torch.log(torch.diagonal(S))[None]
    with pytest.raises(ValueError, match="betas"):
        ais_log_weights(log_joint, mu0, lv0, torch.tensor([0.0, 0.7, 0.5, 1.0]))
    with pytest.raises(ValueError, match="h_start"):
        ais_log_weights(log_joint, mu0, lv0, sigmoid_schedule(3), n_chains=4, h_start=torch.zeros(3, 1, 2))
    with pytest.raises(ValueError, match="mu0 and logvar0"):
        ais_log_weights(log_joint, M, lv0, sigmoid_schedule(3))
