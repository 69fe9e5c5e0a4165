"""Small models of the generative zoo (chapter 08), each trainable for several seeds at once.

- `Stack`: M independent MLPs evaluated in one batched matrix product, (M, B, in) -> (M, B, out). Training M
  seeds (or M data sets) of a small network costs little more than training one, because on a CPU a small
  network's time goes into per-operation overhead, not arithmetic. Adam is elementwise, so one optimizer over a
  Stack trains the M members exactly as M separate optimizers would (sum the members' losses).
- `RBM`: M binary restricted Boltzmann machines, E(v, h) = -b.v - c.h - v.W h, with their conditionals, free
  energy, block Gibbs sampling and the CD-k gradient.
- Denoising autoencoders and generative stochastic networks: `gaussian_corrupt`, `salt_and_pepper`, `gsn_chain`.
- GANs: `minibatch_std`, per-feature batch spreads that let a discriminator see a collapsed batch (after Salimans et al. 2016).
- `draw_batches`: a mini-batch per member from M data pools.

The losses and update rules are written out in chapter 08; this module holds what later work reuses.
Everything computes where its inputs live, in their dtype; randomness comes from torch's global generator
(seeded by `gvlib.seed_everything`) unless a `generator` on the inputs' device is passed.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import nonnegative_int, positive_int, probability

__all__ = ["Stack", "RBM", "draw_batches", "gaussian_corrupt", "salt_and_pepper", "gsn_chain", "minibatch_std",
           "toy_scores", "toy_baselines",
           "ACTIVATIONS"]

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
               "leaky_relu": lambda h: F.leaky_relu(h, 0.2), "softplus": F.softplus}


def _check_members(name: str, x, m: int, width: int | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        got = f"a {x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"{name} must be a floating-point tensor of shape (M, batch, features), got {got}")
    if x.dim() != 3 or x.shape[0] != m or (width is not None and x.shape[2] != width):
        want = f"({m}, batch, {width if width is not None else 'features'})"
        raise ValueError(f"{name} must have shape {want}: one batch per member, got {tuple(x.shape)}")
    return x


# ============================================================================================== Stack
class Stack(nn.Module):
    """M independent MLPs sizes[0] -> ... -> sizes[-1] (activation between layers, last layer linear).

    forward(x): (M, B, sizes[0]) -> (M, B, sizes[-1]); member i sees only x[i]. Member i is initialised like
    torch.nn.Linear (weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))) from gvlib.generator(seed + i),
    so members differ and every member is reproducible (and moves with $GVLIB_SEED_OFFSET).
    """

    def __init__(self, n_models: int, sizes: Sequence[int], activation: str = "relu", seed: int = 0):
        super().__init__()
        from . import generator

        self.n_models = positive_int("n_models", n_models)
        self.sizes = [positive_int("layer size", s) for s in sizes]
        if len(self.sizes) < 2:
            raise ValueError(f"Stack needs at least an input and an output size, got {list(sizes)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: expected one of {', '.join(map(repr, ACTIVATIONS))}")
        self.activation = activation
        gens = [generator(seed + i) for i in range(self.n_models)]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            bound = 1 / math.sqrt(fan_in)
            w = torch.stack([torch.empty(fan_in, fan_out).uniform_(-bound, bound, generator=g) for g in gens])
            b = torch.stack([torch.empty(1, fan_out).uniform_(-bound, bound, generator=g) for g in gens])
            self.weights.append(nn.Parameter(w))   # (M, fan_in, fan_out)
            self.biases.append(nn.Parameter(b))    # (M, 1, fan_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(M, B, in) -> (M, B, out): h <- act(h W_l + b_l) for every layer but the last, which stays linear."""
        _check_members("x", x, self.n_models, self.sizes[0])
        act = ACTIVATIONS[self.activation]
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)  # (M, B, fan_out)
            if i < last:
                x = act(x)
        return x

    def member(self, i: int) -> nn.Sequential:
        """Member i as an ordinary nn.Sequential of Linear layers (a copy of its weights), (B, in) -> (B, out)."""
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.n_models:
            raise ValueError(f"member index must be an int in [0, {self.n_models}), got {i!r}")
        acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "softplus": nn.Softplus,
                "leaky_relu": lambda: nn.LeakyReLU(0.2)}
        layers: list[nn.Module] = []
        for j, (w, b) in enumerate(zip(self.weights, self.biases)):
            lin = nn.Linear(w.shape[1], w.shape[2]).to(device=w.device, dtype=w.dtype)
            with torch.no_grad():
                lin.weight.copy_(w[i].T)
                lin.bias.copy_(b[i, 0])
            layers.append(lin)
            if j < len(self.weights) - 1:
                layers.append(acts[self.activation]())
        return nn.Sequential(*layers)

    def extra_repr(self) -> str:
        return f"n_models={self.n_models}, sizes={self.sizes}, activation={self.activation!r}"


def draw_batches(pool: torch.Tensor, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random mini-batch (with replacement) from each member's pool: (M, N, d) -> (M, batch_size, d)."""
    if not isinstance(pool, torch.Tensor) or pool.dim() != 3:
        raise ValueError(f"pool must be a tensor of shape (M, N, d), got "
                         f"{tuple(pool.shape) if isinstance(pool, torch.Tensor) else type(pool).__name__}")
    batch_size = positive_int("batch_size", batch_size)
    m, n, d = pool.shape
    idx = torch.randint(0, n, (m, batch_size), generator=generator, device=pool.device)
    return torch.gather(pool, 1, idx.unsqueeze(-1).expand(m, batch_size, d))


# ============================================================================================== RBM
class RBM(nn.Module):
    """M binary RBMs: E(v, h) = -v.b - h.c - v W h, p(v, h) = exp(-E) / Z, v in {0,1}^nv, h in {0,1}^nh.

    Shapes: W (M, nv, nh), b (M, 1, nv), c (M, 1, nh); v (M, B, nv), h (M, B, nh). Weights start at
    N(0, init_std^2) from gvlib.generator(seed + i), biases at zero (Hinton 2010, "A practical guide").
    """

    def __init__(self, n_models: int, n_visible: int, n_hidden: int, seed: int = 0, init_std: float = 0.01):
        super().__init__()
        from . import generator

        self.n_models = positive_int("n_models", n_models)
        self.n_visible = positive_int("n_visible", n_visible)
        self.n_hidden = positive_int("n_hidden", n_hidden)
        gens = [generator(seed + i) for i in range(self.n_models)]
        self.W = nn.Parameter(torch.stack([init_std * torch.randn(n_visible, n_hidden, generator=g) for g in gens]))
        self.b = nn.Parameter(torch.zeros(self.n_models, 1, n_visible))
        self.c = nn.Parameter(torch.zeros(self.n_models, 1, n_hidden))

    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        """p(h_j = 1 | v) = sigmoid(c_j + sum_i v_i W_ij): (M, B, nv) -> (M, B, nh)."""
        return torch.sigmoid(torch.baddbmm(self.c, v, self.W))

    def visible_probs(self, h: torch.Tensor) -> torch.Tensor:
        """p(v_i = 1 | h) = sigmoid(b_i + sum_j W_ij h_j): (M, B, nh) -> (M, B, nv)."""
        return torch.sigmoid(torch.baddbmm(self.b, h, self.W.transpose(1, 2)))

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) = -log sum_h exp(-E(v, h)) = -v.b - sum_j softplus(c_j + (v W)_j): (M, B, nv) -> (M, B)."""
        _check_members("v", v, self.n_models, self.n_visible)
        return -(v * self.b).sum(-1) - F.softplus(torch.baddbmm(self.c, v, self.W)).sum(-1)

    def gibbs(self, v: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`steps` rounds of block Gibbs sampling h ~ p(h | v), v ~ p(v | h), from v (M, B, nv) -> v (M, B, nv)."""
        _check_members("v", v, self.n_models, self.n_visible)
        steps = nonnegative_int("steps", steps)
        with torch.no_grad():
            for _ in range(steps):
                h = torch.bernoulli(self.hidden_probs(v), generator=generator)
                v = torch.bernoulli(self.visible_probs(h), generator=generator)
        return v

    def cd_gradient(self, v0: torch.Tensor, k: int = 1, generator: torch.Generator | None = None,
                    v_start: torch.Tensor | None = None) -> tuple[dict, torch.Tensor]:
        """CD-k ascent direction of the mean log-likelihood and the chain's end v_k: ({"W", "b", "c"}, (M, B, nv)).

        dW = <v p(h|v)^T>_data - <v p(h|v)^T>_k, db = <v>_data - <v>_k, dc = <p(h|v)>_data - <p(h|v)>_k, means over
        the batch, where v_k is k Gibbs rounds from v0 (CD-k, Hinton 2002) or from `v_start` (persistent CD,
        Tieleman 2008: pass the previous call's v_k).
        """
        _check_members("v0", v0, self.n_models, self.n_visible)
        k = positive_int("k", k)
        vk = self.gibbs(v0 if v_start is None else v_start, k, generator)
        with torch.no_grad():
            ph0, phk = self.hidden_probs(v0), self.hidden_probs(vk)
            n0, nk = v0.shape[1], vk.shape[1]
            grads = {"W": v0.transpose(1, 2) @ ph0 / n0 - vk.transpose(1, 2) @ phk / nk,  # (M, nv, nh)
                     "b": v0.mean(1, keepdim=True) - vk.mean(1, keepdim=True),
                     "c": ph0.mean(1, keepdim=True) - phk.mean(1, keepdim=True)}
        return grads, vk


# ============================================================================================== DAE / GSN
def gaussian_corrupt(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x~ = x + sigma * eps, eps ~ N(0, I): the corruption C(x~ | x) of a denoising autoencoder on real data."""
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        raise TypeError("x must be a floating-point tensor")
    return x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def salt_and_pepper(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Binary corruption: each entry of x in {0, 1} is, with probability p, replaced by a fair coin (0 or 1)."""
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        raise TypeError("x must be a floating-point tensor of 0s and 1s")
    p = probability("p (the fraction of entries that are reset)", p, open_interval=False)
    reset = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) < p
    coin = (torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) < 0.5).to(x.dtype)
    return torch.where(reset, coin, x)


def gsn_chain(step: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, n_steps: int,
              record: bool = False) -> torch.Tensor:
    """Run the Markov chain x_{t+1} = step(x_t) (step = corrupt, then sample P(x | x~)) for n_steps from x0.

    Returns x_{n_steps}, or with `record` every state stacked: (n_steps + 1, *x0.shape). Runs under no_grad.
    """
    n_steps = nonnegative_int("n_steps", n_steps)
    if not callable(step):
        raise TypeError(f"step must be a function x -> next x, got {type(step).__name__}")
    states = [x0] if record else None
    x = x0
    with torch.no_grad():
        for _ in range(n_steps):
            x = step(x)
            if record:
                states.append(x)
    return torch.stack(states) if record else x


# ============================================================================================== GAN
def minibatch_std(x: torch.Tensor) -> torch.Tensor:
    """x (M, B, d) with the batch's standard deviation of each feature appended to every row: -> (M, B, 2d).

    A discriminator fed this sees how spread out a batch is, so a generator that puts every sample in one mode
    is caught. This per-feature version is a simplification of minibatch discrimination (Salimans et al. 2016);
    Karras et al. (2018) go further and average the standard deviations over features and locations into a
    single extra feature.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[1] < 2:
        raise ValueError(f"x must have shape (M, batch >= 2, d), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    return torch.cat([x, x.std(1, keepdim=True).expand_as(x)], -1)


# ============================================================================================== scores on the toys
def toy_scores(toy: str, x: torch.Tensor, ref: torch.Tensor, bandwidth: float = 0.2, share: float = 0.1) -> dict:
    """The chapter-08 scores of 2-D samples x (n, 2) of the mixture `toy` ("ring8" or "grid25") against held-out ref.

    precision: fraction within 3 s of a mode; covered: modes with >= ceil(share * n / K) such samples (recall);
    captured: modes with >= 1 (the papers' loose count); balance: KL of the histogram of high-quality samples to
    uniform (nan if there are none); log_p: mean exact log p(x); mmd2: unbiased MMD^2 to ref (Gaussian kernel).
    """
    from . import data, metrics

    if toy not in ("ring8", "grid25"):
        raise ValueError(f"toy must be 'ring8' or 'grid25' (mixtures with known modes), got {toy!r}")
    x = x.detach().double()                                    # on x's device, whichever it is
    centres = torch.tensor(data.RING8_MEANS if toy == "ring8" else data.GRID25_MEANS, dtype=x.dtype, device=x.device)
    s = data.RING8_STD if toy == "ring8" else data.GRID25_STD
    k = len(centres)
    return {"precision": metrics.high_quality_fraction(x, centres, s),
            "covered": metrics.modes_captured(x, centres, s, min_count=math.ceil(share * len(x) / k)),
            "captured": metrics.modes_captured(x, centres, s),
            "balance": metrics.mode_histogram_kl(x, centres, s),
            "log_p": data.toy_2d_log_prob(toy, x).mean().item(),
            "mmd2": metrics.mmd2(x.float(), ref.detach().float().to(x.device), bandwidth)}


def toy_baselines(toy: str, n: int, seed: int, box: float) -> dict:
    """Samples (n, 2) of the three baselines: held-out data, uniform on [-box, box]^2, one Gaussian fitted to data.

    The Gaussian has the mean and covariance of 10,000 training points (toy_2d seed 100 + seed); held-out data
    are toy_2d seed 300 + seed; all reproducible from `seed` (and $GVLIB_SEED_OFFSET).
    """
    from . import data, generator

    train = data.toy_2d(toy, 10_000, seed=100 + seed).double()
    g = generator(400 + seed)
    chol = torch.linalg.cholesky(torch.cov(train.T))
    return {"held-out data": data.toy_2d(toy, n, seed=300 + seed),
            "uniform on the box": box * (2 * torch.rand(n, 2, generator=g) - 1),
            "one Gaussian fitted": (train.mean(0) + torch.randn(n, 2, generator=g, dtype=torch.float64) @ chol.T).float()}
