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
           "WaveNet", "PixelVAE", "mask_dependencies", "raster_before", "colour_mask", "made_masks", "MaskedLinear",
           "MADE", "mu_law_encode", "mu_law_decode", "AudioWaveNet"]

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


def _levels(levels) -> int:
    levels = positive_int("levels", levels)
    if levels < 2:
        raise ValueError(f"levels must be >= 2 (2: binary pixels, 256: 8-bit grey levels), got {levels}")
    return levels


def _shape(shape, dims: int, what: str) -> tuple:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,) * dims
    shape = tuple(shape)
    if len(shape) != dims:
        raise ValueError(f"{what} must be {dims} int(s), got {shape!r}")
    return tuple(positive_int(what, s) for s in shape)


class _ImageModel(nn.Module):
    """What the image models share: log-probabilities from forward's logits and pixel-by-pixel sampling.

    levels = 2: binary pixels, one Bernoulli logit per pixel (B, 1, H, W). levels > 2: pixels hold grey levels
    0..levels-1 (the PixelRNN paper's 256-way softmax), forward gives (B, levels, H, W) logits of a categorical.
    """

    n_classes = None
    levels = 2

    def _logits(self, x, y=None):
        if self.n_classes is None:
            _check_labels(None, y, x.shape[0], x.device)      # an unconditional model refuses labels
            return self(x)
        return self(x, y)

    def _centre(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel values 0..levels-1 mapped to [-1, 1], so that the zero padding differs from a black pixel."""
        return 2 * x / (self.levels - 1) - 1

    @property
    def reach_rows(self) -> int:
        """How many rows above its own an output can depend on: layers * (k // 2)."""
        return self.layers * (self.kernel_size // 2)

    def log_prob(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """log p(x) = sum_ij log p(x_ij | x_<ij) in nats: x (B, 1, H, W) of 0/1 (or of levels 0..levels-1) -> (B,).

        Binary: Bernoulli with logit_ij; levels > 2: log softmax(logits[:, :, i, j])[x_ij].
        """
        x = _check_images(self, x)
        logits = self._logits(x, y)
        if self.levels == 2:
            return log_bernoulli_logits(x.flatten(1), logits.flatten(1))
        return F.log_softmax(logits, 1).gather(1, x.long()).flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, shape=(8, 8), y=None, generator: torch.Generator | None = None,
               given: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:
        """n images (n, 1, H, W) drawn pixel by pixel in raster order, x_ij ~ p(x_ij | x_<ij) (Bernoulli or categorical).

        One forward pass per pixel, each on the `reach_rows + 1` rows that the pixel's row can depend on (the same
        logits as a pass on the whole image, cheaper). y: labels for a class-conditional model. generator: a
        torch.Generator on the model's device (e.g. `gvlib.generator(seed, device)`), else torch's global one.
        given, start: completion, keep the pixels of `given` (n, 1, H, W) before raster position `start`, draw the rest.
        """
        n = positive_int("n", n)
        h, w = _shape(shape, 2, "shape")
        p = next(self.parameters())
        if not 0 <= int(start) <= h * w:
            raise ValueError(f"start must lie in 0..{h * w} (a raster position), got {start!r}")
        training = self.training
        self.eval()
        try:
            y = _check_labels(self.n_classes, y, n, p.device)
            x = torch.zeros(n, 1, h, w, device=p.device, dtype=p.dtype)
            if given is not None:
                given = _check_images(self, given)
                if given.shape != x.shape:
                    raise ValueError(f"given must have shape {tuple(x.shape)}, got {tuple(given.shape)}")
                x.view(n, -1)[:, :start] = given.reshape(n, -1)[:, :start]
            for pos in range(int(start), h * w):
                i, j = divmod(pos, w)
                lo = max(0, i - self.reach_rows)
                logits = self._logits(x[:, :, lo:i + 1], y)[:, :, i - lo, j]          # (n, 1) or (n, levels)
                if self.levels == 2:
                    x[:, 0, i, j] = torch.bernoulli(torch.sigmoid(logits[:, 0]), generator=generator)
                else:
                    x[:, 0, i, j] = torch.multinomial(F.softmax(logits, 1), 1, generator=generator)[:, 0].to(x.dtype)
        finally:
            self.train(training)
        return x


# ============================================================================================== PixelCNN
class PixelCNN(_ImageModel):
    """`layers` masked k x k convolutions 1 -> C -> ... -> C -> 1, the first type A, the rest type B, ELU between.

    forward(x) gives the Bernoulli logits (B, 1, H, W) of x (B, 1, H, W): the logit at (i, j) depends only on
    pixels strictly before (i, j) in raster order, and not on all of them (the blind spot above-right).
    """

    def __init__(self, layers: int = 5, channels: int = 32, kernel_size: int = 3, levels: int = 2):
        super().__init__()
        self.layers, self.channels = positive_int("layers", layers), positive_int("channels", channels)
        self.kernel_size = _kernel(kernel_size)
        self.levels = _levels(levels)
        widths = [1] + [channels] * (layers - 1) + [1 if self.levels == 2 else self.levels]
        self.convs = nn.ModuleList(
            MaskedConv2d(widths[l], widths[l + 1], causal_mask(kernel_size, "A" if l == 0 else "B"))
            for l in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, 1, H, W) (binary) or (B, levels, H, W) of each pixel given the pixels before it: x (B, 1, H, W)."""
        h = self._centre(_check_images(self, x))
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

    def __init__(self, layers: int = 5, channels: int = 32, kernel_size: int = 3, n_classes: int | None = None,
                 levels: int = 2):
        super().__init__()
        self.layers, self.channels = positive_int("layers", layers), positive_int("channels", channels)
        self.kernel_size = _kernel(kernel_size)
        self.levels = _levels(levels)
        self.n_classes = None if n_classes is None else positive_int("n_classes", n_classes)
        self.stack = nn.ModuleList(
            GatedLayer(1 if l == 0 else channels, channels, kernel_size, "A" if l == 0 else "B", self.n_classes)
            for l in range(layers))
        self.out = nn.Conv2d(channels, 1 if self.levels == 2 else self.levels, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, 1, H, W) (binary) or (B, levels, H, W) of each pixel given the pixels before it (and y)."""
        x = self._centre(_check_images(self, x))
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


# ============================================================================================== colour masks
def colour_mask(in_channels: int, out_channels: int, kernel_size: int, mask_type: str) -> torch.Tensor:
    """PixelRNN's RGB mask (out, in, k, k): taps before the centre kept; at the centre, colour(in) < colour(out) for
    type "A", <= for "B"; each layer's channels in three contiguous groups R, G, B (the image: 3 channels)."""
    k, c = _kernel(kernel_size), kernel_size // 2
    choice("mask_type", mask_type, MASK_TYPES)
    n_in, n_out = positive_int("in_channels", in_channels), positive_int("out_channels", out_channels)
    if n_in % 3 or n_out % 3:
        raise ValueError(f"channel counts must be multiples of 3 (R, G, B groups), got {n_in} -> {n_out}")
    mask = causal_mask(k, "A")[None, None].repeat(n_out, n_in, 1, 1)
    colour_in = torch.arange(n_in) // (n_in // 3)                          # (in,) 0 = R, 1 = G, 2 = B
    colour_out = torch.arange(n_out) // (n_out // 3)
    centre = colour_in[None, :] < colour_out[:, None] if mask_type == "A" else colour_in[None, :] <= colour_out[:, None]
    mask[:, :, c, c] = centre.float()
    return mask


# ============================================================================================== MADE
def made_masks(degrees: Sequence[np.ndarray]) -> list[torch.Tensor]:
    """MADE's masks from unit degrees [d_in (D,), d_h1, ..., d_hL]: hidden M[k, j] = d_out[k] >= d_in[j], output
    (D, H_L) M[i, k] = d_in[i] > d_hL[k], so output i depends only on inputs of smaller degree (Germain et al. 2015)."""
    degs = [np.asarray(d) for d in degrees]
    masks = [torch.from_numpy((b[:, None] >= a[None, :]).astype(np.float32)) for a, b in zip(degs[:-1], degs[1:])]
    masks.append(torch.from_numpy((degs[0][:, None] > degs[-1][None, :]).astype(np.float32)))
    return masks


class MaskedLinear(nn.Linear):
    """A linear layer whose weight (out, in) is multiplied by a fixed 0/1 mask on every forward."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor):
        super().__init__(in_features, out_features)
        if mask.shape != (out_features, in_features):
            raise ValueError(f"mask must have shape ({out_features}, {in_features}), got {tuple(mask.shape)}")
        self.register_buffer("mask", mask.detach().clone().to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in) -> (..., out) with the masked weight."""
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Masked autoencoder for distribution estimation (Germain et al. 2015): an MLP whose masks make Bernoulli logit i
    depend only on the inputs before i in `order` (a permutation of 0..D-1; raster order by default).

    Hidden degrees cycle through 1..D-1, so that every hidden layer covers every degree. x (B, D) of 0/1.
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (500,), order=None):
        super().__init__()
        self.dim = positive_int("dim", dim)
        order = np.arange(self.dim) if order is None else np.asarray(order)
        if sorted(order.tolist()) != list(range(self.dim)):
            raise ValueError(f"order must be a permutation of 0..{self.dim - 1}")
        self.order = order
        d_in = np.empty(self.dim, dtype=int)
        d_in[order] = np.arange(1, self.dim + 1)                                # the pixel order[t] comes t-th
        degrees = [d_in] + [np.arange(h) % max(self.dim - 1, 1) + 1 for h in hidden]
        masks = made_masks(degrees)
        widths = [self.dim, *hidden, self.dim]
        self.layers = nn.ModuleList(MaskedLinear(a, b, m) for a, b, m in zip(widths[:-1], widths[1:], masks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits (B, D): logit i from the inputs that come before i in the order."""
        h = 2 * x - 1
        for l, layer in enumerate(self.layers):
            h = layer(h)
            if l < len(self.layers) - 1:
                h = F.elu(h)           # not ReLU: a dependency then shows in the gradient at every input
        return h

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = sum_i log Bern(x_i; sigmoid(logit_i)), in nats: (B, D) -> (B,)."""
        return log_bernoulli_logits(x, self(x))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n vectors (n, D) drawn one coordinate at a time in `order` (D forward passes)."""
        p = next(self.parameters())
        x = torch.zeros(positive_int("n", n), self.dim, device=p.device, dtype=p.dtype)
        for i in self.order:
            x[:, i] = torch.bernoulli(torch.sigmoid(self(x)[:, i]), generator=generator)
        return x


# ============================================================================================== WaveNet with mu-law
def mu_law_encode(x: torch.Tensor, levels: int = 256) -> torch.Tensor:
    """mu-law companding then uniform quantisation: x in [-1, 1] -> int64 codes 0..levels-1, mu = levels - 1,
    f(x) = sign(x) log(1 + mu |x|) / log(1 + mu)."""
    mu = positive_int("levels", levels) - 1
    f = torch.sign(x) * torch.log1p(mu * x.abs().clamp(max=1)) / math.log1p(mu)
    return ((f + 1) / 2 * mu).round().long()


def mu_law_decode(codes: torch.Tensor, levels: int = 256) -> torch.Tensor:
    """The inverse of `mu_law_encode` at each code's centre: codes 0..levels-1 -> x in [-1, 1]."""
    mu = positive_int("levels", levels) - 1
    f = 2 * codes.double() / mu - 1
    return (torch.sign(f) * ((1 + mu) ** f.abs() - 1) / mu).float()


class AudioWaveNet(nn.Module):
    """WaveNet (van den Oord et al. 2016) over mu-law codes: a causal input conv, `cycles` repetitions of dilations
    1, 2, ..., 2^(layers_per_cycle - 1), each a gated residual block with a skip output, then
    ReLU -> 1x1 -> ReLU -> 1x1 to a softmax over `levels` codes. n_classes: global conditioning, a learned bias
    per class in every gate. forward(codes (B, T), y) -> logits (B, levels, T) of x_t given x_{t-R..t-1} (and y).
    """

    def __init__(self, levels: int = 256, channels: int = 32, skip_channels: int = 64, layers_per_cycle: int = 6,
                 cycles: int = 2, n_classes: int | None = None):
        super().__init__()
        self.levels = _levels(levels)
        self.channels = positive_int("channels", channels)
        self.n_classes = None if n_classes is None else positive_int("n_classes", n_classes)
        self.dilations = [2 ** l for l in range(positive_int("layers_per_cycle", layers_per_cycle))] * \
            positive_int("cycles", cycles)
        self.embed = nn.Embedding(self.levels, channels)                   # the input code, as the causal conv's input
        self.causal = nn.Conv1d(channels, channels, 2)                     # reads x_{t-2}, x_{t-1} (after the shift)
        self.dilated = nn.ModuleList(nn.Conv1d(channels, 2 * channels, 2, dilation=d) for d in self.dilations)
        self.cond = nn.ModuleList(nn.Embedding(self.n_classes, 2 * channels) for _ in self.dilations) \
            if self.n_classes else None
        self.residual = nn.ModuleList(nn.Conv1d(channels, channels, 1) for _ in self.dilations)
        self.skip = nn.ModuleList(nn.Conv1d(channels, skip_channels, 1) for _ in self.dilations)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv1d(skip_channels, skip_channels, 1), nn.ReLU(),
                                  nn.Conv1d(skip_channels, self.levels, 1))
        self.receptive_field = 2 + sum(self.dilations)                      # x_{t-R} .. x_{t-1}

    def _bias(self, l: int, y):
        return 0 if self.cond is None else self.cond[l](y)[:, :, None]     # (B, 2C, 1)

    def forward(self, codes: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, levels, T) of code t given codes t-R..t-1 (and y): codes (B, T) int64."""
        y = _check_labels(self.n_classes, y, codes.shape[0], codes.device)
        e = self.embed(codes).transpose(1, 2)                               # (B, C, T)
        h = self.causal(F.pad(e, (2, 0))[..., :-1])                        # shift by one: t sees e_{t-2}, e_{t-1}
        skips = 0
        for l, d in enumerate(self.dilations):
            g = _gate(self.dilated[l](F.pad(h, (d, 0))) + self._bias(l, y))  # (B, C, T): left padding only, causal
            h = h + self.residual[l](g)
            skips = skips + self.skip[l](g)
        return self.head(skips)

    def log_prob(self, codes: torch.Tensor, y=None) -> torch.Tensor:
        """log p(x) = sum_t log softmax(logits_t)[x_t], in nats: codes (B, T) -> (B,)."""
        return F.log_softmax(self(codes, y), 1).gather(1, codes[:, None]).squeeze(1).sum(1)

    @torch.no_grad()
    def generate(self, n: int, length: int, y=None, generator: torch.Generator | None = None, cached: bool = True,
                 return_logits: bool = False):
        """n sequences of codes (n, length) drawn step by step. cached=False: one forward pass over the whole prefix
        per step (O(T^2)); cached=True: each layer keeps the states it will read again (Fast WaveNet, Paine et al.
        2016), one column per step (O(T)). return_logits: also the (n, levels, length) logits used."""
        n, length = positive_int("n", n), positive_int("length", length)
        p = next(self.parameters())
        y = _check_labels(self.n_classes, y, n, p.device)
        codes = torch.zeros(n, length, dtype=torch.long, device=p.device)
        all_logits = torch.zeros(n, self.levels, length, device=p.device, dtype=p.dtype) if return_logits else None
        C = self.channels
        if cached:   # queue[l]: the last d_l inputs of dilated layer l; e_q: the last two embedded inputs
            e_q = torch.zeros(n, C, 2, device=p.device, dtype=p.dtype)
            queues = [torch.zeros(n, C, d, device=p.device, dtype=p.dtype) for d in self.dilations]
            biases = [self._bias(l, y) for l in range(len(self.dilations))]
        for t in range(length):
            if cached:
                h = self.causal(e_q)                                           # (n, C, 1): reads x_{t-2}, x_{t-1}
                skips = 0
                for l, conv in enumerate(self.dilated):
                    past = queues[l][:, :, :1]                                 # this layer's input d steps ago
                    queues[l] = torch.cat([queues[l][:, :, 1:], h], 2)          # push the current input
                    g = _gate(F.conv1d(torch.cat([past, h], 2), conv.weight, conv.bias) + biases[l])  # taps d apart
                    h = h + self.residual[l](g)
                    skips = skips + self.skip[l](g)
                logits = self.head(skips)[:, :, 0]
            else:
                logits = self(codes[:, :t + 1], y)[:, :, t]
            codes[:, t] = torch.multinomial(F.softmax(logits, 1), 1, generator=generator)[:, 0]
            if cached:
                e_q = torch.cat([e_q[:, :, 1:], self.embed(codes[:, t])[:, :, None]], 2)
            if return_logits:
                all_logits[:, :, t] = logits
        return (codes, all_logits) if return_logits else codes
