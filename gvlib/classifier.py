"""Classifiers of the course: a small q(y | x) that judges images, the generative classifier of a conditional
model, and the few-label split that semi-supervised learning starts from.

Chapters use the judge to score generative models (do class-conditioned samples show the class asked for, is an
inpainted image a digit the border allows, how confident is a classifier on a model's samples), `elbo_per_class`
to read a conditional VAE as a classifier (argmax_y of its bound L(x, y)), and `few_labels` to keep a few labels
per class and hide the rest.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import positive_int
from .models import mlp

__all__ = ["train_classifier", "predict_proba", "accuracy", "few_labels", "elbo_per_class"]


def train_classifier(x: torch.Tensor, y: torch.Tensor, n_classes: int | None = None, hidden: Sequence[int] = (128,),
                     epochs: int = 30, lr: float = 3e-3, batch_size: int = 100, seed: int = 0,
                     dynamic_binarize: bool = True) -> nn.Sequential:
    """An MLP x-hidden-(n_classes logits), ReLU, trained by cross-entropy on (x (n, D) in [0, 1], y (n,) int labels) -> the net.

    With `dynamic_binarize`, every epoch sees fresh binary draws x ~ Bernoulli(x), so the classifier reads binary
    images (samples of a Bernoulli model) as well as grey levels. Trained where x lives, seeded by `seed`
    (+ $GVLIB_SEED_OFFSET); returned in eval mode.
    """
    from . import seed_everything
    from .train import fit

    if not isinstance(y, torch.Tensor) or y.dim() != 1 or torch.is_floating_point(y) or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must be int labels of shape ({x.shape[0]},), got "
                         f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
    n_classes = positive_int("n_classes", n_classes if n_classes is not None else int(y.max()) + 1)
    seed_everything(seed)
    net = mlp([x.shape[1], *hidden, n_classes], "relu").to(x.device)
    fit(net, lambda m, b: F.cross_entropy(m(b[0]), b[1]), (x, y), epochs=epochs, lr=lr, batch_size=batch_size,
        dynamic_binarize=dynamic_binarize, seed=seed, progress=False)
    return net.eval()


@torch.no_grad()
def predict_proba(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """q(y | x) = softmax of the classifier's logits: x (n, D) -> (n, n_classes), in eval mode."""
    was_training = net.training
    net.eval()
    out = torch.softmax(net(x), -1)
    net.train(was_training)
    return out


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows whose most probable class is the label: x (n, D), y (n,) -> float in [0, 1]."""
    return (predict_proba(net, x).argmax(-1) == y.to(x.device)).double().mean().item()


def few_labels(y: torch.Tensor, per_class: int, seed: int = 0) -> torch.Tensor:
    """Bool mask (n,) that keeps `per_class` labels of each class, drawn at random: y (n,) int labels -> (n,) bool.

    The draw is seeded by `seed` (+ $GVLIB_SEED_OFFSET, through `gvlib.generator`), so each seed gives another
    labelled set; the mask lives on y's device. Every class present in y must have at least `per_class` examples.
    """
    from . import generator

    if not isinstance(y, torch.Tensor) or y.dim() != 1 or torch.is_floating_point(y):
        raise ValueError(f"y must be int labels of shape (n,), got "
                         f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
    per_class = positive_int("per_class", per_class)
    g = generator(seed)
    labels = y.to("cpu")
    keep = torch.zeros(len(labels), dtype=torch.bool)
    for c in torch.unique(labels).tolist():
        where = torch.nonzero(labels == c).flatten()
        if len(where) < per_class:
            raise ValueError(f"class {c} has {len(where)} examples, fewer than per_class={per_class}")
        keep[where[torch.randperm(len(where), generator=g)[:per_class]]] = True
    return keep.to(y.device)


@torch.no_grad()
def elbo_per_class(model: nn.Module, x: torch.Tensor, n_classes: int, draws: int = 10,
                   batch_size: int = 500) -> torch.Tensor:
    """L(x, y) for every class y of a conditional model, averaged over `draws` one-sample ELBOs: x (n, D) -> (n, n_classes).

    `model.elbo(x, y)` is called with each class in turn (a ConditionalVAE: E_q log p(x | z, y) - KL(q(z | x, y) || p(z)),
    without log p(y)), on `batch_size` inputs at a time, in eval mode (restored after). argmax over the last dim
    (plus log p(y) for a non-uniform prior) is the model's generative classifier.
    """
    n_classes = positive_int("n_classes", n_classes)
    draws = positive_int("draws", draws)
    batch_size = positive_int("batch_size", batch_size)
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[0] < 1:
        raise ValueError(f"x must be a (n, D) tensor with n >= 1, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    was_training = model.training
    model.eval()
    try:
        out = []
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size]
            b = xb.shape[0]
            every = torch.arange(n_classes, device=x.device).repeat_interleave(b)     # (C b,): class c for block c
            xs = xb.repeat(n_classes, 1)                                               # (C b, D)
            total = sum(model.elbo(xs, every) for _ in range(draws))                   # (C b,)
            out.append((total / draws).view(n_classes, b).T)                           # (b, C)
        return torch.cat(out)
    finally:
        model.train(was_training)
