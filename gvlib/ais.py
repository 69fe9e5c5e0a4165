"""Annealed importance sampling (Neal 2001) and its reverse, the bidirectional Monte Carlo sandwich (Grosse et al. 2015).

AIS moves chains from a tractable start q0(h) = N(mu0, diag exp(logvar0)) to the posterior p(h | x), proportional to
p(x, h), through the geometric path f_b(h) = q0(h)^(1-b) p(x, h)^b, 0 = b_0 < b_1 < ... < b_T = 1, with Hamiltonian
Monte Carlo moves that leave each f_b invariant. The log-weight of a chain,
sum_t (b_t - b_{t-1}) [log p(x, h_{t-1}) - log q0(h_{t-1})], is the log of an unbiased estimate of p(x), so
log-mean-exp over chains is a stochastic lower bound on log p(x) (as L_k is). Run backwards from an exact posterior
sample (on data simulated from the model, where the h that made x is one), the same sum with the signs reversed
estimates 1 / p(x) without bias, so minus its log-mean-exp is a stochastic upper bound (BDMC, Wu et al. 2017 for
decoder-based models). The HMC runs in coordinates whitened by q0 (mass matrix diag exp(-logvar0)).
"""
from __future__ import annotations

from typing import Callable

import torch

from gvlib.distributions import log_normal_diag

__all__ = ["ais_log_weights", "log_mean_exp", "sigmoid_schedule"]


def sigmoid_schedule(T: int, rad: float = 4.0) -> torch.Tensor:
    """T + 1 inverse temperatures from 0 to 1, dense at both ends (Grosse et al.'s sigmoid schedule): -> (T + 1,) float64."""
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive int (the number of annealing steps), got {T!r}")
    s = torch.sigmoid(torch.linspace(-rad, rad, T + 1, dtype=torch.float64))
    return (s - s[0]) / (s[-1] - s[0])


def log_mean_exp(a: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log (1/n) sum_i exp(a_i) along dim: (..., n, ...) -> (..., ...). It is the IWAE bound of the log-weights a,
    so it is `bounds.iwae_bound` (one implementation, with its input checks), named for what AIS uses it for."""
    from gvlib.bounds import iwae_bound

    return iwae_bound(a, dim)


def ais_log_weights(log_joint: Callable[[torch.Tensor], torch.Tensor], mu0: torch.Tensor, logvar0: torch.Tensor,
                    betas: torch.Tensor, n_chains: int = 16, h_start: torch.Tensor | None = None,
                    step_size: float = 0.2, n_leapfrog: int = 5,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """AIS log-weights, forward from q0 (h_start None) or reverse from exact posterior draws h_start (n_chains, batch, d).

    log_joint: h (n_chains, batch, d) -> log p(x, h) (n_chains, batch); mu0, logvar0 (batch, d) define q0; betas
    (T + 1,) from 0 to 1. Returns (log-weights (n_chains, batch), HMC acceptance rate): forward, log-mean-exp over
    chains is a stochastic lower bound on log p(x); reverse, minus it is a stochastic upper bound."""
    betas = torch.as_tensor(betas, dtype=torch.float64)
    if betas.ndim != 1 or betas.numel() < 2 or betas[0] != 0 or betas[-1] != 1 or (betas.diff() <= 0).any():
        raise ValueError("betas must increase strictly from 0 to 1, e.g. sigmoid_schedule(T)")
    if mu0.shape != logvar0.shape or mu0.ndim != 2:
        raise ValueError(f"mu0 and logvar0 must both be (batch, d), got {tuple(mu0.shape)} and {tuple(logvar0.shape)}")
    mu0, logvar0 = mu0.detach(), logvar0.detach()
    sd0 = torch.exp(0.5 * logvar0)
    shape = (n_chains, *mu0.shape)
    reverse = h_start is not None
    if reverse:
        if tuple(h_start.shape) != shape:
            raise ValueError(f"h_start must be (n_chains, batch, d) = {shape}, got {tuple(h_start.shape)}")
        u = ((h_start.detach() - mu0) / sd0).clone()
        betas = betas.flip(0)
    else:
        u = torch.randn(shape, generator=generator, dtype=mu0.dtype, device=mu0.device)

    def log_ratio(u_):                                               # log p(x, h) - log q0(h), h = mu0 + sd0 u
        h = mu0 + sd0 * u_
        return log_joint(h) - log_normal_diag(h, mu0, logvar0)

    def energy_and_grad(u_, b):                                      # -log f_b in whitened coordinates (+ const)
        u_ = u_.detach().requires_grad_(True)
        r = log_ratio(u_)
        U = 0.5 * u_.pow(2).sum(-1) - b * r                          # (n_chains, batch)
        (g,) = torch.autograd.grad(U.sum(), u_)
        return U.detach(), g, r.detach()

    log_w = torch.zeros(shape[:-1], dtype=mu0.dtype, device=mu0.device)
    accepted, moves = 0.0, 0
    _, _, r = energy_and_grad(u, float(betas[0]))
    for t in range(1, betas.numel()):
        b_prev, b = float(betas[t - 1]), float(betas[t])
        log_w = log_w + (b - b_prev) * r                             # forward: + dlogf; reverse (b < b_prev): sign flips
        U0, g0, _ = energy_and_grad(u, b)                            # HMC move leaving f_b invariant
        p0 = torch.randn(shape, generator=generator, dtype=mu0.dtype, device=mu0.device)
        un, p_, g = u, p0 - 0.5 * step_size * g0, g0
        for i in range(n_leapfrog):
            un = un + step_size * p_
            U1, g, r1 = energy_and_grad(un, b)
            p_ = p_ - (step_size if i < n_leapfrog - 1 else 0.5 * step_size) * g
        log_acc = (U0 + 0.5 * p0.pow(2).sum(-1)) - (U1 + 0.5 * p_.pow(2).sum(-1))
        accept = torch.rand(log_acc.shape, generator=generator, dtype=mu0.dtype, device=mu0.device).log() < log_acc
        u = torch.where(accept[..., None], un, u)
        r = torch.where(accept, r1, r)                               # a rejected chain keeps its state
        accepted, moves = accepted + accept.float().mean().item(), moves + 1
    return log_w, torch.tensor(accepted / moves)

