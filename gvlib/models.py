"""Latent-variable models of the course, all with one protocol.

Every model is an `nn.Module` with

- `log_weights(x, k=1)` -> (k, batch): log w_i = log p(x, h_i) - log q(h_i | x), h_i ~ q(h | x) drawn by
  reparameterization (the encoder runs once; k samples are drawn from its output), differentiable in
  the parameters of both networks: `-iwae_bound(model.log_weights(x, k)).mean()` is the IWAE loss, and
  k=1 the VAE's;
- `elbo(x)` -> (batch,): a one-sample ELBO, with the KL in closed form where the model allows it;
- `encode(x, sample=False)` -> [(mu, logvar)] per stochastic layer, bottom (h^1) first;
- `decode(z)` -> the likelihood's parameters p(x | h^1): Bernoulli logits or the Gaussian mean;
- `sample(n, mean=True)` -> (n, D): pixel means (or a draw from the likelihood with mean=False);
- attributes `latent_dims` (one int per stochastic layer, bottom first), `likelihood` ("bernoulli" or
  "gaussian") and `x_dim`.

`ConditionalVAE` takes `y=` in each of these. Inputs are flat: x is (batch, D), D = `x_dim`.
Models compute on their parameters' device and dtype; nothing here names a device.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .distributions import (
    kl_normal_normal,
    kl_normal_std,
    log_bernoulli_logits,
    log_normal_diag,
    log_standard_normal,
    reparameterize,
)

__all__ = ["mlp", "LatentVariableModel", "VAE", "ConvVAE", "HierarchicalVAE", "ConditionalVAE"]

_ACTIVATIONS = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}
_LIKELIHOODS = ("bernoulli", "gaussian")


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}: expected one of {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


def _check_dim(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int (the number of importance samples), got {k!r}")
    return k


def mlp(sizes: Sequence[int], activation: str = "tanh", batch_norm: bool = False) -> nn.Sequential:
    """MLP sizes[0] -> ... -> sizes[-1]: Linear (+ BatchNorm1d) + activation between layers, the last Linear bare."""
    sizes = [_check_dim("layer size", s) for s in sizes]
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least an input and an output size, got {sizes}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(_activation(activation))
    return nn.Sequential(*layers)


def _apply_flat(net: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """net on the last dim of h with any leading dims (flattened to 2-D, as BatchNorm1d and convs need)."""
    lead = h.shape[:-1]
    out = net(h.reshape(-1, h.shape[-1]))
    return out.reshape(*lead, *out.shape[1:])


def _split(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 2d) -> mu (..., d), logvar (..., d)."""
    mu, logvar = params.chunk(2, dim=-1)
    return mu, logvar


class LatentVariableModel(nn.Module):
    """Shared plumbing of the course's models: the likelihood p(x | h^1), input checks, the device."""

    def __init__(self, x_dim: int, latent_dims: Sequence[int], likelihood: str = "bernoulli",
                 obs_logvar: float | str = "learned"):
        super().__init__()
        self.x_dim = _check_dim("x_dim", x_dim)
        self.latent_dims = [_check_dim("latent dim", d) for d in latent_dims]
        if likelihood not in _LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}: expected one of {_LIKELIHOODS}")
        self.likelihood = likelihood
        if likelihood == "gaussian":
            if obs_logvar == "learned":
                self.obs_logvar = nn.Parameter(torch.zeros(1))
            elif isinstance(obs_logvar, (int, float)) and not isinstance(obs_logvar, bool) and math.isfinite(obs_logvar):
                self.register_buffer("obs_logvar", torch.full((1,), float(obs_logvar)))
            else:
                raise ValueError(f"obs_logvar must be 'learned' or a finite float (a fixed log sigma^2), got {obs_logvar!r}")
        else:
            self.obs_logvar = None

    # -- helpers --------------------------------------------------------------------------------
    @property
    def _param(self) -> torch.Tensor:
        return next(self.parameters())

    def _check_x(self, x) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape (batch, {self.x_dim}), got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != self.x_dim:
            raise ValueError(f"x must have shape (batch, {self.x_dim}) (flattened inputs), got {tuple(x.shape)}")
        if x.shape[0] < 1:
            raise ValueError(f"x must hold at least one input, got shape {tuple(x.shape)}")
        if not torch.is_floating_point(x):
            x = x.to(self._param.dtype)
        return x

    def _check_z(self, z, d: int) -> torch.Tensor:
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"z must be a torch.Tensor of shape (..., {d}), got {type(z).__name__}")
        if z.dim() < 1 or z.shape[-1] != d:
            raise ValueError(f"z must have shape (..., {d}) (the bottom latent h^1), got {tuple(z.shape)}")
        return z

    def log_likelihood(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(x | h) summed over pixels, params from `decode`: x (batch, D), params (..., batch, D) -> (..., batch)."""
        if self.likelihood == "bernoulli":
            return log_bernoulli_logits(x, params)
        return log_normal_diag(x, params, self.obs_logvar.expand(self.x_dim))

    def _decode_log_likelihood(self, decoder: nn.Module, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x | h) with params = decoder(h): h (..., batch, d), x (batch, D) -> (..., batch).

        For a Bernoulli MLP decoder ending in a Linear (logits = a W^T + b on its last hidden layer a), the
        sum_d x_d logits_d of log_bernoulli_logits is computed as a . (W^T x) + b . x on the H hidden units
        instead of on the D logits: the same number, one pass over the (..., batch, D) logits fewer.
        """
        last = decoder[-1] if isinstance(decoder, nn.Sequential) and len(decoder) > 1 else None
        if self.likelihood != "bernoulli" or not isinstance(last, nn.Linear) or last.bias is None:
            return self.log_likelihood(x, _apply_flat(decoder, h))
        hidden = _apply_flat(decoder[:-1], h)                                 # (..., batch, H)
        logits = F.linear(hidden, last.weight, last.bias)                     # (..., batch, D)
        x_dot_logits = (hidden * (x @ last.weight)).sum(-1) + x @ last.bias   # (..., batch)
        return x_dot_logits - F.softplus(logits).sum(-1)

    def _mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params) if self.likelihood == "bernoulli" else params

    def _draw(self, params: torch.Tensor) -> torch.Tensor:
        if self.likelihood == "bernoulli":
            return torch.bernoulli(torch.sigmoid(params))
        return params + torch.exp(0.5 * self.obs_logvar) * torch.randn_like(params)

    def _pixels(self, params: torch.Tensor, mean: bool) -> torch.Tensor:
        return self._mean(params) if mean else self._draw(params)


# ==============================================================================================
# one stochastic layer: VAE, ConvVAE, ConditionalVAE
# ==============================================================================================

class _SingleLayer(LatentVariableModel):
    """p(z) = N(0, I), p(x | z[, y]) from `_decoder`, q(z | x[, y]) = N(mu, diag exp(logvar)) from `_encoder`."""

    z_dim: int

    def _encoder_params(self, x, y):  # (batch, D) -> (batch, 2 z_dim)
        raise NotImplementedError

    def _decoder_params(self, z, y):  # (..., z_dim) -> (..., D)
        raise NotImplementedError

    def _encode(self, x, y=None):
        return _split(self._encoder_params(x, y))

    def _log_weights(self, x, k, y=None):
        k = _check_k(k)
        mu, logvar = self._encode(x, y)                        # (batch, d): the encoder runs once
        z = reparameterize(mu, logvar, k)                      # (k, batch, d)
        log_q = log_normal_diag(z, mu, logvar)                 # (k, batch)
        log_p = log_standard_normal(z) + self._log_likelihood_of(x, z, y)
        return log_p - log_q

    def _log_likelihood_of(self, x, z, y):
        """log p(x | z[, y]): x (batch, D), z (..., batch, d) -> (..., batch)."""
        return self.log_likelihood(x, self._decoder_params(z, y))

    def _elbo(self, x, y=None):
        mu, logvar = self._encode(x, y)
        z = reparameterize(mu, logvar)
        return self.log_likelihood(x, self._decoder_params(z, y)) - kl_normal_std(mu, logvar)

    def _sample(self, n, mean, y=None):
        n = _check_dim("n", n)
        p = self._param
        z = torch.randn(n, self.z_dim, device=p.device, dtype=p.dtype)
        return self._pixels(self._decoder_params(z, y), mean)


class _Unconditional(_SingleLayer):
    """Public protocol methods without a label."""

    def log_weights(self, x: torch.Tensor, k: int = 1) -> torch.Tensor:
        """log w = log p(x, z) - log q(z | x), z ~ q by reparameterization, k samples: x (batch, D) -> (k, batch)."""
        return self._log_weights(self._check_x(x), k)

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """One-sample ELBO log p(x | z) - KL(q(z | x) || N(0, I)), z ~ q, KL in closed form: x (batch, D) -> (batch,)."""
        return self._elbo(self._check_x(x))

    def encode(self, x: torch.Tensor, sample: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(mu, logvar)] of q(z | x), one stochastic layer: x (batch, D) -> [((batch, d), (batch, d))]."""
        return [self._encode(self._check_x(x))]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Likelihood parameters of p(x | z) (Bernoulli logits or Gaussian mean): z (..., d) -> (..., D)."""
        return self._decoder_params(self._check_z(z, self.z_dim), None)

    def sample(self, n: int, mean: bool = True) -> torch.Tensor:
        """x ~ p(x | z), z ~ N(0, I): pixel means (mean=True) or a draw from the likelihood: -> (n, D)."""
        return self._sample(n, mean)


class VAE(_Unconditional):
    """MLP VAE: q(z | x) = N(mu, diag sigma^2) from x-hidden-(mu, log sigma^2), p(x | z) from z-reversed(hidden)-x.

    likelihood "bernoulli" (decoder gives logits) or "gaussian" (decoder gives the mean; variance
    exp(obs_logvar), "learned" as one shared parameter or a fixed float that sets the balance with the KL).
    """

    def __init__(self, x_dim: int, z_dim: int, hidden: Sequence[int] = (200, 200), likelihood: str = "bernoulli",
                 batch_norm: bool = False, activation: str = "tanh", obs_logvar: float | str = "learned"):
        super().__init__(x_dim, [z_dim], likelihood, obs_logvar)
        self.z_dim = z_dim
        hidden = list(hidden)
        self.config = dict(x_dim=x_dim, z_dim=z_dim, hidden=hidden, likelihood=likelihood, batch_norm=batch_norm,
                           activation=activation, obs_logvar=obs_logvar)
        self.encoder = mlp([x_dim, *hidden, 2 * z_dim], activation, batch_norm)
        self.decoder = mlp([z_dim, *hidden[::-1], x_dim], activation, batch_norm)

    def _encoder_params(self, x, y):
        return self.encoder(x)

    def _decoder_params(self, z, y):
        return _apply_flat(self.decoder, z)

    def _log_likelihood_of(self, x, z, y):
        return self._decode_log_likelihood(self.decoder, z, x)


class ConvVAE(_Unconditional):
    """Convolutional VAE on flat (batch, C*H*W) images: two stride-2 convs down, two transposed convs up (H, W divisible by 4)."""

    def __init__(self, image_shape: Sequence[int] = (1, 28, 28), z_dim: int = 16, channels: Sequence[int] = (32, 64),
                 likelihood: str = "bernoulli", activation: str = "relu", obs_logvar: float | str = "learned"):
        image_shape = tuple(image_shape)
        if len(image_shape) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in image_shape):
            raise ValueError(f"image_shape must be (channels, height, width), got {image_shape!r}")
        c, h, w = image_shape
        if h % 4 or w % 4:
            raise ValueError(f"ConvVAE halves the image twice: height and width must be divisible by 4, got {image_shape}")
        channels = tuple(channels)
        if len(channels) != 2:
            raise ValueError(f"channels must be two ints (the two conv layers' widths), got {channels!r}")
        super().__init__(c * h * w, [z_dim], likelihood, obs_logvar)
        self.z_dim, self.image_shape = z_dim, image_shape
        self.config = dict(image_shape=list(image_shape), z_dim=z_dim, channels=list(channels), likelihood=likelihood,
                           activation=activation, obs_logvar=obs_logvar)
        c1, c2 = channels
        self._feature_shape = (c2, h // 4, w // 4)
        n_feat = c2 * (h // 4) * (w // 4)
        self.encoder = nn.Sequential(
            nn.Conv2d(c, c1, 4, stride=2, padding=1), _activation(activation),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), _activation(activation),
            nn.Flatten(), nn.Linear(n_feat, 2 * z_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(z_dim, n_feat), _activation(activation),
            nn.Unflatten(1, self._feature_shape),
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), _activation(activation),
            nn.ConvTranspose2d(c1, c, 4, stride=2, padding=1),
            nn.Flatten(),
        )

    def _encoder_params(self, x, y):
        return self.encoder(x.reshape(-1, *self.image_shape))

    def _decoder_params(self, z, y):
        return _apply_flat(self.decoder, z)


class ConditionalVAE(_SingleLayer):
    """Conditional VAE: p(x | z, y) from [z, y], q(z | x, y) from [x, y], p(z) = N(0, I); y one-hot (batch, y_dim) or int labels (batch,)."""

    def __init__(self, x_dim: int, y_dim: int, z_dim: int, hidden: Sequence[int] = (200, 200),
                 likelihood: str = "bernoulli", activation: str = "tanh", batch_norm: bool = False,
                 obs_logvar: float | str = "learned"):
        super().__init__(x_dim, [z_dim], likelihood, obs_logvar)
        self.y_dim, self.z_dim = _check_dim("y_dim", y_dim), z_dim
        hidden = list(hidden)
        self.config = dict(x_dim=x_dim, y_dim=y_dim, z_dim=z_dim, hidden=hidden, likelihood=likelihood,
                           activation=activation, batch_norm=batch_norm, obs_logvar=obs_logvar)
        self.encoder = mlp([x_dim + y_dim, *hidden, 2 * z_dim], activation, batch_norm)
        self.decoder = mlp([z_dim + y_dim, *hidden[::-1], x_dim], activation, batch_norm)

    def _check_y(self, y, n: int) -> torch.Tensor:
        p = self._param
        if y is None:
            raise ValueError(f"ConditionalVAE needs y: int labels of shape ({n},) or one-hot of shape ({n}, {self.y_dim})")
        if isinstance(y, int) and not isinstance(y, bool):
            y = torch.full((n,), y, dtype=torch.long, device=p.device)
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"y must be a torch.Tensor (labels or one-hot) or an int, got {type(y).__name__}")
        if y.dim() == 1 and not torch.is_floating_point(y):
            if y.shape[0] != n:
                raise ValueError(f"y must have one label per input: expected shape ({n},), got {tuple(y.shape)}")
            if y.numel() and (y.min() < 0 or y.max() >= self.y_dim):
                raise ValueError(f"labels must lie in [0, {self.y_dim}), got range [{int(y.min())}, {int(y.max())}]")
            return F.one_hot(y.long(), self.y_dim).to(p.dtype)
        if y.shape != (n, self.y_dim):
            raise ValueError(f"y must be int labels of shape ({n},) or one-hot floats of shape ({n}, {self.y_dim}), "
                             f"got {tuple(y.shape)} ({y.dtype})")
        return y.to(p.dtype)

    def _encoder_params(self, x, y):
        return self.encoder(torch.cat([x, y], -1))

    def _decoder_params(self, z, y):
        y = y.expand(*z.shape[:-1], y.shape[-1])  # the label of each input, for every sample of z
        return _apply_flat(self.decoder, torch.cat([z, y], -1))

    def _log_likelihood_of(self, x, z, y):
        return self._decode_log_likelihood(self.decoder, torch.cat([z, y.expand(*z.shape[:-1], y.shape[-1])], -1), x)

    def log_weights(self, x: torch.Tensor, k: int = 1, y: torch.Tensor | None = None) -> torch.Tensor:
        """log w = log p(x, z | y) - log q(z | x, y), z ~ q, k samples: x (batch, D), y (batch,) or (batch, y_dim) -> (k, batch)."""
        x = self._check_x(x)
        return self._log_weights(x, k, self._check_y(y, x.shape[0]))

    def elbo(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """One-sample ELBO log p(x | z, y) - KL(q(z | x, y) || N(0, I)), closed-form KL: x (batch, D) -> (batch,)."""
        x = self._check_x(x)
        return self._elbo(x, self._check_y(y, x.shape[0]))

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None,
               sample: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(mu, logvar)] of q(z | x, y): x (batch, D) -> [((batch, d), (batch, d))]."""
        x = self._check_x(x)
        return [self._encode(x, self._check_y(y, x.shape[0]))]

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Likelihood parameters of p(x | z, y): z (batch, d), y (batch,) or (batch, y_dim) -> (batch, D)."""
        z = self._check_z(z, self.z_dim)
        if z.dim() != 2:
            raise ValueError(f"ConditionalVAE.decode takes z of shape (batch, {self.z_dim}), got {tuple(z.shape)}")
        return self._decoder_params(z, self._check_y(y, z.shape[0]))

    def sample(self, n: int, y=None, mean: bool = True) -> torch.Tensor:
        """x ~ p(x | z, y), z ~ N(0, I), for labels y (an int for all n, (n,) labels or (n, y_dim)): -> (n, D)."""
        n = _check_dim("n", n)
        return self._sample(n, mean, self._check_y(y, n))


# ==============================================================================================
# L stochastic layers
# ==============================================================================================

class HierarchicalVAE(LatentVariableModel):
    """L stochastic layers: p(x | h^1) p(h^1 | h^2) ... p(h^L), p(h^L) = N(0, I), Gaussian conditionals from MLPs;
    recognition bottom-up q(h^1 | x) q(h^2 | h^1) ... ("bottom_up", Burda et al. 2016) or q(h^1 | x) q(h^2 | x) ... ("factorised").

    `layers` lists, bottom first, (hidden sizes, latent dim) per stochastic layer: the recognition net into
    h^l uses the hidden sizes, the generative net out of h^l the same sizes reversed. The default is Burda et
    al.'s two-layer model x(784)-200-200-h1(100)-100-100-h2(50), tanh, Bernoulli.
    """

    def __init__(self, x_dim: int = 784, layers: Sequence[tuple[Sequence[int], int]] = (((200, 200), 100), ((100, 100), 50)),
                 likelihood: str = "bernoulli", activation: str = "tanh", inference: str = "bottom_up",
                 obs_logvar: float | str = "learned"):
        try:
            layers = [(tuple(hidden), dim) for hidden, dim in layers]
        except (TypeError, ValueError):
            raise ValueError(f"layers must be a sequence of (hidden sizes, latent dim), e.g. [((200, 200), 50)], got {layers!r}") from None
        if not layers:
            raise ValueError("layers must hold at least one stochastic layer")
        if inference not in ("bottom_up", "factorised"):
            raise ValueError(f"inference must be 'bottom_up' or 'factorised', got {inference!r}")
        super().__init__(x_dim, [d for _, d in layers], likelihood, obs_logvar)
        self.inference = inference
        self.layers = layers
        self.config = dict(x_dim=x_dim, layers=[[list(h), d] for h, d in layers], likelihood=likelihood,
                           activation=activation, inference=inference, obs_logvar=obs_logvar)
        dims = self.latent_dims
        # recognition: q(h^l | h^{l-1}) (h^0 = x), or q(h^l | x) when factorised
        self.recognition = nn.ModuleList(
            mlp([x_dim if (l == 0 or inference == "factorised") else dims[l - 1], *hidden, 2 * dims[l]], activation)
            for l, (hidden, _) in enumerate(layers)
        )
        # generative: p(x | h^1), then p(h^l | h^{l+1}) for l = 1..L-1
        self.decoder = mlp([dims[0], *layers[0][0][::-1], x_dim], activation)
        self.priors = nn.ModuleList(
            mlp([dims[l + 1], *layers[l + 1][0][::-1], 2 * dims[l]], activation) for l in range(len(layers) - 1)
        )

    @classmethod
    def iwae_paper(cls, n_layers: int = 1, x_dim: int = 784, **kwargs) -> "HierarchicalVAE":
        """Burda et al.'s architectures: 1 layer x-200-200-h(50); 2 layers x-200-200-h1(100)-100-100-h2(50)."""
        if n_layers == 1:
            layers = [((200, 200), 50)]
        elif n_layers == 2:
            layers = [((200, 200), 100), ((100, 100), 50)]
        else:
            raise ValueError(f"the IWAE paper has models with 1 or 2 stochastic layers, got n_layers={n_layers!r}")
        return cls(x_dim, layers, **kwargs)

    @classmethod
    def small(cls, n_layers: int = 2, x_dim: int = 64, **kwargs) -> "HierarchicalVAE":
        """A digits-sized hierarchy (8x8 inputs): x-64-64-h1(16)-32-32-h2(8)-...: each layer halves the one below."""
        _check_dim("n_layers", n_layers)
        layers, width, dim = [], 64, 16
        for _ in range(n_layers):
            layers.append(((width, width), dim))
            width, dim = max(width // 2, 4), max(dim // 2, 2)
        return cls(x_dim, layers, **kwargs)

    @property
    def n_layers(self) -> int:
        return len(self.latent_dims)

    # -- recognition ------------------------------------------------------------------------------
    def _recognize(self, x, k):
        """Draw h^1..h^L ~ q: returns hs [(k, b, d_l)], log q terms [(k, b)], and q's (mu, logvar) per layer."""
        hs, log_qs, params = [], [], []
        below = x
        for l, net in enumerate(self.recognition):
            inp = x if (l == 0 or self.inference == "factorised") else below
            mu, logvar = _split(_apply_flat(net, inp))
            h = reparameterize(mu, logvar, k) if inp is x else reparameterize(mu, logvar)  # inp has (k, ...) already
            hs.append(h)
            log_qs.append(log_normal_diag(h, mu, logvar))
            params.append((mu, logvar))
            below = h
        return hs, log_qs, params

    def _prior_params(self, l, h_above):
        """(mu, logvar) of p(h^{l+1} | h^{l+2}) for 0-based l, from the sample above."""
        return _split(_apply_flat(self.priors[l], h_above))

    def layer_terms(self, x: torch.Tensor, k: int = 1) -> list[torch.Tensor]:
        """Per-layer terms of log w, bottom first: [log p(x|h^1), log p(h^1|h^2) - log q(h^1|.), ..., log p(h^L) - log q(h^L|.)], each (k, batch); they sum to log_weights(x, k)."""
        x, k = self._check_x(x), _check_k(k)
        hs, log_qs, _ = self._recognize(x, k)
        terms = [self._decode_log_likelihood(self.decoder, hs[0], x)]
        for l in range(self.n_layers):
            if l == self.n_layers - 1:
                log_p = log_standard_normal(hs[l])
            else:
                log_p = log_normal_diag(hs[l], *self._prior_params(l, hs[l + 1]))
            terms.append(log_p - log_qs[l])
        return terms

    def log_weights(self, x: torch.Tensor, k: int = 1) -> torch.Tensor:
        """log w = log p(x, h^1..h^L) - log q(h^1..h^L | x), h ~ q by reparameterization, k samples: x (batch, D) -> (k, batch)."""
        return torch.stack(self.layer_terms(x, k)).sum(0)

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """One-sample ELBO: log p(x|h^1) + per-layer terms, the top KL(q(h^L|.) || N(0, I)) in closed form
        (and, when factorised, KL(q(h^l|x) || p(h^l|h^{l+1})) given the drawn h^{l+1}): x (batch, D) -> (batch,)."""
        x = self._check_x(x)
        hs, log_qs, params = self._recognize(x, 1)
        hs, log_qs = [h[0] for h in hs], [q[0] for q in log_qs]
        params = [(mu[0], lv[0]) if mu.dim() == 3 else (mu, lv) for mu, lv in params]
        out = self.log_likelihood(x, _apply_flat(self.decoder, hs[0]))
        top = self.n_layers - 1
        for l in range(self.n_layers):
            if l == top:
                out = out - kl_normal_std(*params[l])
            elif self.inference == "factorised":
                out = out - kl_normal_normal(*params[l], *self._prior_params(l, hs[l + 1]))
            else:  # q(h^l | h^{l-1}) and p(h^l | h^{l+1}), h^{l+1} drawn given h^l: no closed form
                out = out + log_normal_diag(hs[l], *self._prior_params(l, hs[l + 1])) - log_qs[l]
        return out

    def encode(self, x: torch.Tensor, sample: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(mu, logvar)] of q per layer, bottom first: x (batch, D) -> [((batch, d_l), (batch, d_l))]. Bottom-up, the
        next layer is fed h^l = mu_l (sample=False) or a draw h^l ~ q(h^l | .) (sample=True)."""
        x = self._check_x(x)
        out, below = [], x
        for l, net in enumerate(self.recognition):
            inp = x if (l == 0 or self.inference == "factorised") else below
            mu, logvar = _split(net(inp))
            out.append((mu, logvar))
            below = reparameterize(mu, logvar) if sample else mu
        return out

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Likelihood parameters of p(x | h^1) (Bernoulli logits or Gaussian mean): h^1 (..., d_1) -> (..., D)."""
        return _apply_flat(self.decoder, self._check_z(z, self.latent_dims[0]))

    def sample(self, n: int, mean: bool = True, vary_layer: int | None = None) -> torch.Tensor:
        """Ancestral sample h^L ~ N(0, I), h^l ~ p(h^l | h^{l+1}), x: -> (n, D) pixel means (or draws, mean=False).
        With vary_layer=l (1..L), every layer sits at its conditional mean except h^l, which is drawn."""
        n = _check_dim("n", n)
        if vary_layer is not None and (isinstance(vary_layer, bool) or not isinstance(vary_layer, int)
                                       or not 1 <= vary_layer <= self.n_layers):
            raise ValueError(f"vary_layer must be a layer number 1..{self.n_layers} (h^1 is the bottom), got {vary_layer!r}")
        p = self._param
        top = self.n_layers - 1
        h = torch.zeros(n, self.latent_dims[top], device=p.device, dtype=p.dtype)
        if vary_layer is None or vary_layer - 1 == top:
            h = torch.randn_like(h)
        for l in range(top - 1, -1, -1):
            mu, logvar = self._prior_params(l, h)
            h = reparameterize(mu, logvar) if (vary_layer is None or vary_layer - 1 == l) else mu
        return self._pixels(self.decode(h), mean)
