"""A conditional VAE with a learned prior p(z | y) (Sohn, Lee & Yan 2015), and its GSNN and hybrid objectives.

Three networks, all MLPs on flat inputs: the recognition network q(z | x, y), the prior network p(z | y) and the
generation network p(x | z, y) (Bernoulli logits). With y fixed, the bound is

    log p(x | y) >= E_q log p(x | z, y) - KL(q(z | x, y) || p(z | y))        (`elbo`, the "CVAE" objective)

Training uses z ~ q(z | x, y), testing uses z ~ p(z | y): Sohn et al.'s GSNN objective trains the generation network
on prior draws, exactly as it is used at test time,

    log p(x | y) >= E_{p(z | y)} log p(x | z, y)                                (`gsnn`, Jensen's inequality)

and their hybrid is alpha * elbo + (1 - alpha) * gsnn (`hybrid`). `log_weights(x, k, y=y)` has the protocol of
`gvlib.models`, so `gvlib.bounds.estimate_log_likelihood(model, x, y=y)` estimates log p(x | y).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ._validate import positive_int
from .distributions import kl_normal_normal, log_bernoulli_logits, log_normal_diag, reparameterize
from .models import apply_flat, mlp

__all__ = ["ConditionalPriorVAE"]


class ConditionalPriorVAE(nn.Module):
    """q(z | x, y), p(z | y), p(x | z, y) from MLPs; x (batch, x_dim) binary, y (batch, y_dim) float rows (the condition)."""

    def __init__(self, x_dim: int, y_dim: int, z_dim: int, hidden: Sequence[int] = (128, 128),
                 activation: str = "tanh"):
        super().__init__()
        self.x_dim, self.y_dim = positive_int("x_dim", x_dim), positive_int("y_dim", y_dim)
        self.z_dim = positive_int("z_dim", z_dim)
        self.latent_dims = [self.z_dim]
        self.likelihood = "bernoulli"
        hidden = tuple(hidden)
        self.encoder = mlp([x_dim + y_dim, *hidden, 2 * z_dim], activation)
        self.prior_net = mlp([y_dim, *hidden, 2 * z_dim], activation)
        self.decoder = mlp([z_dim + y_dim, *hidden[::-1], x_dim], activation)

    def _check(self, x, y) -> None:
        if not isinstance(y, torch.Tensor) or y.dim() != 2 or y.shape[1] != self.y_dim:
            raise ValueError(f"y must be float rows of shape (batch, {self.y_dim}), got "
                             f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
        if x is not None and (not isinstance(x, torch.Tensor) or x.shape != (y.shape[0], self.x_dim)):
            raise ValueError(f"x must have shape ({y.shape[0]}, {self.x_dim}) to match y, got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")

    def encode(self, x: torch.Tensor, y: torch.Tensor, sample: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(mu, logvar)] of q(z | x, y): x (batch, x_dim), y (batch, y_dim) -> [((batch, d), (batch, d))]."""
        self._check(x, y)
        return [tuple(self.encoder(torch.cat([x, y], -1)).chunk(2, dim=-1))]

    def prior(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of the learned prior p(z | y): y (batch, y_dim) -> ((batch, d), (batch, d))."""
        self._check(None, y)
        return tuple(self.prior_net(y).chunk(2, dim=-1))

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of p(x | z, y): z (..., batch, d), y (batch, y_dim) -> (..., batch, x_dim)."""
        return apply_flat(self.decoder, torch.cat([z, y.expand(*z.shape[:-1], self.y_dim)], -1))

    def log_weights(self, x: torch.Tensor, k: int = 1, y: torch.Tensor | None = None) -> torch.Tensor:
        """log w = log p(x | z, y) + log p(z | y) - log q(z | x, y), z ~ q, k samples: -> (k, batch)."""
        [(mu, logvar)] = self.encode(x, y)
        z = reparameterize(mu, logvar, positive_int("k", k))                  # (k, batch, d)
        mu_p, logvar_p = self.prior(y)
        return (log_bernoulli_logits(x, self.decode(z, y)) + log_normal_diag(z, mu_p, logvar_p)
                - log_normal_diag(z, mu, logvar))

    def elbo(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One-sample E_q log p(x | z, y) - KL(q(z | x, y) || p(z | y)), the KL in closed form: -> (batch,)."""
        return self.elbo_terms(x, y)[0]

    def elbo_terms(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ELBO, KL(q(z | x, y) || p(z | y))) per input, one z ~ q: -> ((batch,), (batch,))."""
        [(mu, logvar)] = self.encode(x, y)
        mu_p, logvar_p = self.prior(y)
        kl = kl_normal_normal(mu, logvar, mu_p, logvar_p)
        return log_bernoulli_logits(x, self.decode(reparameterize(mu, logvar), y)) - kl, kl

    def gsnn(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One-sample log p(x | z, y), z ~ p(z | y) (reparameterized): the GSNN objective, a bound on log p(x | y): -> (batch,)."""
        self._check(x, y)
        mu_p, logvar_p = self.prior(y)
        return log_bernoulli_logits(x, self.decode(reparameterize(mu_p, logvar_p), y))

    def hybrid(self, x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
        """alpha * elbo + (1 - alpha) * gsnn (Sohn et al. 2015, eq. 8): -> (batch,)."""
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
        return alpha * self.elbo(x, y) + (1 - alpha) * self.gsnn(x, y)

    @torch.no_grad()
    def sample(self, y: torch.Tensor, mean: bool = True) -> torch.Tensor:
        """x ~ p(x | z, y) with z ~ p(z | y): pixel probabilities (mean) or binary draws: y (n, y_dim) -> (n, x_dim)."""
        mu_p, logvar_p = self.prior(y)
        probs = torch.sigmoid(self.decode(reparameterize(mu_p, logvar_p), y))
        return probs if mean else torch.bernoulli(probs)
