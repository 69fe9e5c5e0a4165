"""Scores of a generative model from its samples alone: mode coverage, sample quality, MMD, the Parzen window.

Every function here needs only samples (a GAN or a Markov chain gives nothing else):

- `modes_captured`, `high_quality_fraction`, `mode_counts`: for data that are a mixture of well separated modes
  with known centres (the 2-D toys ring8 and grid25). A sample is *high quality* when its Euclidean distance to
  the nearest centre is at most 3 sigma (Srivastava et al. 2017, "VEEGAN"); a mode is *captured* when at least
  `min_count` high-quality samples have it as their nearest centre.
- `mmd2`: the unbiased estimate of the squared maximum mean discrepancy with a Gaussian kernel (Gretton et al. 2012):
  zero in expectation exactly when the two sample sets come from the same distribution.
- `parzen_log_likelihood`: the mean log-density of data under a Gaussian kernel density estimate built on the
  samples, the score the GSN and GAN papers reported (Breuleux et al. 2011); `parzen_select_sigma` picks its
  bandwidth on validation data. Theis et al. (2016) show why it ranks models badly (chapter 08).

Inputs are tensors of shape (n, d) on any device and in any floating dtype. Kernels are evaluated in the inputs'
dtype (float64 inputs give float64 results throughout; float32 is several times faster on a CPU), every sum is
accumulated in float64, and results are returned as Python numbers. Bad input raises an error that says what was expected and what came.
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch

from ._validate import positive_int, positive_number

__all__ = ["nearest_centre", "mode_counts", "modes_captured", "high_quality_fraction", "mmd2",
           "parzen_log_likelihood", "parzen_select_sigma", "HIGH_QUALITY_SDS", "mode_histogram_kl"]

#: A sample is high quality when it lies within this many standard deviations of its nearest mode's centre.
HIGH_QUALITY_SDS = 3.0

_CHUNK_ELEMENTS = 1 << 20  # about 1 M float64 entries (8 MB) per block of pairwise distances: small blocks are reused, not mapped anew


# ----------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------

def _points(name: str, value, d: int | None = None, min_rows: int = 1) -> torch.Tensor:
    """`value` if it is a finite floating tensor of shape (n, d) with n >= min_rows, else an error naming `name`."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n, d), got {type(value).__name__}")
    if not torch.is_floating_point(value):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype} "
                        "(convert with .float() or .double())")
    if value.dim() != 2:
        raise ValueError(f"{name} must have shape (n, d): one row per point, got shape {tuple(value.shape)}")
    if value.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} row(s), got shape {tuple(value.shape)}")
    if d is not None and value.shape[1] != d:
        raise ValueError(f"{name} must have {d} columns like the other argument, got shape {tuple(value.shape)}")
    if value.numel() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} holds NaN or infinite values; a diverged model's samples cannot be scored")
    return value


def _same_device(**tensors: torch.Tensor) -> None:
    devices = {k: t.device for k, t in tensors.items()}
    if len(set(devices.values())) > 1:
        raise ValueError("the inputs live on different devices: "
                         + ", ".join(f"{k} on {v}" for k, v in devices.items()) + "; move them to one device")


def _common_dtype(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors in the widest of their dtypes (float32 with float64 -> float64)."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return tuple(t.to(dtype) for t in tensors)


def _blocks(n_rows: int, n_cols: int, width: int) -> int:
    """Rows per block so that a block of (rows, n_cols, width) pairwise entries stays near _CHUNK_ELEMENTS."""
    return max(1, _CHUNK_ELEMENTS // max(1, n_cols * width))


# ----------------------------------------------------------------------------------------------
# modes and sample quality
# ----------------------------------------------------------------------------------------------

def nearest_centre(samples: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index (n,) int64 of each sample's nearest centre and the Euclidean distance (n,) to it: (n, d), (K, d)."""
    samples = _points("samples", samples, min_rows=0)
    centres = _points("centres", centres, d=samples.shape[1])
    _same_device(samples=samples, centres=centres)
    s, c = samples.double(), centres.double()
    index = torch.empty(s.shape[0], dtype=torch.long, device=s.device)
    dist = torch.empty(s.shape[0], dtype=torch.float64, device=s.device)
    step = _blocks(s.shape[0], c.shape[0], c.shape[1])
    for i in range(0, s.shape[0], step):
        d2 = ((s[i:i + step, None, :] - c[None]) ** 2).sum(-1)  # (rows, K): differences first, no cancellation
        best, arg = d2.min(1)
        index[i:i + step], dist[i:i + step] = arg, best.sqrt()
    return index, dist


def mode_counts(samples: torch.Tensor, centres: torch.Tensor, sigma: float) -> torch.Tensor:
    """Number of high-quality samples (within 3 sigma of their nearest centre) assigned to each centre: -> (K,) int64."""
    sigma = positive_number("sigma (the modes' standard deviation)", sigma)
    index, dist = nearest_centre(samples, centres)
    good = dist <= HIGH_QUALITY_SDS * sigma
    return torch.bincount(index[good], minlength=centres.shape[0])


def modes_captured(samples: torch.Tensor, centres: torch.Tensor, sigma: float, min_count: int = 1) -> int:
    """Number of centres (K, d) that are the nearest centre of at least `min_count` high-quality samples (n, d)."""
    min_count = positive_int("min_count", min_count)
    return int((mode_counts(samples, centres, sigma) >= min_count).sum().item())


def high_quality_fraction(samples: torch.Tensor, centres: torch.Tensor, sigma: float) -> float:
    """Fraction of samples (n, d), n >= 1, within 3 sigma (Euclidean) of their nearest centre (K, d)."""
    sigma = positive_number("sigma (the modes' standard deviation)", sigma)
    _points("samples", samples)
    _, dist = nearest_centre(samples, centres)
    return (dist <= HIGH_QUALITY_SDS * sigma).double().mean().item()


# ----------------------------------------------------------------------------------------------
# maximum mean discrepancy
# ----------------------------------------------------------------------------------------------

def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||a_i - b_j||^2 (rows, m) as |a|^2 + |b|^2 - 2 a.b (a matrix product, in the inputs' dtype), clamped at 0."""
    return ((a * a).sum(1, keepdim=True) + (b * b).sum(1) - 2 * a @ b.T).clamp_min_(0)


def _exp(a: torch.Tensor) -> torch.Tensor:
    """exp(a) for a <= 0 with arguments below log(smallest normal number) + 1 raised to that floor.

    Gaussian kernels of far-apart points underflow to subnormal numbers, which x86 CPUs compute up to a hundred
    times slower than normal ones; the floor (exp(-86) in float32, exp(-707) in float64) changes a sum of n
    kernel values by less than n times 2e-38 (float32) or 3e-307 (float64).
    """
    return torch.exp(a.clamp_min_(math.log(torch.finfo(a.dtype).tiny) + 1))


def _logsumexp_rows(a: torch.Tensor) -> torch.Tensor:
    """log sum_j exp(a_ij) over the last dim, stably (max subtracted), with `_exp`'s floor: (rows, n) -> (rows,)."""
    top = a.max(dim=1, keepdim=True).values
    return top.squeeze(1) + torch.log(_exp(a - top).sum(1))


def _kernel_sum(a: torch.Tensor, b: torch.Tensor, bandwidth: float) -> float:
    """sum_ij exp(-||a_i - b_j||^2 / (2 bandwidth^2)), in blocks, in a's dtype, summed in float64."""
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    step = _blocks(a.shape[0], b.shape[0], 1)
    for i in range(0, a.shape[0], step):
        d2 = _sq_dists(a[i:i + step], b)  # (rows, m)
        total = total + _exp(d2.mul_(-0.5 / bandwidth ** 2)).sum(1).double().sum()  # row sums, then float64
    return total.item()


def mmd2(x: torch.Tensor, y: torch.Tensor, bandwidth: float) -> float:
    """Unbiased MMD^2 between samples x (n, d) and y (m, d), n, m >= 2, kernel k(a, b) = exp(-||a - b||^2 / (2 bw^2)).

    mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j): can be slightly negative when
    the two distributions are equal (it is unbiased, so it is zero only on average).
    """
    bandwidth = positive_number("bandwidth", bandwidth)
    x = _points("x", x, min_rows=2)
    y = _points("y", y, d=x.shape[1], min_rows=2)
    _same_device(x=x, y=y)
    x, y = _common_dtype(x, y)
    n, m = x.shape[0], y.shape[0]
    kxx = (_kernel_sum(x, x, bandwidth) - n) / (n * (n - 1))  # the diagonal k(x_i, x_i) = 1 is left out
    kyy = (_kernel_sum(y, y, bandwidth) - m) / (m * (m - 1))
    kxy = _kernel_sum(x, y, bandwidth) / (n * m)
    return kxx + kyy - 2 * kxy


# ----------------------------------------------------------------------------------------------
# Parzen window
# ----------------------------------------------------------------------------------------------

def _parzen_per_row(samples: torch.Tensor, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """log (1/n) sum_j N(x_i; samples_j, sigma^2 I) for every row of x, in x's dtype: -> (rows,) float64."""
    n, d = samples.shape
    out = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    const = -math.log(n) - 0.5 * d * math.log(2 * math.pi * sigma ** 2)
    step = _blocks(x.shape[0], n, 1)
    for i in range(0, x.shape[0], step):
        d2 = _sq_dists(x[i:i + step], samples)  # (rows, n)
        out[i:i + step] = _logsumexp_rows(d2.mul_(-0.5 / sigma ** 2)).double() + const
    return out


def _bernoulli_parzen_per_row(samples: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """log (1/n) sum_j prod_d Bernoulli(x_id; eps + (1 - 2 eps) samples_jd) for every row of x: -> (rows,) float64."""
    n = samples.shape[0]
    p = eps + (1 - 2 * eps) * samples                     # each kernel's pixel probabilities, in [eps, 1 - eps]
    log_p, log_q = torch.log(p).T, torch.log1p(-p).T      # (d, n)
    out = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    step = _blocks(x.shape[0], n, 1)
    for i in range(0, x.shape[0], step):
        rows = x[i:i + step]
        out[i:i + step] = _logsumexp_rows(rows @ log_p + (1 - rows) @ log_q).double() - math.log(n)
    return out


PARZEN_KERNELS = ("gaussian", "bernoulli")


def parzen_log_likelihood(samples: torch.Tensor, x: torch.Tensor, sigma: float, kernel: str = "gaussian") -> float:
    """Mean over rows of x (m, d) of log((1/n) sum_j k(x_i | samples_j)), samples (n, d), in nats.

    kernel="gaussian" (Breuleux et al. 2011, as the GSN and GAN papers used it): k = N(x; sample, sigma^2 I), a
    density on R^d, whose value on binary images is not a probability and cannot be compared with a model's
    log-probability. kernel="bernoulli": k(x | s) = prod_d Bernoulli(x_d; sigma + (1 - 2 sigma) s_d), each pixel
    of the sample flipped with probability sigma in (0, 1/2]; a probability mass function on {0, 1}^d, so the
    estimate is a log-probability of binary x (which it requires), comparable with an RBM's or a VAE's; samples
    may be grey (k-means centres), each pixel in [0, 1]. Computed with logsumexp in blocks, in the inputs' dtype
    (pass float64 for 1e-12 accuracy).
    """
    if kernel not in PARZEN_KERNELS:
        raise ValueError(f"unknown Parzen kernel {kernel!r}: expected one of {PARZEN_KERNELS}")
    sigma = positive_number("sigma (the Parzen window's bandwidth or flip probability)", sigma)
    samples = _points("samples", samples)
    x = _points("x", x, d=samples.shape[1])
    _same_device(samples=samples, x=x)
    samples, x = _common_dtype(samples, x)
    if kernel == "gaussian":
        return _parzen_per_row(samples, x, sigma).mean().item()
    if sigma > 0.5:
        raise ValueError(f"the Bernoulli kernel's flip probability must be in (0, 1/2], got {sigma}")
    if not bool(((x == 0) | (x == 1)).all()):
        raise ValueError("the Bernoulli kernel scores binary data: every entry of x must be 0 or 1")
    if not bool(((samples >= 0) & (samples <= 1)).all()):
        raise ValueError("the Bernoulli kernel needs samples with every entry in [0, 1]")
    return _bernoulli_parzen_per_row(samples, x, sigma).mean().item()


def parzen_select_sigma(samples: torch.Tensor, x_valid: torch.Tensor, sigmas: Sequence[float],
                        kernel: str = "gaussian") -> tuple[float, list]:
    """The sigma of `sigmas` with the highest parzen_log_likelihood(samples, x_valid, sigma, kernel), and every score."""
    if isinstance(sigmas, (str, bytes)) or not hasattr(sigmas, "__len__") or len(sigmas) == 0:
        raise ValueError(f"sigmas must be a non-empty sequence of positive numbers, got {sigmas!r}")
    if not all(isinstance(s, numbers.Real) for s in sigmas):
        raise ValueError(f"sigmas must be a non-empty sequence of positive numbers, got {sigmas!r}")
    scores = [parzen_log_likelihood(samples, x_valid, float(s), kernel) for s in sigmas]
    best = max(range(len(scores)), key=lambda i: scores[i])
    return float(sigmas[best]), scores


# ==============================================================================================================
# Chapter 08 (adversarial models): the histogram of captured modes, VEEGAN's mode-balance score
# ==============================================================================================================

def mode_histogram_kl(samples: torch.Tensor, centres: torch.Tensor, sigma: float) -> float:
    """KL(h || uniform) in nats of the histogram h of high-quality samples over the K centres (Srivastava et al. 2017).

    h_k = (high-quality samples whose nearest centre is k) / (all high-quality samples); 0 when the high-quality
    samples are spread evenly, log K when they all sit on one mode; nan when no sample is of high quality (the
    histogram is then undefined: report it beside the high-quality fraction, never alone). samples (n, d),
    centres (K, d).
    """
    counts = mode_counts(samples, centres, sigma).double()
    total = counts.sum()
    if total == 0:
        return math.nan
    h = counts / total
    k = counts.shape[0]
    nz = h > 0
    return (h[nz] * (torch.log(h[nz]) + math.log(k))).sum().item()
