"""A small classifier q(y | x) that judges images: which digit is this sample, and how sure is it?

Chapters use it to score generative models (do class-conditioned samples show the class asked for, is an
inpainted image a digit the border allows, how confident is a classifier on a model's samples).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import positive_int
from .models import mlp

__all__ = ["train_classifier", "predict_proba", "accuracy"]


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
