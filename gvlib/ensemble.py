"""Train several small models of the same architecture at once (seeds, or arms of an ablation), with torch.func.vmap.

Chapter 06 compares five training recipes over four seeds, a sweep of free-bits floors and a deeper hierarchy: some
thirty tiny networks. Trained one after another they spend most of their time in Python overhead; stacked along a
leading "model" dimension they run as one set of batched matrix products. Each model keeps its own
initialisation (`gvlib.seed_everything(seed)` before it is built, exactly as `fit` would see it), its own data
order and dynamic binarization (`gvlib.generator(seed)`), its own noise, and its own loss: the loss summed over
models has, for each model's parameters, exactly that model's gradient, and Adam is elementwise, so the stacked
run is M independent Adam runs. Per-model settings (a free-bits floor, a warm-up length) travel as tensors of
shape (M,) that vmap hands to each model as a scalar.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

import gvlib

__all__ = ["fit_together"]


class _Call(nn.Module):
    """Wraps a model so that functional_call can run `loss_fn(model, x, progress, **settings)`."""

    def __init__(self, model: nn.Module, loss_fn: Callable):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, x, progress, settings):
        return self.loss_fn(self.model, x, progress, **settings)


def fit_together(make_model: Callable[[], nn.Module], seeds: Sequence[int], loss_fn: Callable, x: torch.Tensor,
                 epochs: int, batch_size: int = 50, lr: float = 3e-3, settings: dict | None = None,
                 dynamic_binarize: bool = True) -> tuple[list[nn.Module], dict[str, torch.Tensor]]:
    """Train len(seeds) copies of make_model() side by side; model m is built after seed_everything(seeds[m]).

    loss_fn(model, x (batch, D), progress (epochs done / epochs, a float), **settings_m) -> {"loss": scalar,
    term: scalar, ...}; settings maps names to tensors of shape (M,), one value per model. Returns the trained
    models (ordinary modules, eval mode) and the history: for each term, the per-epoch mean over batches,
    a tensor (epochs, M)."""
    seeds, settings = list(seeds), dict(settings or {})
    M = len(seeds)
    models = []
    for s in seeds:
        gvlib.seed_everything(s)
        models.append(make_model().to(x.device))
    params, buffers = stack_module_state(models)                         # each (M, ...)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    base = _Call(copy.deepcopy(models[0]).to("meta"), loss_fn)
    names = {k: "model." + k for k in params}

    def one(p, b, xb, progress, st):
        return functional_call(base, ({names[k]: v for k, v in p.items()}, {"model." + k: v for k, v in b.items()}),
                               (xb, progress, st))

    batched = vmap(one, in_dims=(0, 0, 0, None, 0), randomness="different")
    opt = torch.optim.Adam(params.values(), lr=lr)
    gens = [gvlib.generator(s) for s in seeds]
    n = x.shape[0]
    history: dict[str, list] = {}
    for epoch in range(epochs):
        order = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(x.device)   # (M, n)
        sums, count = {}, 0
        for start in range(0, n, batch_size):
            idx = order[:, start:start + batch_size]                                 # (M, B)
            xb = x[idx]                                                              # (M, B, D)
            if dynamic_binarize:
                u = torch.stack([torch.rand(xb.shape[1:], generator=g) for g in gens]).to(x.device)
                xb = (u < xb).to(x.dtype)
            out = batched(params, buffers, xb, epoch / epochs, settings)             # {term: (M,)}
            opt.zero_grad(set_to_none=True)
            out["loss"].sum().backward()                                             # model m's gradient only
            opt.step()
            w = idx.shape[1]
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + v.detach() * w
            count += w
        for k, v in sums.items():
            history.setdefault(k, []).append(v / count)
    with torch.no_grad():
        for m, model in enumerate(models):
            for k, v in model.named_parameters():
                v.copy_(params[k][m])
            model.eval()
    return models, {k: torch.stack(v) for k, v in history.items()}
