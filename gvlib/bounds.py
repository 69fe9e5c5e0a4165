"""Bounds on log p(x) from importance weights: the ELBO, the IWAE bound, log-likelihood estimates, and
diagnostics of a trained model (effective sample size, active units).

Log-weights are log w_i = log p(x, h_i) - log q(h_i | x) with h_i ~ q(h | x), i = 1..k, stacked along
`dim` (0 by default, the layout of `model.log_weights(x, k)`: (k, batch)). Everything is done in log
space with `torch.logsumexp`, where the inputs live.

Models are anything with the protocol of `gvlib.models`: `log_weights(x, k)` -> (k, batch),
`encode(x)` -> [(mu, logvar)] per stochastic layer (bottom first), `latent_dims`.
"""
from __future__ import annotations

import math

import torch

from ._validate import nonnegative_number, positive_int

__all__ = [
    "elbo",
    "iwae_bound",
    "normalized_weights",
    "effective_sample_size",
    "estimate_log_likelihood",
    "posterior_mean_variances",
    "active_units",
]


# ----------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------

def _check_log_w(log_w, dim: int) -> int:
    """Validate log-weights and the sample dim; returns the dim as a non-negative index."""
    if not isinstance(log_w, torch.Tensor):
        raise TypeError(f"log_w must be a torch.Tensor of log-weights, got {type(log_w).__name__}")
    if not torch.is_floating_point(log_w):
        raise TypeError(f"log_w must be a floating-point tensor, got dtype {log_w.dtype}")
    if log_w.dim() == 0:
        raise ValueError("log_w must have at least one dim (the k samples), got a scalar; "
                         "e.g. pass log_w of shape (k, batch) with dim=0")
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if not -log_w.dim() <= dim < log_w.dim():
        raise ValueError(f"dim={dim} is out of range for log_w of shape {tuple(log_w.shape)}")
    dim = dim % log_w.dim()
    if log_w.shape[dim] < 1:
        raise ValueError(f"need k >= 1 samples along dim {dim}, got log_w of shape {tuple(log_w.shape)} "
                         "(an empty sample dim)")
    return dim


# ----------------------------------------------------------------------------------------------
# bounds and weights
# ----------------------------------------------------------------------------------------------

def elbo(log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Monte Carlo ELBO, the mean log-weight 1/k sum_i log w_i over `dim`: (k, ...) -> (...)."""
    dim = _check_log_w(log_w, dim)
    return log_w.mean(dim)


def iwae_bound(log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """IWAE bound L_k = log 1/k sum_i w_i = logsumexp_i(log w_i) - log k over `dim`: (k, ...) -> (...)."""
    dim = _check_log_w(log_w, dim)
    k = log_w.shape[dim]
    if k == 1:  # L_1 is the ELBO: return the log-weight itself, bit for bit
        return log_w.squeeze(dim)
    return torch.logsumexp(log_w, dim) - math.log(k)


def normalized_weights(log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Self-normalized importance weights w_i / sum_j w_j = softmax(log w) over `dim`: (k, ...) -> (k, ...)."""
    dim = _check_log_w(log_w, dim)
    return torch.softmax(log_w, dim)


def effective_sample_size(log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """ESS = (sum_i w_i)^2 / sum_i w_i^2 = exp(2 logsumexp(log w) - logsumexp(2 log w)), in [1, k]: (k, ...) -> (...)."""
    dim = _check_log_w(log_w, dim)
    return torch.exp(2.0 * torch.logsumexp(log_w, dim) - torch.logsumexp(2.0 * log_w, dim))


# ----------------------------------------------------------------------------------------------
# log-likelihood estimate
# ----------------------------------------------------------------------------------------------

class _eval_mode:
    """Put a module in eval mode (batch norm uses its running statistics) and restore its mode after."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.modes = [(m, m.training) for m in self.model.modules()] if hasattr(self.model, "modules") else []
        if hasattr(self.model, "eval"):
            self.model.eval()
        return self.model

    def __exit__(self, *exc):
        for m, training in self.modes:
            m.training = training
        return False


def _check_batch(name: str, x, n: int | None = None):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"{name} must have a non-empty leading batch dim, got shape {tuple(x.shape)}")
    if n is not None and x.shape[0] != n:
        raise ValueError(f"{name} must have one row per input: expected {n} rows, got shape {tuple(x.shape)}")


def estimate_log_likelihood(model, x: torch.Tensor, k: int = 5000, chunk: int = 1000,
                            batch_size: int = 4, y: torch.Tensor | None = None) -> torch.Tensor:
    """Importance-sampled log p(x) ~ L_k(x) = logsumexp_i log w_i - log k, i = 1..k: x (batch, D) -> (batch,).

    Calls `model.log_weights(x_b, chunk)` on `batch_size` inputs at a time (`log_weights(x_b, chunk, y=y_b)`
    when `y` is given, e.g. for a ConditionalVAE: then it is log p(x | y)), so each call runs the encoder
    once per input and the decoder on chunk x batch_size samples: peak memory follows chunk x batch_size,
    not k or len(x). The chunks' logsumexps are combined exactly. The default, 4,000 samples per call
    (buffers of about 12 MB), was the fastest setting measured on a 2-core CPU (with the malloc settings the
    course's Makefile exports, see the README); on a GPU, larger chunks (e.g. chunk=5000, batch_size=20) use
    the device better. Runs under torch.no_grad with the model
    in eval mode (restored after); returns float32/64 as the model computes, on x's device.
    """
    k = positive_int("k", k)
    chunk = positive_int("chunk", chunk)
    batch_size = positive_int("batch_size", batch_size)
    _check_batch("x", x)
    n = x.shape[0]
    if y is not None:
        _check_batch("y", y, n)
    out = []
    with torch.no_grad(), _eval_mode(model):
        for start in range(0, n, batch_size):
            xb = x[start:start + batch_size]
            yb = None if y is None else y[start:start + batch_size]
            partial = []  # logsumexp of each chunk of samples: (n_chunks, b)
            for s in range(0, k, chunk):
                kk = min(chunk, k - s)
                lw = model.log_weights(xb, kk) if yb is None else model.log_weights(xb, kk, y=yb)
                if lw.shape != (kk, xb.shape[0]):
                    raise ValueError(f"model.log_weights(x, k={kk}) must return shape (k, batch) = "
                                     f"{(kk, xb.shape[0])}, got {tuple(lw.shape)}")
                partial.append(torch.logsumexp(lw, 0))
            out.append(torch.logsumexp(torch.stack(partial), 0) - math.log(k))
    return torch.cat(out)


# ----------------------------------------------------------------------------------------------
# active units
# ----------------------------------------------------------------------------------------------

def _posterior_means(model, xb, n_samples, yb):
    """E_q[h_l | x] per layer: (b, d_l) each. One encode for a single layer; Monte Carlo over the other layers' draws otherwise."""
    kwargs = {} if yb is None else {"y": yb}
    layers = model.encode(xb, **kwargs)
    inference = getattr(model, "inference", "bottom_up")
    if len(layers) == 1 or inference == "factorised":
        return [mu for mu, _ in layers]
    # Bottom-up recognition q(h_l | h_{l-1}): E_q[h_l | x] = E_{h_{l-1} ~ q}[mu_l(h_{l-1})]; top-down q(h_l | h_{l+1}, x):
    # E_{h_{l+1} ~ q}[mu_l(h_{l+1}, x)]. Averaged over draws.
    sums = [mu.clone() for mu, _ in model.encode(xb, sample=True, **kwargs)]
    for _ in range(n_samples - 1):
        for acc, (mu, _) in zip(sums, model.encode(xb, sample=True, **kwargs)):
            acc += mu
    means = [acc / n_samples for acc in sums]
    exact = -1 if inference == "top_down" else 0  # the first layer drawn depends on x only: its mean is exact
    means[exact] = layers[exact][0]
    return means


def posterior_mean_variances(model, x: torch.Tensor, n_samples: int = 100, batch_size: int = 500,
                             y: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Per layer l, the activity Cov_x(E_q[h_l | x]) of each unit (variance over the inputs): x (n, D) -> [(d_l,)].

    For a single layer or factorised q(h_l | x), E_q[h_l | x] = mu_l(x) exactly. For upper layers of a
    bottom-up hierarchy q(h_1 | x) q(h_2 | h_1)..., E_q[h_l | x] = E_{h_{l-1} ~ q}[mu_l(h_{l-1})] is
    estimated by averaging mu_l over `n_samples` draws of the layers below (`model.encode(x, sample=True)`);
    for the lower layers of a top-down one (`inference="top_down"`), over draws of the layers above.
    The variance over the n inputs uses the unbiased (n - 1) normalization. Under no_grad, eval mode.
    """
    _check_batch("x", x)
    n_samples = positive_int("n_samples", n_samples)
    batch_size = positive_int("batch_size", batch_size)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 inputs to estimate a variance over x, got shape {tuple(x.shape)}")
    if y is not None:
        _check_batch("y", y, n)
    with torch.no_grad(), _eval_mode(model):
        parts = []
        for start in range(0, n, batch_size):
            yb = None if y is None else y[start:start + batch_size]
            parts.append(_posterior_means(model, x[start:start + batch_size], n_samples, yb))
        means = [torch.cat(layer) for layer in zip(*parts)]  # [(n, d_l)]
    return [m.double().var(0, correction=1).to(m.dtype) for m in means]


def active_units(model, x: torch.Tensor, threshold: float = 1e-2, n_samples: int = 100,
                 batch_size: int = 500, y: torch.Tensor | None = None) -> list[int]:
    """Number of active units per stochastic layer, bottom first: #{u : Cov_x(E_q[u | x]) > threshold} (Burda et al. 2016): x (n, D) -> [int] * L."""
    nonnegative_number("threshold", threshold)
    variances = posterior_mean_variances(model, x, n_samples=n_samples, batch_size=batch_size, y=y)
    return [int((v > threshold).sum().item()) for v in variances]
