"""Autoregressive models: PixelCNN, gated PixelCNN, WaveNet, and a PixelVAE, all with exact causal structure.

    p(x) = prod_i p(x_i | x_<i)      (raster order for images: row by row, left to right)

Every model here returns, for each position, the Bernoulli logit of that position given the positions
strictly before it, and the structure is enforced by masks (images) or left padding (sequences):

- `PixelCNN(layers, channels, kernel_size)`: a stack of masked k x k convolutions, the first of type A (the
  centre tap masked), the others of type B (centre kept). It has a blind spot: pixels above and to the right
  that no stack of such layers reaches.
- `GatedPixelCNN(layers, channels, kernel_size, n_classes)`: a vertical stack (rows strictly above) and a
  horizontal stack (the current row, to the left), linked vertical -> horizontal, gated activations
  tanh(W_f * h) * sigmoid(W_g * h), residual connections on the horizontal stack; optionally class-conditional.
- `WaveNet(layers, channels, kernel_size)`: dilated causal 1-D convolutions, dilations 1, 2, 4, ...
- `PixelVAE(...)`: a VAE whose decoder is a small PixelCNN, with the protocol of `gvlib.models`.

Images are (B, 1, H, W) of 0/1 floats and sequences (B, 1, T). The models centre their inputs (2x - 1), so
the zero padding outside the image differs from a black pixel. `mask_dependencies(model, shape)` predicts,
from the models' masks alone (no weights, no autograd), which inputs each output depends on; the tests and
chapter 09 compare it with gradients and with perturbations of the inputs. Nothing here names a device.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ._validate import choice, positive_int
from .distributions import kl_normal_std, log_bernoulli_logits, log_normal_diag, log_standard_normal, reparameterize

__all__ = ["causal_mask", "vertical_mask", "horizontal_mask", "MaskedConv2d", "PixelCNN", "GatedPixelCNN",
           "WaveNet", "PixelVAE", "mask_dependencies", "raster_before"]

MASK_TYPES = ("A", "B")


# ============================================================================================== masks
def _kernel(kernel_size) -> int:
    k = positive_int("kernel_size", kernel_size)
    if k % 2 == 0:
        raise ValueError(f"kernel_size must be odd (the mask needs a centre tap), got {k}")
    return k


def causal_mask(kernel_size: int, mask_type: str) -> torch.Tensor:
    """PixelCNN's (k, k) mask: 1 on the rows above the centre and left of it; the centre too for type "B", not "A"."""
    k, c = _kernel(kernel_size), kernel_size // 2
    choice("mask_type", mask_type, MASK_TYPES)
    mask = torch.zeros(k, k)
    mask[:c, :] = 1
    mask[c, :c + (mask_type == "B")] = 1
    return mask


def vertical_mask(kernel_size: int, mask_type: str) -> torch.Tensor:
    """The vertical stack's (k, k) mask: the rows above the centre, and the centre row for type "B" (never below)."""
    k, c = _kernel(kernel_size), kernel_size // 2
    choice("mask_type", mask_type, MASK_TYPES)
    mask = torch.zeros(k, k)
    mask[:c + (mask_type == "B"), :] = 1
    return mask


def horizontal_mask(kernel_size: int, mask_type: str) -> torch.Tensor:
    """The horizontal stack's (1, k) mask: the taps left of the centre, and the centre for type "B"."""
    k, c = _kernel(kernel_size), kernel_size // 2
    choice("mask_type", mask_type, MASK_TYPES)
    mask = torch.zeros(1, k)
    mask[0, :c + (mask_type == "B")] = 1
    return mask


class MaskedConv2d(nn.Conv2d):
    """A 'same'-padded convolution whose kernel is multiplied by a fixed 0/1 `mask` (kh, kw) on every forward."""

    def __init__(self, in_channels: int, out_channels: int, mask: torch.Tensor):
        if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or any(s % 2 == 0 for s in mask.shape):
            raise ValueError(f"mask must be a 2-D tensor of odd sizes (kh, kw), got "
                             f"{tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__}")
        kh, kw = mask.shape
        super().__init__(positive_int("in_channels", in_channels), positive_int("out_channels", out_channels),
                         (kh, kw), padding=(kh // 2, kw // 2))
        self.register_buffer("mask", mask.detach().clone().to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, H, W) -> (B, out, H, W), the kernel masked: output (i, j) sees only the mask's taps around (i, j)."""
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


# ============================================================================================== checks
def _check_images(model: nn.Module, x) -> torch.Tensor:
    """x as (B, 1, H, W) in the parameters' dtype (ints and bools are cast, other floats refused), on their device."""
    p = next(model.parameters())
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (B, 1, H, W), got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 1 or x.shape[0] < 1:
        raise ValueError(f"x must have shape (B, 1, H, W) (binary images, one channel), got {tuple(x.shape)}")
    return _like_parameters(x, p)


def _like_parameters(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """x on p's device (else an error) in p's dtype: ints and bools are cast, other floats refused."""
    if x.device != p.device:
        raise ValueError(f"x is on {x.device} but the model's parameters are on {p.device}; move one of them")
    if not torch.is_floating_point(x):
        return x.to(p.dtype)
    if x.dtype != p.dtype:
        raise TypeError(f"x is {x.dtype} but the model's parameters are {p.dtype}; convert one of them")
    return x


def _check_labels(n_classes, y, n: int, device) -> torch.Tensor | None:
    if n_classes is None:
        if y is not None:
            raise ValueError("this model is unconditional (n_classes=None) but y was given")
        return None
    if y is None:
        raise ValueError(f"this model is class-conditional (n_classes={n_classes}): pass y, int labels of shape ({n},)")
    if isinstance(y, int) and not isinstance(y, bool):
        y = torch.full((n,), y, dtype=torch.long, device=device)
    if not isinstance(y, torch.Tensor) or y.shape != (n,) or y.dtype not in (torch.int64, torch.int32):
        got = f"{tuple(y.shape)} {y.dtype}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y must be int labels of shape ({n},) (or one int for all), got {got}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}, got {int(y.min())}..{int(y.max())}")
    return y.to(device).long()


def _shape(shape, dims: int, what: str) -> tuple:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,) * dims
    shape = tuple(shape)
    if len(shape) != dims:
        raise ValueError(f"{what} must be {dims} int(s), got {shape!r}")
    return tuple(positive_int(what, s) for s in shape)


class _ImageModel(nn.Module):
    """What the image models share: log-probabilities from forward's logits and pixel-by-pixel sampling."""

    n_classes = None

    def _logits(self, x, y=None):
        if self.n_classes is None:
            _check_labels(None, y, x.shape[0], x.device)      # an unconditional model refuses labels
            return self(x)
        return self(x, y)

    def log_prob(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """log p(x) = sum_ij log Bern(x_ij; sigmoid(logit_ij(x_<ij))), in nats: x (B, 1, H, W) of 0/1 -> (B,)."""
        x = _check_images(self, x)
        logits = self._logits(x, y)
        return log_bernoulli_logits(x.flatten(1), logits.flatten(1))

    @torch.no_grad()
    def sample(self, n: int, shape=(8, 8), y=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (n, 1, H, W) of 0/1 drawn pixel by pixel in raster order, x_ij ~ Bern(sigmoid(logit_ij(x_<ij))).

        One forward pass per pixel (H * W passes). y: labels for a class-conditional model. generator: a
        torch.Generator on the model's device (e.g. `gvlib.generator(seed, device)`), else torch's global one.
        """
        n = positive_int("n", n)
        h, w = _shape(shape, 2, "shape")
        p = next(self.parameters())
        training = self.training
        self.eval()
        try:
            y = _check_labels(self.n_classes, y, n, p.device)
            x = torch.zeros(n, 1, h, w, device=p.device, dtype=p.dtype)
            for i in range(h):
                for j in range(w):
                    probs = torch.sigmoid(self._logits(x, y)[:, 0, i, j])
                    x[:, 0, i, j] = torch.bernoulli(probs, generator=generator)
        finally:
            self.train(training)
        return x


# ============================================================================================== PixelCNN
class PixelCNN(_ImageModel):
    """`layers` masked k x k convolutions 1 -> C -> ... -> C -> 1, the first type A, the rest type B, ELU between.

    forward(x) gives the Bernoulli logits (B, 1, H, W) of x (B, 1, H, W): the logit at (i, j) depends only on
    pixels strictly before (i, j) in raster order, and not on all of them (the blind spot above-right).
    """

    def __init__(self, layers: int = 5, channels: int = 32, kernel_size: int = 3):
        super().__init__()
        self.layers, self.channels = positive_int("layers", layers), positive_int("channels", channels)
        self.kernel_size = _kernel(kernel_size)
        widths = [1] + [channels] * (layers - 1) + [1]
        self.convs = nn.ModuleList(
            MaskedConv2d(widths[l], widths[l + 1], causal_mask(kernel_size, "A" if l == 0 else "B"))
            for l in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits (B, 1, H, W) of each pixel given the pixels before it: x (B, 1, H, W) of 0/1."""
        h = 2 * _check_images(self, x) - 1
        for l, conv in enumerate(self.convs):
            h = conv(h)
            if l < self.layers - 1:
                h = F.elu(h)
        return h


# ============================================================================================== gated PixelCNN
def _gate(h: torch.Tensor) -> torch.Tensor:
    """tanh(f) * sigmoid(g) for h = [f, g] split along the channels: (B, 2C, ...) -> (B, C, ...)."""
    f, g = h.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


class GatedLayer(nn.Module):
    """One gated PixelCNN layer: (v, h) -> (v', h'), with an optional class bias added to both pre-activations."""

    def __init__(self, in_channels: int, channels: int, kernel_size: int, mask_type: str, n_classes=None):
        super().__init__()
        self.mask_type = mask_type
        self.vertical = MaskedConv2d(in_channels, 2 * channels, vertical_mask(kernel_size, mask_type))
        self.horizontal = MaskedConv2d(in_channels, 2 * channels, horizontal_mask(kernel_size, mask_type))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)
        self.class_bias = nn.Embedding(n_classes, 4 * channels) if n_classes is not None else None

    def forward(self, v: torch.Tensor, h: torch.Tensor, y: torch.Tensor | None = None):
        """v, h (B, C_in, H, W) -> v', h' (B, C, H, W): v' sees rows above only, h' adds the row to the left."""
        v_pre = self.vertical(v)                                # (B, 2C, H, W): rows above (and, for B, this row of v)
        h_pre = self.horizontal(h) + self.v_to_h(v_pre)         # the link: v at (i, j) holds rows < i only
        if self.class_bias is not None:
            bv, bh = self.class_bias(y)[:, :, None, None].chunk(2, dim=1)  # (B, 2C, 1, 1) each
            v_pre, h_pre = v_pre + bv, h_pre + bh
        h_new = self.h_out(_gate(h_pre))
        if self.mask_type == "B":                               # residual (the first layer changes the width)
            h_new = h_new + h
        return _gate(v_pre), h_new


class GatedPixelCNN(_ImageModel):
    """Gated PixelCNN (van den Oord et al. 2016): `layers` gated layers of C channels, then ELU and a 1x1 to logits.

    The vertical stack's features at row i depend on rows < i only (its first layer masks the centre row), the
    horizontal stack's at (i, j) on row i left of j and on the vertical stack at (i, j): the logit at (i, j)
    depends on every pixel before (i, j) within `layers` rows above and `layers * (k // 2)` columns either side
    (left only on row i), and on no later one. n_classes: forward(x, y) with int labels y (B,) conditions on y.
    """

    def __init__(self, layers: int = 5, channels: int = 32, kernel_size: int = 3, n_classes: int | None = None):
        super().__init__()
        self.layers, self.channels = positive_int("layers", layers), positive_int("channels", channels)
        self.kernel_size = _kernel(kernel_size)
        self.n_classes = None if n_classes is None else positive_int("n_classes", n_classes)
        self.stack = nn.ModuleList(
            GatedLayer(1 if l == 0 else channels, channels, kernel_size, "A" if l == 0 else "B", self.n_classes)
            for l in range(layers))
        self.out = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Bernoulli logits (B, 1, H, W) of each pixel given the pixels before it (and y): x (B, 1, H, W) of 0/1."""
        x = 2 * _check_images(self, x) - 1
        y = _check_labels(self.n_classes, y, x.shape[0], x.device)
        v = h = x
        for layer in self.stack:
            v, h = layer(v, h, y)
        return self.out(F.elu(h))


# ============================================================================================== WaveNet
class WaveNet(nn.Module):
    """Dilated causal 1-D convolutions (van den Oord et al. 2016), dilations 1, 2, 4, ..., 2^(L-1), gated, residual.

    forward(x) gives Bernoulli logits (B, 1, T) of x (B, 1, T): the input is shifted right by one step, and every
    convolution is padded on the left only, so the output at t depends on x_{t-1}, ..., x_{t-R} exactly,
    R = `receptive_field` = (k - 1)(2^L - 1) + 1 (2^L for k = 2).
    """

    def __init__(self, layers: int = 4, channels: int = 16, kernel_size: int = 2):
        super().__init__()
        self.layers, self.channels = positive_int("layers", layers), positive_int("channels", channels)
        self.kernel_size = positive_int("kernel_size", kernel_size)
        if self.kernel_size < 2:
            raise ValueError(f"kernel_size must be >= 2 (a kernel of 1 sees only the previous step), got {kernel_size}")
        self.dilations = [2 ** l for l in range(layers)]
        self.convs = nn.ModuleList(nn.Conv1d(1 if l == 0 else channels, 2 * channels, kernel_size, dilation=d)
                                   for l, d in enumerate(self.dilations))
        self.mix = nn.ModuleList(nn.Conv1d(channels, channels, 1) for _ in self.dilations)
        self.out = nn.Conv1d(channels, 1, 1)
        self.receptive_field = (self.kernel_size - 1) * (2 ** layers - 1) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits (B, 1, T) of x_t given x_{t-R..t-1}: x (B, 1, T) of 0/1."""
        x = self._check_x(x)
        h = F.pad(2 * x - 1, (1, 0))[..., :-1]                 # shift right: position t now holds x_{t-1}
        for l, (conv, mix, d) in enumerate(zip(self.convs, self.mix, self.dilations)):
            g = _gate(conv(F.pad(h, ((self.kernel_size - 1) * d, 0))))  # left padding only: causal
            h = mix(g) + (h if l > 0 else 0)
        return self.out(F.elu(h))

    def _check_x(self, x) -> torch.Tensor:
        """x as (B, 1, T) in the parameters' dtype (ints and bools are cast, other floats refused), on their device."""
        p = next(self.parameters())
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[1] != 1:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (B, 1, T) (binary sequences), got {got}")
        return _like_parameters(x, p)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = sum_t log Bern(x_t; sigmoid(logit_t(x_<t))), in nats: x (B, 1, T) -> (B,)."""
        x = self._check_x(x)
        return log_bernoulli_logits(x.flatten(1), self(x).flatten(1))

    @torch.no_grad()
    def sample(self, n: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n sequences (n, 1, T) drawn step by step, x_t ~ Bern(sigmoid(logit_t(x_<t)))."""
        n, length = positive_int("n", n), positive_int("length", length)
        p = next(self.parameters())
        x = torch.zeros(n, 1, length, device=p.device, dtype=p.dtype)
        for t in range(length):
            x[:, 0, t] = torch.bernoulli(torch.sigmoid(self(x)[:, 0, t]), generator=generator)
        return x


# ============================================================================================== PixelVAE
class PixelVAE(nn.Module):
    """A VAE whose decoder p(x | z) = prod_ij p(x_ij | x_<ij, z) is a small PixelCNN (Gulrajani et al. 2017).

    q(z | x) = N(mu, diag sigma^2) from an MLP; z is mapped (MLP) to one bias map per PixelCNN layer, added to
    that layer's pre-activation. `decoder_layers=0` gives a plain VAE (logits from z alone). The protocol of
    `gvlib.models` on flat inputs x (batch, H*W): `log_weights(x, k)`, `elbo(x)`, `encode(x)`, `latent_dims`.
    """

    def __init__(self, image_shape=(8, 8), z_dim: int = 8, hidden: Sequence[int] = (128,), decoder_layers: int = 3,
                 channels: int = 16, kernel_size: int = 3):
        super().__init__()
        from .models import mlp

        self.image_shape = _shape(image_shape, 2, "image_shape")
        self.x_dim = math.prod(self.image_shape)
        self.z_dim = positive_int("z_dim", z_dim)
        self.latent_dims = [self.z_dim]
        self.likelihood = "bernoulli"
        self.decoder_layers = int(decoder_layers)
        if self.decoder_layers < 0:
            raise ValueError(f"decoder_layers must be >= 0, got {decoder_layers!r}")
        k = _kernel(kernel_size)
        widths = [1] + [channels] * (self.decoder_layers - 1) + [1] if self.decoder_layers else [1, 1]
        self.encoder = mlp([self.x_dim, *hidden, 2 * self.z_dim], "elu")
        self.convs = nn.ModuleList(
            MaskedConv2d(widths[l], widths[l + 1], causal_mask(k, "A" if l == 0 else "B"))
            for l in range(self.decoder_layers))
        self._widths = widths[1:]                                 # channels of each layer's output (last: 1)
        self.z_to_bias = mlp([self.z_dim, *tuple(hidden)[::-1], sum(self._widths) * self.x_dim], "elu")

    def encode(self, x: torch.Tensor, sample: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(mu, logvar)] of q(z | x): x (batch, D) -> [((batch, d), (batch, d))]."""
        mu, logvar = self.encoder(self._check_x(x)).chunk(2, dim=-1)
        return [(mu, logvar)]

    def decode_logits(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Logits of p(x_ij | x_<ij, z): x (n, D), z (n, d) -> (n, D)."""
        n = x.shape[0]
        biases = self.z_to_bias(z).split([c * self.x_dim for c in self._widths], dim=-1)
        biases = [b.reshape(n, c, *self.image_shape) for b, c in zip(biases, self._widths)]
        if not self.convs:
            return biases[0].reshape(n, self.x_dim)
        h = 2 * x.reshape(n, 1, *self.image_shape) - 1
        for l, (conv, b) in enumerate(zip(self.convs, biases)):
            h = conv(h) + b
            if l < len(self.convs) - 1:
                h = F.elu(h)
        return h.reshape(n, self.x_dim)

    def log_weights(self, x: torch.Tensor, k: int = 1) -> torch.Tensor:
        """log w = log p(x | z) + log p(z) - log q(z | x), z ~ q, k samples: x (batch, D) -> (k, batch)."""
        x = self._check_x(x)
        [(mu, logvar)] = self.encode(x)
        z = reparameterize(mu, logvar, positive_int("k", k))                # (k, batch, d)
        xk = x.expand(k, *x.shape)                                           # (k, batch, D)
        logits = self.decode_logits(xk.reshape(-1, self.x_dim), z.reshape(-1, self.z_dim)).reshape(xk.shape)
        return log_bernoulli_logits(xk, logits) + log_standard_normal(z) - log_normal_diag(z, mu, logvar)

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """One-sample ELBO log p(x | z) - KL(q(z | x) || N(0, I)), KL in closed form: x (batch, D) -> (batch,)."""
        return self.elbo_terms(x)[0]

    def elbo_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ELBO, KL) per input, one z ~ q(z | x): x (batch, D) -> ((batch,), (batch,))."""
        x = self._check_x(x)
        [(mu, logvar)] = self.encode(x)
        z = reparameterize(mu, logvar)
        kl = kl_normal_std(mu, logvar)
        return log_bernoulli_logits(x, self.decode_logits(x, z)) - kl, kl

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (n, D) of 0/1: z ~ N(0, I), then x pixel by pixel from p(x_ij | x_<ij, z)."""
        p = next(self.parameters())
        z = torch.randn(positive_int("n", n), self.z_dim, device=p.device, dtype=p.dtype, generator=generator)
        x = torch.zeros(n, self.x_dim, device=p.device, dtype=p.dtype)
        if not self.convs:                                         # no autoregression: every pixel at once
            return torch.bernoulli(torch.sigmoid(self.decode_logits(x, z)), generator=generator)
        for i in range(self.x_dim):
            x[:, i] = torch.bernoulli(torch.sigmoid(self.decode_logits(x, z)[:, i]), generator=generator)
        return x

    def _check_x(self, x) -> torch.Tensor:
        p = next(self.parameters())
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.x_dim:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (batch, {self.x_dim}) (flattened images), got {got}")
        if x.device != p.device:
            raise ValueError(f"x is on {x.device} but the model's parameters are on {p.device}; move one of them")
        if torch.is_floating_point(x) and x.dtype != p.dtype:
            raise TypeError(f"x is {x.dtype} but the model's parameters are {p.dtype}; convert one of them")
        return x.to(p.dtype)


# ============================================================================================== dependency sets
def raster_before(shape) -> np.ndarray:
    """before[p, q] = True iff position q comes strictly before p in raster order: (P, P) bool, P = prod(shape)."""
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    idx = np.arange(math.prod(positive_int("shape", s) for s in dims))
    return idx[None, :] < idx[:, None]


def _taps(mask: torch.Tensor) -> list[tuple[int, int]]:
    """Offsets (di, dj) from the centre of the taps a 2-D mask keeps."""
    m = mask.detach().to("cpu").numpy()
    ci, cj = m.shape[0] // 2, m.shape[1] // 2
    return [(int(a) - ci, int(b) - cj) for a, b in zip(*np.nonzero(m))]


def _spread(dep: np.ndarray, taps) -> np.ndarray:
    """out[:, i, j] = OR over taps (di, dj) of dep[:, i + di, j + dj] (False outside the grid): (P, H, W) bool."""
    _, h, w = dep.shape
    out = np.zeros_like(dep)
    for di, dj in taps:
        src_i, dst_i = slice(max(di, 0), h + min(di, 0)), slice(max(-di, 0), h + min(-di, 0))
        src_j, dst_j = slice(max(dj, 0), w + min(dj, 0)), slice(max(-dj, 0), w + min(-dj, 0))
        out[:, dst_i, dst_j] |= dep[:, src_i, src_j]
    return out


def _spread_1d(dep: np.ndarray, offsets) -> np.ndarray:
    """out[:, t] = OR over offsets o <= 0 of dep[:, t + o]: (P, T) bool."""
    _, t = dep.shape
    out = np.zeros_like(dep)
    for o in offsets:
        out[:, -o:] |= dep[:, :t + o] if o < 0 else dep
    return out


def mask_dependencies(model: nn.Module, shape) -> np.ndarray:
    """Which inputs each output can depend on, read from the model's masks and wiring only (no weights, no autograd).

    Returns dep (P, P) bool with dep[p, q] = True iff output position p has a path from input position q, positions
    in raster order (P = H * W for images of `shape` (H, W), P = T for a WaveNet and `shape` T). A kept tap is
    assumed to carry a non-zero weight (true for random weights): dep is the structural dependency set, which
    gradients and perturbations of the inputs reveal for generic weights.
    """
    if isinstance(model, WaveNet):
        (t,) = _shape(shape, 1, "shape")
        dep = _spread_1d(np.eye(t, dtype=bool), [-1])                           # the shift by one step
        for l, d in enumerate(model.dilations):
            new = _spread_1d(dep, [-(model.kernel_size - 1 - m) * d for m in range(model.kernel_size)])
            dep = new | dep if l > 0 else new                                    # residual after the first layer
        return dep.T.copy()
    h, w = _shape(shape, 2, "shape")
    eye = np.eye(h * w, dtype=bool).reshape(h * w, h, w)                         # dep[q] = where input q has reached
    if isinstance(model, PixelCNN):
        dep = eye
        for conv in model.convs:
            dep = _spread(dep, _taps(conv.mask))
    elif isinstance(model, GatedPixelCNN):
        v = hz = eye
        for layer in model.stack:
            v_new = _spread(v, _taps(layer.vertical.mask))
            h_new = _spread(hz, _taps(layer.horizontal.mask)) | v_new           # the vertical -> horizontal link
            if layer.mask_type == "B":
                h_new |= hz                                                      # residual
            v, hz = v_new, h_new
        dep = hz
    elif isinstance(model, PixelVAE):
        dep = eye
        for conv in model.convs:
            dep = _spread(dep, _taps(conv.mask))
        if not model.convs:
            dep = np.zeros_like(eye)
    else:
        raise TypeError(f"mask_dependencies knows PixelCNN, GatedPixelCNN, PixelVAE and WaveNet, got {type(model).__name__}")
    return dep.reshape(h * w, h * w).T.copy()
