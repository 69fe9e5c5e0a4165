"""Diagnostics of hierarchical VAEs (chapter 06): per-unit rates, what each layer of an encoded image carries, and two
variants of the top-down model (features fed up the ladder; batch normalisation) for one-factor controls."""
from __future__ import annotations

import torch

from gvlib.distributions import reparameterize
from torch import nn

from gvlib.models import HierarchicalVAE, _split, apply_flat, mlp, precision_weighted

__all__ = ["unit_rates", "vary_one_layer", "FeatureLadderVAE", "BatchNormLadderVAE"]


def _per_unit_kl(mu_q, lv_q, mu_p=None, lv_p=None):
    """KL(N(mu_q, e^lv_q) || N(mu_p, e^lv_p)) per coordinate (N(0, 1) when p is None): (..., d) -> (..., d)."""
    if mu_p is None:
        mu_p, lv_p = torch.zeros_like(mu_q), torch.zeros_like(lv_q)
    return 0.5 * (lv_p - lv_q + (torch.exp(lv_q) + (mu_q - mu_p) ** 2) / torch.exp(lv_p) - 1)


def unit_rates(model: HierarchicalVAE, x: torch.Tensor, n_draws: int = 20) -> list[torch.Tensor]:
    """Each layer's rate split over its units, averaged over x and n_draws draws of q: x (n, D) -> [(d_l,)], bottom first.

    Where q(h^l | .) and p(h^l | h^{l+1}) condition on the same draw (the top layer; every layer of a top-down or
    factorised model) a unit's entry is E[KL] of its one-dimensional conditionals, >= 0. Below the top of a
    bottom-up model it is E[log q(h_u | .) - log p(h_u | h^{l+1})], not a KL, and can be negative. Either way
    the entries of a layer sum to that layer's rate R_l (model.rates)."""
    out = None
    with torch.no_grad():
        for _ in range(n_draws):
            hs, qs, ps = model._draw(x, 1)
            per = []
            for h, q, p in zip(hs, qs, ps):
                if p is None:
                    r = _per_unit_kl(*q)
                elif model.inference in ("factorised", "top_down"):
                    r = _per_unit_kl(*q, *p)
                else:                                              # one-sample log-ratio per unit
                    mu_q, lv_q = q
                    mu_p, lv_p = p
                    r = 0.5 * (lv_p - lv_q + (h - mu_p) ** 2 / torch.exp(lv_p) - (h - mu_q) ** 2 / torch.exp(lv_q))
                per.append(r.reshape(-1, r.shape[-1]).mean(0))     # (d_l,)
            out = per if out is None else [a + b for a, b in zip(out, per)]
    return [a / n_draws for a in out]


def vary_one_layer(model: HierarchicalVAE, x: torch.Tensor, keep: int, n: int) -> torch.Tensor:
    """Hold one layer to the evidence of x, let the others follow the generative model; n redraws: x (batch, D) -> (n, batch, D) pixel means.

    Top-down models only. keep = L: h^L ~ q(h^L | x), drawn once and shared by the n redraws; every layer below
    from p(h^l | h^{l+1}) (what the top layer of x decides). keep = l < L: the layers above from the generative
    model (h^L ~ N(0, I), ...), h^l ~ q(h^l | h^{l+1}, x) (the bottom-up evidence of x merged with the prior), the
    layers below from p (what layer l's evidence decides when the layers above are redrawn)."""
    if model.inference != "top_down":
        raise ValueError(f"vary_one_layer needs a top-down model (inference='top_down'), got {model.inference!r}")
    L = model.n_layers
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= L:
        raise ValueError(f"keep must be a layer number 1..{L} (h^1 is the bottom), got {keep!r}")
    n = int(n)
    with torch.no_grad():
        x = model._check_x(x)
        ups = model._bottom_up_pass(x)                                   # [(mu^_l, logvar^_l)], each (batch, d_l)
        if keep == L:
            h = reparameterize(*ups[-1]).expand(n, *ups[-1][0].shape)    # one draw of q(h^L | x), shared: (n, batch, d_L)
        else:
            h = torch.randn(n, *ups[-1][0].shape, dtype=x.dtype, device=x.device)   # h^L ~ N(0, I)
        for l in range(L - 2, -1, -1):                                   # 0-based layer l is h^{l+1}
            mu, lv = model._prior(l, h)                                  # p(h^{l+1} | h^{l+2}): (n, batch, d)
            if l + 1 == keep:
                mu, lv = precision_weighted(*ups[l], mu, lv)             # q(h^{l+1} | h^{l+2}, x)
            h = reparameterize(mu, lv)
        return model.pixels(model.decode(h))


# ============================================================================================== ladder variants
class FeatureLadderVAE(HierarchicalVAE):
    """Top-down inference with Sonderby et al.'s bottom-up path: net l reads net l-1's last hidden features d_{l-1}.

    `HierarchicalVAE(inference="top_down")` feeds net l the mean mu^_{l-1} (d_{l-1} numbers); here the deterministic
    pass is d_l = MLP_l(d_{l-1}) (d_0 = x) and (mu^_l, logvar^_l) = Linear_l(d_l). Everything else (precision-weighted
    merge with p(h^l | h^{l+1}), the generative model, rates) is the parent's. Same arguments as HierarchicalVAE."""

    def __init__(self, x_dim: int = 64, layers=(((64, 64), 16), ((32, 32), 8)), **kwargs):
        if kwargs.setdefault("inference", "top_down") != "top_down":
            raise ValueError(f"FeatureLadderVAE infers top-down; got inference={kwargs['inference']!r}")
        super().__init__(x_dim, layers, **kwargs)
        for l in range(1, self.n_layers):                              # net l reads the hidden features below
            hidden, d = self.layers[l]
            self.recognition[l] = mlp([self.layers[l - 1][0][-1], *hidden, 2 * d], self.config.activation)

    def _bottom_up_pass(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(mu^_l, logvar^_l)] bottom first, each (batch, d_l); net l is fed net l-1's last hidden layer."""
        out, inp = [], x
        for net in self.recognition:
            features = apply_flat(net[:-1], inp)                       # (batch, last hidden size)
            out.append(_split(apply_flat(net[-1], features)))
            inp = features
        return out


def _batch_statistics_only(net: nn.Module) -> nn.Module:
    for m in net.modules():
        if isinstance(m, nn.BatchNorm1d):                              # no running averages: vmap-safe, no buffers
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None
    return net


class BatchNormLadderVAE(HierarchicalVAE):
    """The top-down model of `HierarchicalVAE(inference="top_down")` with batch normalisation after every hidden Linear
    of every net (recognition, priors, decoder), as Sonderby et al. train theirs.

    The normalisation always uses the statistics of the batch it is given (no running averages, in train and eval
    mode alike), so a score depends on the batch: evaluate on a whole test set at once. Same arguments as
    HierarchicalVAE."""

    def __init__(self, x_dim: int = 64, layers=(((64, 64), 16), ((32, 32), 8)), **kwargs):
        if kwargs.setdefault("inference", "top_down") != "top_down":
            raise ValueError(f"BatchNormLadderVAE infers top-down; got inference={kwargs['inference']!r}")
        super().__init__(x_dim, layers, **kwargs)
        act, dims, L = self.config.activation, self.latent_dims, self.layers
        for l, (hidden, d) in enumerate(L):
            self.recognition[l] = _batch_statistics_only(mlp([x_dim if l == 0 else dims[l - 1], *hidden, 2 * d], act, True))
        self.decoder = _batch_statistics_only(mlp([dims[0], *L[0][0][::-1], x_dim], act, True))
        for l in range(len(L) - 1):
            self.priors[l] = _batch_statistics_only(mlp([dims[l + 1], *L[l + 1][0][::-1], 2 * dims[l]], act, True))
