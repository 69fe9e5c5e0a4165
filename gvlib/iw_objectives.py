"""Train the decoder on the IWAE bound and the encoder on another estimator or objective (Rainforth et al. 2018).

A tighter bound gives the decoder a better gradient and the encoder a worse one (chapter 07, section 6). The
repairs keep the decoder's gradient, -grad_theta L_K, and change only what the encoder follows:
- "iwae": the encoder's reparameterised gradient of L_K itself (the plain IWAE: one objective for both);
- "dreg": the doubly reparameterised estimator of the same gradient (Tucker et al. 2019): sum_i w~_i^2 times the
  path derivative of log w_i, q's parameters held fixed inside log q;
- "piwae": the encoder climbs MIWAE(M, K/M), the mean of M importance-weighted bounds of K/M samples each, from
  the same K samples (Rainforth et al.'s PIWAE);
- "elbo": the encoder climbs the ELBO, mean_i log w_i (PIWAE with M = K).
`split_losses` returns one surrogate loss whose gradient is the decoder's for theta and the encoder's for phi (the
decoder is frozen inside the encoder's term); `fit_split` trains a model with it.
Written for models with one stochastic layer (`HierarchicalVAE` with one layer, or `VAE`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

import gvlib
from gvlib.distributions import log_bernoulli_logits, log_normal_diag, log_standard_normal
from gvlib.models import apply_flat

__all__ = ["ENCODER_OBJECTIVES", "split_losses", "fit_split", "encoder_parameters"]

ENCODER_OBJECTIVES = ("iwae", "dreg", "piwae", "elbo")


def _encoder_net(model: nn.Module) -> nn.Module:
    if hasattr(model, "recognition"):
        if len(model.recognition) != 1:
            raise ValueError(f"split_losses needs one stochastic layer, the model has {len(model.recognition)}")
        return model.recognition[0]
    if hasattr(model, "encoder"):
        return model.encoder
    raise TypeError(f"expected a HierarchicalVAE with one layer or a VAE, got {type(model).__name__}")


def encoder_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(encoder's parameters phi, all the others theta): the recognition network against decoder (and noise level)."""
    enc = {id(p) for p in _encoder_net(model).parameters()}
    params = list(model.parameters())
    return [p for p in params if id(p) in enc], [p for p in params if id(p) not in enc]


def _log_joint(model: nn.Module, x: torch.Tensor, h: torch.Tensor, frozen: bool) -> torch.Tensor:
    """log p(x, h) = log p(x | h) + log N(h; 0, I): h (K, batch, d) -> (K, batch); frozen: theta gets no gradient."""
    if not frozen:
        return model.log_likelihood(x, apply_flat(model.decoder, h)) + log_standard_normal(h)
    fixed = {name: p.detach() for name, p in model.decoder.named_parameters()}
    params = torch.func.functional_call(model.decoder, fixed, (h,))
    if model.likelihood == "bernoulli":
        log_lik = log_bernoulli_logits(x, params)
    else:
        log_lik = log_normal_diag(x, params, model.obs_logvar.detach().expand(model.x_dim))
    return log_lik + log_standard_normal(h)


def split_losses(model: nn.Module, x: torch.Tensor, K: int, weights: dict | None = None, M: int = 8) -> dict:
    """A surrogate loss whose gradient is -grad_theta L_K for the decoder's parameters theta and, for the encoder's phi,
    minus the encoder estimate `weights` mixes: {"iwae": a, "dreg": b, "piwae": c, "elbo": d} (one 1 and the rest 0
    picks one; scalars or 0-d tensors, so models stacked by vmap can each pick their own). x (batch, D).
    Returns {"loss": surrogate, "L_K": batch mean of L_K (for the record)}."""
    weights = dict(weights or {"iwae": 1.0})
    unknown = set(weights) - set(ENCODER_OBJECTIVES)
    if unknown:
        raise ValueError(f"weights must be keyed by {ENCODER_OBJECTIVES}, got {sorted(unknown)}")
    if "piwae" in weights and K % M:
        raise ValueError(f"piwae needs M dividing K, got M={M}, K={K}")
    mu, logvar = _encoder_net(model)(x).chunk(2, dim=-1)                          # (batch, d) each
    h = mu + torch.exp(0.5 * logvar) * torch.randn(K, *mu.shape, device=x.device, dtype=mu.dtype)  # (K, batch, d)
    # decoder: -L_K with the samples and log q held fixed, so theta enters only through log p(x, h)
    log_w_dec = _log_joint(model, x, h.detach(), frozen=False) - log_normal_diag(h, mu, logvar).detach()
    L_K = torch.logsumexp(log_w_dec, 0) - math.log(K)                              # (batch,)
    # encoder: the decoder's parameters frozen, the path through h open
    log_p = _log_joint(model, x, h, frozen=True)                                   # (K, batch)
    log_w = log_p - log_normal_diag(h, mu, logvar)                                 # (K, batch)
    terms = {
        "iwae": torch.logsumexp(log_w, 0) - math.log(K),
        "elbo": log_w.mean(0),
        # DReG: stop(w~^2) times log w with q's parameters held fixed inside log q (path derivative only)
        "dreg": (torch.softmax(log_w.detach(), 0) ** 2
                 * (log_p - log_normal_diag(h, mu.detach(), logvar.detach()))).sum(0),
    }
    if "piwae" in weights:                                                         # MIWAE(M, K/M), the same K draws
        terms["piwae"] = (torch.logsumexp(log_w.reshape(M, K // M, -1), 1) - math.log(K // M)).mean(0)
    enc = sum(weights[name] * terms[name] for name in weights)                     # (batch,)
    return {"loss": -(L_K.mean() + enc.mean()), "L_K": L_K.mean().detach()}


def fit_split(model: nn.Module, x: torch.Tensor, encoder: str, K: int, epochs: int, batch_size: int = 50,
              lr: float = 3e-3, M: int = 8, seed: int = 0, dynamic_binarize: bool = True) -> nn.Module:
    """Adam on all parameters; the decoder's gradient from -L_K, the encoder's from `encoder` (see the module doc).
    Data order and binarization from gvlib.data.loader(seed=seed), so arms with one seed see the same batches."""
    from gvlib.data import loader

    if encoder not in ENCODER_OBJECTIVES:
        raise ValueError(f"encoder must be one of {ENCODER_OBJECTIVES}, got {encoder!r}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    batches = loader(x, batch_size=batch_size, shuffle=True, dynamic_binarize=dynamic_binarize, seed=seed)
    model.train()
    for _ in range(epochs):
        for (xb,) in batches:
            opt.zero_grad(set_to_none=True)
            split_losses(model, xb.to(x.device), K, {encoder: 1.0}, M)["loss"].backward()
            opt.step()
    model.eval()
    return model

