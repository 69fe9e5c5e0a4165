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
- `config`, a dataclass of the constructor's settings (saved with checkpoints), and the attributes
  `latent_dims` (one int per stochastic layer, bottom first), `likelihood` ("bernoulli" or "gaussian"), `x_dim`.

`ConditionalVAE` takes `y=` in each of these. Inputs are flat: x is (batch, D), D = `x_dim`, in the dtype and
on the device of the model's parameters (a float64 input to a float32 model is an error, not a silent cast).
Nothing here names a device.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._validate import choice, positive_int
from .distributions import (
    kl_normal_normal,
    kl_normal_std,
    log_bernoulli_logits,
    log_normal_diag,
    log_standard_normal,
    reparameterize,
)

__all__ = ["mlp", "precision_weighted", "VAEConfig", "ConvVAEConfig", "ConditionalVAEConfig", "HierarchicalVAEConfig",
           "LatentVariableModel", "VAE", "ConvVAE", "ConditionalVAE", "HierarchicalVAE"]

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "softplus": nn.Softplus,
               "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU}
LIKELIHOODS = ("bernoulli", "gaussian")


def mlp(sizes: Sequence[int], activation: str = "tanh", batch_norm: bool = False) -> nn.Sequential:
    """MLP sizes[0] -> ... -> sizes[-1]: Linear (+ BatchNorm1d) + activation between layers, the last Linear bare."""
    sizes = [positive_int("layer size", s) for s in sizes]
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least an input and an output size, got {sizes}")
    act = ACTIVATIONS[choice("activation", activation, tuple(ACTIVATIONS))]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(act())
    return nn.Sequential(*layers)


def apply_flat(net: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """net on the last dim of h with any leading dims, (..., d) -> (..., out): flattened to 2-D as BatchNorm1d needs."""
    out = net(h.reshape(-1, h.shape[-1]))
    return out.reshape(*h.shape[:-1], *out.shape[1:])


def _split(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 2d) -> mu (..., d), logvar (..., d)."""
    mu, logvar = params.chunk(2, dim=-1)
    return mu, logvar


# ============================================================================================== configs
@dataclass(frozen=True)
class VAEConfig:
    """Settings of `VAE`: x(x_dim)-hidden-z(z_dim) encoder, the mirror image as decoder."""

    x_dim: int
    z_dim: int
    hidden: tuple = (200, 200)
    likelihood: str = "bernoulli"      # "bernoulli" (decoder gives logits) or "gaussian" (decoder gives the mean)
    batch_norm: bool = False
    activation: str = "tanh"
    obs_logvar: float | str = "learned"  # Gaussian only: log sigma^2, "learned" (one parameter) or a fixed float


@dataclass(frozen=True)
class ConvVAEConfig:
    """Settings of `ConvVAE`: two stride-2 convolutions down, two transposed convolutions up."""

    image_shape: tuple = (1, 28, 28)
    z_dim: int = 16
    channels: tuple = (32, 64)
    likelihood: str = "bernoulli"
    activation: str = "relu"
    obs_logvar: float | str = "learned"


@dataclass(frozen=True)
class ConditionalVAEConfig:
    """Settings of `ConditionalVAE`: like VAEConfig, with y_dim classes concatenated to both networks' inputs."""

    x_dim: int
    y_dim: int
    z_dim: int
    hidden: tuple = (200, 200)
    likelihood: str = "bernoulli"
    activation: str = "tanh"
    batch_norm: bool = False
    obs_logvar: float | str = "learned"


@dataclass(frozen=True)
class HierarchicalVAEConfig:
    """Settings of `HierarchicalVAE`: `layers` lists, bottom first, ((hidden sizes), latent dim) per stochastic layer."""

    x_dim: int = 784
    layers: tuple = (((200, 200), 100), ((100, 100), 50))
    likelihood: str = "bernoulli"
    activation: str = "tanh"
    inference: str = "bottom_up"       # q(h^l | h^{l-1}) ("bottom_up"), q(h^l | x) ("factorised"), or the Ladder
                                       # VAE's q(h^L | x) q(h^l | h^{l+1}, x) ("top_down")
    obs_logvar: float | str = "learned"


def precision_weighted(mu_a: torch.Tensor, logvar_a: torch.Tensor, mu_b: torch.Tensor,
                       logvar_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, logvar) of N(mu_a, var_a) N(mu_b, var_b) normalised: 1/var = 1/var_a + 1/var_b, mu = var (mu_a/var_a + mu_b/var_b); broadcasts."""
    logvar = -torch.logaddexp(-logvar_a, -logvar_b)
    w_a = torch.sigmoid(logvar_b - logvar_a)           # var_b / (var_a + var_b): the weight of the sharper one is larger
    return w_a * mu_a + (1 - w_a) * mu_b, logvar + torch.zeros_like(mu_a + mu_b)


def _as_tuples(value):
    """Lists (from a config read back from JSON or a checkpoint) as tuples, recursively."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


# ============================================================================================== base
class LatentVariableModel(nn.Module):
    """What every model shares: the likelihood p(x | h^1) and the input checks."""

    def __init__(self, x_dim: int, latent_dims: Sequence[int], likelihood: str, obs_logvar: float | str):
        super().__init__()
        self.x_dim = positive_int("x_dim", x_dim)
        self.latent_dims = [positive_int("latent dim", d) for d in latent_dims]
        self.likelihood = choice("likelihood", likelihood, LIKELIHOODS)
        if likelihood == "bernoulli":
            self.obs_logvar = None
        else:
            if obs_logvar == "learned":
                self.obs_logvar = nn.Parameter(torch.zeros(1))
            elif isinstance(obs_logvar, (int, float)) and not isinstance(obs_logvar, bool) and math.isfinite(obs_logvar):
                self.register_buffer("obs_logvar", torch.full((1,), float(obs_logvar)))
            else:
                raise ValueError(f"obs_logvar must be 'learned' or a finite float (a fixed log sigma^2), got {obs_logvar!r}")

    def log_likelihood(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(x | h) summed over pixels, params from `decode`: x (batch, D), params (..., batch, D) -> (..., batch)."""
        if self.likelihood == "bernoulli":
            return log_bernoulli_logits(x, params)
        return log_normal_diag(x, params, self.obs_logvar.expand(self.x_dim))

    def pixels(self, params: torch.Tensor, mean: bool = True) -> torch.Tensor:
        """E[x | h] (sigmoid of the logits, or the Gaussian mean) when `mean`, else one draw x ~ p(x | h): (..., D)."""
        if self.likelihood == "bernoulli":
            probs = torch.sigmoid(params)
            return probs if mean else torch.bernoulli(probs)
        return params if mean else params + torch.exp(0.5 * self.obs_logvar) * torch.randn_like(params)

    def _check_x(self, x) -> torch.Tensor:
        """x as the model computes it: (batch, x_dim), the parameters' dtype (ints and bools are cast) and device."""
        p = next(self.parameters())
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape (batch, {self.x_dim}), got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != self.x_dim or x.shape[0] < 1:
            raise ValueError(f"x must have shape (batch, {self.x_dim}) with batch >= 1 (flattened inputs), "
                             f"got {tuple(x.shape)}")
        if x.device != p.device:
            raise ValueError(f"x is on {x.device} but the model's parameters are on {p.device}; "
                             f"move one of them (x.to(device) or model.to(x.device))")
        if not torch.is_floating_point(x):
            return x.to(p.dtype)
        if x.dtype != p.dtype:
            raise TypeError(f"x is {x.dtype} but the model's parameters are {p.dtype}; convert one of them "
                            f"(x.to({p.dtype}) or model.to({x.dtype}))")
        return x

    def _check_z(self, z, d: int) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.dim() < 1 or z.shape[-1] != d:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"z must be a tensor of shape (..., {d}) (the bottom latent h^1), got {got}")
        return z

    def _prior_sample(self, n: int, d: int) -> torch.Tensor:
        p = next(self.parameters())
        return torch.randn(positive_int("n", n), d, device=p.device, dtype=p.dtype)


# ============================================================================================== one layer
class VAE(LatentVariableModel):
    """MLP VAE: q(z | x) = N(mu, diag sigma^2) from x-hidden-(mu, log sigma^2), p(x | z) from z-reversed(hidden)-x, p(z) = N(0, I)."""

    def __init__(self, x_dim: int, z_dim: int, hidden: Sequence[int] = (200, 200), likelihood: str = "bernoulli",
                 batch_norm: bool = False, activation: str = "tanh", obs_logvar: float | str = "learned"):
        super().__init__(x_dim, [z_dim], likelihood, obs_logvar)
        self.config = VAEConfig(x_dim, z_dim, _as_tuples(hidden), likelihood, batch_norm, activation, obs_logvar)
        self.z_dim = z_dim
        self.encoder = mlp([x_dim, *hidden, 2 * z_dim], activation, batch_norm)
        self.decoder = mlp([z_dim, *tuple(hidden)[::-1], x_dim], activation, batch_norm)

    def encode(self, x: torch.Tensor, sample: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(mu, logvar)] of q(z | x), one stochastic layer: x (batch, D) -> [((batch, d), (batch, d))]."""
        return [_split(self.encoder(self._check_x(x)))]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Likelihood parameters of p(x | z) (Bernoulli logits or Gaussian mean): z (..., d) -> (..., D)."""
        return apply_flat(self.decoder, self._check_z(z, self.z_dim))

    def log_weights(self, x: torch.Tensor, k: int = 1) -> torch.Tensor:
        """log w = log p(x | z) + log p(z) - log q(z | x), z ~ q by reparameterization, k samples: x (batch, D) -> (k, batch)."""
        x = self._check_x(x)
        [(mu, logvar)] = self.encode(x)                       # (batch, d) each: the encoder runs once
        z = reparameterize(mu, logvar, positive_int("k", k))  # (k, batch, d)
        log_q = log_normal_diag(z, mu, logvar)                # (k, batch)
        log_prior = log_standard_normal(z)                    # (k, batch)
        log_lik = self.log_likelihood(x, self.decode(z))      # (k, batch)
        return log_lik + log_prior - log_q

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """One-sample ELBO log p(x | z) - KL(q(z | x) || N(0, I)), z ~ q, KL in closed form: x (batch, D) -> (batch,)."""
        x = self._check_x(x)
        [(mu, logvar)] = self.encode(x)
        z = reparameterize(mu, logvar)                        # (batch, d)
        return self.log_likelihood(x, self.decode(z)) - kl_normal_std(mu, logvar)

    def sample(self, n: int, mean: bool = True) -> torch.Tensor:
        """x ~ p(x | z), z ~ N(0, I): pixel means (mean=True) or a draw from the likelihood: -> (n, D)."""
        return self.pixels(self.decode(self._prior_sample(n, self.z_dim)), mean)


class ConvVAE(VAE):
    """Convolutional VAE on flat (batch, C*H*W) images: two stride-2 convs down, two transposed convs up (H, W divisible by 4)."""

    def __init__(self, image_shape: Sequence[int] = (1, 28, 28), z_dim: int = 16, channels: Sequence[int] = (32, 64),
                 likelihood: str = "bernoulli", activation: str = "relu", obs_logvar: float | str = "learned"):
        image_shape, channels = _as_tuples(image_shape), _as_tuples(channels)
        if len(image_shape) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in image_shape):
            raise ValueError(f"image_shape must be (channels, height, width), got {image_shape!r}")
        c, h, w = image_shape
        if h % 4 or w % 4:
            raise ValueError(f"ConvVAE halves the image twice: height and width must be divisible by 4, got {image_shape}")
        if len(channels) != 2:
            raise ValueError(f"channels must be two ints (the two conv layers' widths), got {channels!r}")
        LatentVariableModel.__init__(self, c * h * w, [z_dim], likelihood, obs_logvar)
        self.config = ConvVAEConfig(image_shape, z_dim, channels, likelihood, activation, obs_logvar)
        self.z_dim, self.image_shape = z_dim, image_shape
        c1, c2 = (positive_int("channels", ch) for ch in channels)
        act = ACTIVATIONS[choice("activation", activation, tuple(ACTIVATIONS))]
        features = (c2, h // 4, w // 4)
        self.encoder = nn.Sequential(
            nn.Unflatten(1, image_shape),
            nn.Conv2d(c, c1, 4, stride=2, padding=1), act(),    # (c1, h/2, w/2)
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), act(),   # (c2, h/4, w/4)
            nn.Flatten(), nn.Linear(math.prod(features), 2 * z_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(z_dim, math.prod(features)), act(), nn.Unflatten(1, features),
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), act(),
            nn.ConvTranspose2d(c1, c, 4, stride=2, padding=1),
            nn.Flatten(),
        )


class ConditionalVAE(LatentVariableModel):
    """Conditional VAE: p(x | z, y) from [z, y], q(z | x, y) from [x, y], p(z) = N(0, I); y one-hot (batch, y_dim) or int labels (batch,)."""

    def __init__(self, x_dim: int, y_dim: int, z_dim: int, hidden: Sequence[int] = (200, 200),
                 likelihood: str = "bernoulli", activation: str = "tanh", batch_norm: bool = False,
                 obs_logvar: float | str = "learned"):
        super().__init__(x_dim, [z_dim], likelihood, obs_logvar)
        self.config = ConditionalVAEConfig(x_dim, y_dim, z_dim, _as_tuples(hidden), likelihood, activation,
                                           batch_norm, obs_logvar)
        self.y_dim, self.z_dim = positive_int("y_dim", y_dim), z_dim
        self.encoder = mlp([x_dim + y_dim, *hidden, 2 * z_dim], activation, batch_norm)
        self.decoder = mlp([z_dim + y_dim, *tuple(hidden)[::-1], x_dim], activation, batch_norm)

    def _check_y(self, y, n: int) -> torch.Tensor:
        """y as one-hot floats (n, y_dim): from an int (the same label for all), int labels (n,) or one-hot (n, y_dim)."""
        p = next(self.parameters())
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

    def encode(self, x: torch.Tensor, y=None, sample: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(mu, logvar)] of q(z | x, y): x (batch, D), y labels (batch,) or one-hot -> [((batch, d), (batch, d))]."""
        x = self._check_x(x)
        return [_split(self.encoder(torch.cat([x, self._check_y(y, x.shape[0])], -1)))]

    def decode(self, z: torch.Tensor, y=None) -> torch.Tensor:
        """Likelihood parameters of p(x | z, y): z (..., batch, d), y for the batch -> (..., batch, D)."""
        z = self._check_z(z, self.z_dim)
        y = self._check_y(y, z.shape[-2] if z.dim() > 1 else 1)
        return apply_flat(self.decoder, torch.cat([z, y.expand(*z.shape[:-1], self.y_dim)], -1))

    def log_weights(self, x: torch.Tensor, k: int = 1, y=None) -> torch.Tensor:
        """log w = log p(x | z, y) + log p(z) - log q(z | x, y), z ~ q, k samples: x (batch, D), y (batch,) -> (k, batch)."""
        x = self._check_x(x)
        [(mu, logvar)] = self.encode(x, y)                    # (batch, d) each
        z = reparameterize(mu, logvar, positive_int("k", k))  # (k, batch, d)
        log_q = log_normal_diag(z, mu, logvar)                # (k, batch)
        log_prior = log_standard_normal(z)                    # (k, batch)
        log_lik = self.log_likelihood(x, self.decode(z, y))   # (k, batch)
        return log_lik + log_prior - log_q

    def elbo(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """One-sample ELBO log p(x | z, y) - KL(q(z | x, y) || N(0, I)), closed-form KL: x (batch, D) -> (batch,)."""
        x = self._check_x(x)
        [(mu, logvar)] = self.encode(x, y)
        z = reparameterize(mu, logvar)
        return self.log_likelihood(x, self.decode(z, y)) - kl_normal_std(mu, logvar)

    def sample(self, n: int, y=None, mean: bool = True) -> torch.Tensor:
        """x ~ p(x | z, y), z ~ N(0, I), for labels y (an int for all n, (n,) labels or (n, y_dim)): -> (n, D)."""
        return self.pixels(self.decode(self._prior_sample(n, self.z_dim), y), mean)


# ============================================================================================== L layers
INFERENCE = ("bottom_up", "factorised", "top_down")


class HierarchicalVAE(LatentVariableModel):
    """L stochastic layers: p(x | h^1) p(h^1 | h^2) ... p(h^L), p(h^L) = N(0, I), Gaussian conditionals from MLPs.

    Recognition, `inference=`:
    - "bottom_up" (Burda et al. 2016): q(h^1 | x) q(h^2 | h^1) ... q(h^L | h^{L-1});
    - "factorised": q(h^1 | x) q(h^2 | x) ... q(h^L | x);
    - "top_down" (the Ladder VAE, Sonderby et al. 2016): a deterministic bottom-up pass gives N(mu^_l, var^_l) per
      layer (net l reads mu^_{l-1}, net 1 reads x); then q(h^L | x) = N(mu^_L, var^_L) and, top down,
      q(h^l | h^{l+1}, x) proportional to N(mu^_l, var^_l) p(h^l | h^{l+1}) (`precision_weighted`). q and p of
      every layer then condition on the same h^{l+1}, so every layer's rate is a KL in closed form.

    `layers` lists, bottom first, (hidden sizes, latent dim) per stochastic layer: the recognition net into
    h^l uses the hidden sizes, the generative net out of h^l the same sizes reversed. The default is Burda et
    al.'s two-layer model x(784)-200-200-h1(100)-100-100-h2(50), tanh, Bernoulli.
    """

    def __init__(self, x_dim: int = 784, layers=(((200, 200), 100), ((100, 100), 50)), likelihood: str = "bernoulli",
                 activation: str = "tanh", inference: str = "bottom_up", obs_logvar: float | str = "learned"):
        try:
            layers = tuple((_as_tuples(hidden), dim) for hidden, dim in layers)
        except (TypeError, ValueError):
            raise ValueError(f"layers must be a sequence of (hidden sizes, latent dim), e.g. [((200, 200), 50)], "
                             f"got {layers!r}") from None
        if not layers:
            raise ValueError("layers must hold at least one stochastic layer")
        choice("inference", inference, INFERENCE)
        super().__init__(x_dim, [d for _, d in layers], likelihood, obs_logvar)
        self.config = HierarchicalVAEConfig(x_dim, layers, likelihood, activation, inference, obs_logvar)
        self.inference, self.layers = inference, layers
        dims = self.latent_dims
        # recognition into h^l from h^{l-1} (bottom_up), from x (factorised), or from mu^_{l-1} (top_down); h^0 = x
        self.recognition = nn.ModuleList(
            mlp([x_dim if (l == 0 or inference == "factorised") else dims[l - 1], *hidden, 2 * dims[l]], activation)
            for l, (hidden, _) in enumerate(layers))
        # generative p(x | h^1), then p(h^l | h^{l+1}) for l = 1..L-1
        self.decoder = mlp([dims[0], *layers[0][0][::-1], x_dim], activation)
        self.priors = nn.ModuleList(
            mlp([dims[l + 1], *layers[l + 1][0][::-1], 2 * dims[l]], activation) for l in range(len(layers) - 1))

    @classmethod
    def iwae_paper(cls, n_layers: int = 1, x_dim: int = 784, **kwargs) -> "HierarchicalVAE":
        """Burda et al.'s architectures: 1 layer x-200-200-h(50); 2 layers x-200-200-h1(100)-100-100-h2(50)."""
        if n_layers not in (1, 2):
            raise ValueError(f"the IWAE paper has models with 1 or 2 stochastic layers, got n_layers={n_layers!r}")
        layers = [((200, 200), 50)] if n_layers == 1 else [((200, 200), 100), ((100, 100), 50)]
        return cls(x_dim, layers, **kwargs)

    @classmethod
    def small(cls, n_layers: int = 2, x_dim: int = 64, **kwargs) -> "HierarchicalVAE":
        """A digits-sized hierarchy (8x8 inputs): x-64-64-h1(16)-32-32-h2(8)-...: each layer halves the one below."""
        layers, width, dim = [], 64, 16
        for _ in range(positive_int("n_layers", n_layers)):
            layers.append(((width, width), dim))
            width, dim = max(width // 2, 4), max(dim // 2, 2)
        return cls(x_dim, layers, **kwargs)

    @property
    def n_layers(self) -> int:
        return len(self.latent_dims)

    def _q_input(self, l: int, x: torch.Tensor, below: torch.Tensor) -> torch.Tensor:
        return x if (l == 0 or self.inference == "factorised") else below

    def _prior(self, l: int, h_above: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of p(h^{l+1} | h^{l+2}) for 0-based l, given the sample of the layer above: (..., d_{l+2}) -> (..., d_{l+1})."""
        return _split(apply_flat(self.priors[l], h_above))

    def _bottom_up_pass(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """top_down's deterministic pass: [(mu^_l, logvar^_l)] bottom first, net l fed mu^_{l-1} (x for l = 1): each (batch, d_l)."""
        out, inp = [], x
        for net in self.recognition:
            mu, logvar = _split(apply_flat(net, inp))
            out.append((mu, logvar))
            inp = mu
        return out

    def _draw(self, x: torch.Tensor, k: int):
        """One pass of q, k samples: bottom first, the draws h^l (k, batch, d_l), the (mu, logvar) of q(h^l | .) and of
        p(h^l | h^{l+1}) (None for the top: N(0, I)), each broadcasting to (k, batch, d_l)."""
        L = self.n_layers
        if self.inference == "top_down":
            ups = self._bottom_up_pass(x)                              # (batch, d_l) each
            hs, qs, ps = [None] * L, [None] * L, [None] * L
            qs[-1] = ups[-1]                                           # q(h^L | x)
            hs[-1] = reparameterize(*qs[-1], k)                        # (k, batch, d_L)
            for l in range(L - 2, -1, -1):                             # top down
                ps[l] = self._prior(l, hs[l + 1])                      # p(h^l | h^{l+1}): (k, batch, d_l)
                qs[l] = precision_weighted(*ups[l], *ps[l])            # q(h^l | h^{l+1}, x)
                hs[l] = reparameterize(*qs[l])                         # (k, batch, d_l)
            return hs, qs, ps
        hs, qs, below = [], [], x
        for l, net in enumerate(self.recognition):                     # bottom up
            inp = self._q_input(l, x, below)
            mu, logvar = _split(apply_flat(net, inp))                  # (batch, d) from x, (k, batch, d) from h below
            h = reparameterize(mu, logvar, k) if inp is x else reparameterize(mu, logvar)  # (k, batch, d_l)
            hs.append(h)
            qs.append((mu, logvar))
            below = h
        ps = [self._prior(l, hs[l + 1]) for l in range(L - 1)] + [None]
        return hs, qs, ps

    def layer_terms(self, x: torch.Tensor, k: int = 1) -> list[torch.Tensor]:
        """Terms of log w, bottom first: [log p(x|h^1), log p(h^1|h^2) - log q(h^1|.), ..., log p(h^L) - log q(h^L|.)], each (k, batch); they sum to log w."""
        x, k = self._check_x(x), positive_int("k", k)
        hs, qs, ps = self._draw(x, k)
        terms = [self.log_likelihood(x, apply_flat(self.decoder, hs[0]))]   # (k, batch)
        for h, q, p in zip(hs, qs, ps):
            log_p = log_standard_normal(h) if p is None else log_normal_diag(h, *p)
            terms.append(log_p - log_normal_diag(h, *q))                    # (k, batch)
        return terms

    def log_weights(self, x: torch.Tensor, k: int = 1) -> torch.Tensor:
        """log w = log p(x, h^1..h^L) - log q(h^1..h^L | x), h ~ q by reparameterization, k samples: x (batch, D) -> (k, batch)."""
        return torch.stack(self.layer_terms(x, k)).sum(0)

    def rates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One draw h ~ q: (log p(x | h^1), [R_1, ..., R_L]), each (batch,), with ELBO estimate = log p(x | h^1) - sum_l R_l.

        R_l = KL(q(h^l | .) || p(h^l | h^{l+1})) in closed form given the drawn h^{l+1} wherever q(h^l | .) does not
        depend on h^{l+1}'s draw: the top layer always, every layer when "factorised" or "top_down". Below the top of
        "bottom_up", h^{l+1} is drawn from q(h^{l+1} | h^l), and R_l is the one-sample log q(h^l | h^{l-1}) - log
        p(h^l | h^{l+1}): its expectation is not a KL and can be negative; only the sum over layers is a KL."""
        x = self._check_x(x)
        hs, qs, ps = self._draw(x, 1)
        rec = self.log_likelihood(x, apply_flat(self.decoder, hs[0]))[0]   # (batch,)
        out = []
        for l, (h, q, p) in enumerate(zip(hs, qs, ps)):
            if p is None:
                r = kl_normal_std(*q)
            elif self.inference in ("factorised", "top_down"):
                r = kl_normal_normal(*q, *p)
            else:
                r = log_normal_diag(h, *q) - log_normal_diag(h, *p)
            out.append(r.reshape(x.shape[0]))                        # (1, batch) or (batch,) -> (batch,)
        return rec, out

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """One-sample ELBO log p(x | h^1) - sum_l R_l (see `rates`: closed-form KLs where the model allows): x (batch, D) -> (batch,)."""
        rec, rates = self.rates(x)
        return rec - torch.stack(rates).sum(0)

    def encode(self, x: torch.Tensor, sample: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(mu, logvar)] of q per layer, bottom first: x (batch, D) -> [((batch, d_l), (batch, d_l))]. Where q(h^l | .)
        depends on another layer's draw (bottom_up: h^{l-1}; top_down: h^{l+1}), that layer is fed at its mean
        (sample=False) or as a draw from q (sample=True)."""
        x = self._check_x(x)
        if self.inference == "top_down":
            ups = self._bottom_up_pass(x)
            out = [None] * self.n_layers
            out[-1] = ups[-1]
            above = reparameterize(*ups[-1]) if sample else ups[-1][0]
            for l in range(self.n_layers - 2, -1, -1):
                out[l] = precision_weighted(*ups[l], *self._prior(l, above))
                above = reparameterize(*out[l]) if sample else out[l][0]
            return out
        out, below = [], x
        for l, net in enumerate(self.recognition):
            mu, logvar = _split(net(self._q_input(l, x, below)))
            out.append((mu, logvar))
            below = reparameterize(mu, logvar) if sample else mu
        return out

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Likelihood parameters of p(x | h^1) (Bernoulli logits or Gaussian mean): h^1 (..., d_1) -> (..., D)."""
        return apply_flat(self.decoder, self._check_z(z, self.latent_dims[0]))

    def sample(self, n: int, mean: bool = True, vary_layer: int | None = None) -> torch.Tensor:
        """Ancestral sample h^L ~ N(0, I), h^l ~ p(h^l | h^{l+1}), x: -> (n, D) pixel means (or draws, mean=False).
        With vary_layer=l (1..L), every layer sits at its conditional mean except h^l, which is drawn."""
        if vary_layer is not None and (isinstance(vary_layer, bool) or not isinstance(vary_layer, int)
                                       or not 1 <= vary_layer <= self.n_layers):
            raise ValueError(f"vary_layer must be a layer number 1..{self.n_layers} (h^1 is the bottom), got {vary_layer!r}")
        top = self.n_layers - 1
        h = self._prior_sample(n, self.latent_dims[top]) if vary_layer in (None, top + 1) else \
            torch.zeros(positive_int("n", n), self.latent_dims[top], device=self.decoder[0].weight.device,
                        dtype=self.decoder[0].weight.dtype)          # h^L at the prior's mean
        for l in range(top - 1, -1, -1):
            mu, logvar = self._prior(l, h)
            h = reparameterize(mu, logvar) if vary_layer in (None, l + 1) else mu
        return self.pixels(self.decode(h), mean)


def config_dict(model: nn.Module) -> dict | None:
    """The model's config as a plain dict of lists and numbers (for checkpoints and fingerprints), or None."""
    config = getattr(model, "config", None)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if config is None:
        return None

    def plain(v):
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v
    return plain(config)
