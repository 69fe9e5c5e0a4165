"""Training loop of the course: `fit` a model by mini-batch Adam, `save`/`load` checkpoints, the IWAE lr schedule.

    history = fit(model, lambda m, batch: -m.elbo(batch[0]).mean(), x_train, epochs=30, valid=x_valid)

`loss_fn(model, batch)` gets the tuple of tensors a `gvlib.data.loader` yields (use `batch[0]`) and returns
a scalar tensor, or a dict of scalars with key "loss" plus extra terms to log ({"loss": -elbo, "rec": ..., "kl": ...}).
Batches are moved to the device of the model's parameters; nothing here assumes cpu or cuda.

The same script runs data-parallel under PyTorch's launcher, `torchrun --nproc_per_node N script.py`: fit then
wraps the model in DistributedDataParallel (NCCL on GPUs, gloo on CPUs), every process trains on its share of
each batch, and only rank 0 writes checkpoints and shows progress (see `fit`).
"""
from __future__ import annotations

import atexit
import copy
import dataclasses
import json
import math
import os
import pickle
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from . import seed_offset
from ._files import atomic_write
from ._validate import nonnegative_int, positive_int
from .models import config_dict

__all__ = ["History", "Warmup", "CheckpointError", "fit", "save", "load", "iwae_schedule",
           "IWAE_STAGES", "IWAE_EPOCHS", "IWAE_ADAM"]

IWAE_STAGES = 8
"""Burda et al. (2016), sec. 5: stage i = 0..7 runs 3**i epochs at lr 1e-3 * 10**(-i/7)."""
IWAE_EPOCHS = sum(3 ** i for i in range(IWAE_STAGES))  # 3280
IWAE_ADAM = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-4}
"""Adam's settings in the IWAE paper: `torch.optim.Adam(model.parameters(), **IWAE_ADAM)`."""

_CHECKPOINT_FORMAT = "gvlib-checkpoint-1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, or that does not fit the model it is loaded into."""


# --------------------------------------------------------------------------------------------- history
@dataclass
class History:
    """Per-epoch record of a `fit` run: lists indexed by epoch, and the extra terms of a dict loss."""

    epoch: list = field(default_factory=list)        # 1, 2, ... (epochs completed)
    train: list = field(default_factory=list)        # mean training loss per epoch (over examples)
    valid: list | None = None                        # mean validation loss per epoch, None without valid data
    time: list = field(default_factory=list)         # seconds of the training pass of each epoch
    lr: list = field(default_factory=list)           # learning rate of the first param group in each epoch
    train_terms: dict = field(default_factory=dict)  # extra terms of a dict loss, e.g. {"rec": [...], "kl": [...]}
    valid_terms: dict = field(default_factory=dict)  # the same terms on the validation data
    stopped_early: bool = False                      # True when a callback ended the run

    def __len__(self) -> int:
        """Number of completed epochs."""
        return len(self.epoch)

    def as_dict(self) -> dict:
        """Plain dict of lists (torch.save- and json-friendly); `History(**d)` inverts it."""
        return copy.deepcopy(dataclasses.asdict(self))

    def __repr__(self) -> str:
        if not self.epoch:
            return "History(0 epochs)"
        text = f"History({len(self)} epochs, train {self.train[0]:.4g} -> {self.train[-1]:.4g}"
        if self.valid:
            text += f", valid {self.valid[0]:.4g} -> {self.valid[-1]:.4g}"
        return text + (", stopped early" if self.stopped_early else "") + f", {sum(self.time):.1f} s)"


class Warmup:
    """A KL weight beta rising linearly from `start` to 1 over the first `epochs` epochs of a fit run.

        warm = Warmup(10)
        fit(model, lambda m, b: -(rec(m, b) - warm.beta * kl(m, b)).mean(), x, epochs=30, callback=warm.step)

    `warm.beta` is start + (1 - start) * min(1, e / epochs) during epoch e + 1 (0-based e); `step` is fit's callback.
    """

    def __init__(self, epochs: int, start: float = 0.0):
        self.epochs = positive_int("epochs", epochs)
        self.start = float(start)
        if not 0.0 <= self.start <= 1.0:
            raise ValueError(f"start (beta in the first epoch) must lie in [0, 1], got {start!r}")
        self.done = 0  # epochs completed

    @property
    def beta(self) -> float:
        """The KL weight for the epoch being trained."""
        return self.start + (1.0 - self.start) * min(1.0, self.done / self.epochs)

    def step(self, epoch: int, model=None, history=None) -> None:
        """fit's callback: record that `epoch` (1-based) is done, so the next epoch uses the next beta."""
        self.done = epoch


# --------------------------------------------------------------------------------------------- schedule
def iwae_schedule(total_epochs: int = IWAE_EPOCHS) -> Callable[[int], float]:
    """lr multiplier 10^(-i/7) for epoch e (0-based) in stage i = 0..7 of 3^i epochs (IWAE paper), scaled to `total_epochs`.

    Burda et al. (2016) train with Adam (`IWAE_ADAM`: lr 1e-3, betas (0.9, 0.999), eps 1e-4) for
    sum_i 3^i = 3280 epochs: 1 epoch at 1e-3, 3 at 1e-3 * 10^(-1/7), ..., 2187 at 1e-3 * 10^(-1).
    With `total_epochs` = T the stage boundaries are scaled by T / 3280 and rounded, so the stages keep their
    proportions; for small T the first (short) stages get no epoch at all and training starts at a lower lr
    (T = 30: stages 4..7 get 1, 2, 7, 20 epochs). Use `fit(..., lr=1e-3, schedule=iwae_schedule(T))`.
    The returned function has `.stages`: a list of (first_epoch, n_epochs, multiplier), one per stage.
    """
    total_epochs = positive_int("total_epochs", total_epochs)
    ends, cum = [], 0
    for i in range(IWAE_STAGES):
        cum += 3 ** i
        ends.append(round(cum * total_epochs / IWAE_EPOCHS))  # exact integers when total_epochs = 3280
    starts = [0] + ends[:-1]
    factors = [10.0 ** (-i / 7) for i in range(IWAE_STAGES)]
    stages = [(s, e - s, f) for s, e, f in zip(starts, ends, factors)]

    def multiplier(epoch: int) -> float:
        for _, end, f in zip(starts, ends, factors):
            if epoch < end:
                return f
        return factors[-1]  # epochs past the end keep the last stage's rate

    multiplier.stages = stages
    multiplier.total_epochs = total_epochs
    multiplier.__doc__ = f"IWAE lr multiplier for epoch (0-based) of a {total_epochs}-epoch run: {stages}."
    return multiplier


# --------------------------------------------------------------------------------------------- save / load
def _model_device(model: nn.Module) -> torch.device | None:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return None


def _check_plain(value, where: str) -> None:
    """Raise TypeError unless `value` is made of tensors, numbers, strings, None, lists, tuples and str-keyed dicts."""
    if value is None or type(value) in (bool, int, float, str) or isinstance(value, (torch.Tensor, torch.dtype)):
        return  # exact types: a str subclass (torch.__version__) would not load with weights_only=True
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where} has a key {k!r} of type {type(k).__name__}; keys must be str or int")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise TypeError(f"{where} is a {type(value).__name__}; a checkpoint holds only tensors, numbers, strings, "
                    "None, lists, tuples and dicts (so torch.load(weights_only=True) can read it back)")


def save(model: nn.Module, path, **extra) -> Path:
    """Write {state_dict, class, model.config, gvlib version, **extra} to `path` atomically (tmp + os.replace) -> path."""
    from gvlib import __version__

    if not isinstance(model, nn.Module):
        raise TypeError(f"save expects an nn.Module, got {type(model).__name__}")
    _check_plain(extra, "save(**extra)")
    _check_plain(config_dict(model), f"{type(model).__name__}.config")
    obj = {
        "format": _CHECKPOINT_FORMAT,
        "class": type(model).__name__,
        "config": config_dict(model),
        "gvlib_version": __version__,
        "torch_version": str(torch.__version__),
        "state_dict": model.state_dict(),
        "extra": extra,
    }
    return atomic_write(Path(path), lambda f: torch.save(obj, f))


def _describe_mismatch(own: dict, theirs: dict, limit: int = 8) -> list:
    missing = [k for k in own if k not in theirs]
    unexpected = [k for k in theirs if k not in own]
    shapes = [f"{k}: checkpoint {tuple(theirs[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in theirs and hasattr(theirs[k], "shape") and theirs[k].shape != own[k].shape]

    def few(items):
        return ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")

    problems = []
    if missing:
        problems.append(f"keys missing from the checkpoint: {few(missing)}")
    if unexpected:
        problems.append(f"keys the model does not have: {few(unexpected)}")
    if shapes:
        problems.append(f"shapes that differ: {few(shapes)}")
    return problems


def _read(path: Path, device) -> tuple[dict, str | None, dict]:
    """(state_dict, saved class, info) of a checkpoint file, every tensor mapped to `device`; CheckpointError if unreadable."""
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path} (absolute: {path.resolve()}); write one with "
                                "gvlib.train.save(model, path) or fit(..., checkpoint=path)")
    try:
        obj = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if "WeightsUnpickler error" in ln), lines[0] if lines else "")
        raise CheckpointError(
            f"{path} could not be read with torch.load(weights_only=True): it is corrupted or holds objects "
            f"other than tensors and plain containers ({reason})") from e
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError, TypeError) as e:
        size = path.stat().st_size
        raise CheckpointError(f"{path} ({size} bytes) is not a readable checkpoint: the file is corrupted or "
                              f"truncated ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                              "save it again") from e
    if isinstance(obj, dict) and obj.get("format") == _CHECKPOINT_FORMAT:
        state_dict, saved_class = obj["state_dict"], obj.get("class")
        info = {"class": saved_class, "config": obj.get("config"), "gvlib_version": obj.get("gvlib_version"),
                **obj.get("extra", {})}
    elif isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state_dict, saved_class, info = obj, None, {"class": None, "config": None, "gvlib_version": None}
    else:
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a gvlib checkpoint or a state_dict")
    return state_dict, saved_class, info


def load(model: nn.Module, path) -> dict:
    """Load weights from `save`/`fit(checkpoint=)` into `model` on its device -> {class, config, gvlib_version, **extra}."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"load expects an nn.Module to load into, got {type(model).__name__}")
    path = Path(path)
    state_dict, saved_class, info = _read(path, _model_device(model))
    problems = _describe_mismatch(model.state_dict(), state_dict)
    if problems:
        origin = f"saved from a {saved_class}" if saved_class else "a plain state_dict"
        raise CheckpointError(f"the checkpoint {path} ({origin}) does not fit this {type(model).__name__}: "
                              + "; ".join(problems))
    model.load_state_dict(state_dict)
    return info


# --------------------------------------------------------------------------------------------- fit
def _show_progress(progress: bool | None) -> bool:
    if progress is not None:
        return bool(progress)
    if os.environ.get("GVLIB_QUIET", "").strip().lower() not in ("", "0", "false", "no"):
        return False
    try:
        if sys.stdout is not None and sys.stdout.isatty():
            return True
    except (AttributeError, ValueError):
        pass
    return _in_jupyter_kernel()


def _in_jupyter_kernel() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - an IPython without a shell
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _as_batches(data, batch_size, shuffle, dynamic_binarize, seed, name):
    from gvlib.data import loader

    if isinstance(data, torch.Tensor):
        return loader(data, batch_size=batch_size, shuffle=shuffle, dynamic_binarize=dynamic_binarize, seed=seed)
    if isinstance(data, tuple) and data and all(isinstance(t, torch.Tensor) for t in data):
        # a tuple (x, y, ...) is one data set; a list is a list of batches
        return loader(*data, batch_size=batch_size, shuffle=shuffle, dynamic_binarize=dynamic_binarize, seed=seed)
    if isinstance(data, Iterable):
        if iter(data) is data:
            raise TypeError(f"{name} is an iterator ({type(data).__name__}), which is used up after one epoch; "
                            "pass a tensor, a tuple of tensors, a gvlib.data.loader or a list of batches")
        if dynamic_binarize:
            raise ValueError(f"dynamic_binarize=True needs {name} as a tensor or tuple of tensors; "
                             "for your own batches pass gvlib.data.loader(x, dynamic_binarize=True) instead")
        return data
    raise TypeError(f"{name} must be a tensor, a tuple of tensors or a re-iterable of batches, "
                    f"got {type(data).__name__}")


def _to_device(batch, device):
    if isinstance(batch, torch.Tensor):
        batch = (batch,)
    if not isinstance(batch, (tuple, list)):
        raise TypeError(f"a batch must be a tensor or a tuple of tensors, got {type(batch).__name__}")
    if device is None:
        return tuple(batch)
    return tuple(t.to(device, non_blocking=True) if isinstance(t, torch.Tensor) else t for t in batch)


def _split_loss(out, split, epoch, i):
    if isinstance(out, dict):
        if "loss" not in out:
            raise KeyError(f"loss_fn returned a dict without 'loss' (keys {list(out)}); return "
                           "{'loss': scalar to minimise, 'other': scalar to log, ...}")
        loss, terms = out["loss"], {k: v for k, v in out.items() if k != "loss"}
    else:
        loss, terms = out, {}
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        got = f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn must return a scalar tensor (or a dict with one under 'loss'), got {got} "
                         f"({split}, epoch {epoch}, batch {i}); average over the batch, e.g. .mean()")
    for k, v in terms.items():
        if isinstance(v, torch.Tensor) and v.numel() != 1:
            raise ValueError(f"loss_fn's term {k!r} must be a scalar, got shape {tuple(v.shape)}")
        if not isinstance(v, (torch.Tensor, int, float)):
            raise TypeError(f"loss_fn's term {k!r} must be a scalar tensor or number, got {type(v).__name__}")
    return loss.reshape(()), terms


def _n_rows(batch) -> int:
    return batch[0].shape[0] if isinstance(batch[0], torch.Tensor) and batch[0].dim() > 0 else 1


def _run_epoch(forward, batches, device, optimizer, epoch, split, before_step=None, dp=None):
    """One pass of forward(batch) -> loss_fn's output: mean loss and terms over examples (batch values weighted by
    batch size); steps when optimizer. Under torchrun (`dp`) this process computes on its share of each batch, the
    sums run over all processes, and the loss is weighted so that the averaged gradient is the whole batch's."""
    total, count, sums = 0.0, 0, {}
    n_batches = len(batches) if hasattr(batches, "__len__") else "?"
    for i, batch in enumerate(batches, start=1):
        if dp is None:
            batch = _to_device(batch, device)
            n = n_mine = _n_rows(batch)
            weight = 1.0
        else:
            batch = _to_device(batch, None)
            n = _n_rows(batch)
            mine, weight, n_mine = dp.shard(batch)
            batch = _to_device(mine, device)
        loss, terms = _split_loss(forward(batch), split, epoch, i)
        value = loss.item() if dp is None else dp.sum([loss.item() * n_mine])[0] / n
        if not math.isfinite(value):  # the same on every process: all of them stop here
            raise FloatingPointError(
                f"the {split} loss is {value} at epoch {epoch}, batch {i} of {n_batches}; training stopped "
                + ("before this step, so the model holds the weights from before this batch. "
                   if optimizer is not None else "during validation. ")
                + "Usual causes: a learning rate too high, log of 0 (compute in log-space, from logits), "
                "exp of a large log-variance; try a lower lr")
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            (loss if weight == 1.0 else loss * weight).backward()
            if before_step is not None:
                before_step()
            optimizer.step()
        total += value * n
        count += n
        for k, v in terms.items():
            v = v.detach().reshape(()) if isinstance(v, torch.Tensor) else float(v)
            sums[k] = sums.get(k, 0.0) + v * n_mine  # summed where it lives; one .item() per term per epoch
    if count == 0:
        raise ValueError(f"the {split} data gave no batches")
    if dp is not None and sums:
        sums = dict(zip(sums, dp.sum([float(v) for v in sums.values()])))
    return total / count, {k: float(v) / count for k, v in sums.items()}


def _apply_schedule(optimizer, schedule, t: int) -> None:
    factor = float(schedule(t))
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"schedule({t}) = {factor}; an lr multiplier must be positive and finite")
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor


def _make_optimizer(optimizer, model, lr):
    if optimizer is None:
        return torch.optim.Adam(model.parameters(), lr=lr)
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if callable(optimizer):
        opt = optimizer(model.parameters())
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(f"optimizer(params) must return a torch.optim.Optimizer, got {type(opt).__name__}")
        return opt
    raise TypeError("optimizer must be None (Adam(lr)), a torch.optim.Optimizer, or a function params -> "
                    f"Optimizer, got {type(optimizer).__name__}")


def _rng_state(device, batches) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    if device is not None and device.type == "mps":
        state["mps"] = torch.mps.get_rng_state()
    generator = getattr(batches, "generator", None)
    if isinstance(generator, torch.Generator):
        state["loader"] = generator.get_state()
    return state


def _set_rng_state(state: dict, device, batches) -> None:
    # torch's generators take their state as a CPU ByteTensor, whatever device they serve
    cpu = torch.device("cpu")
    torch.set_rng_state(state["cpu"].to(cpu))
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].to(cpu), device)
    if "mps" in state and device is not None and device.type == "mps":
        torch.mps.set_rng_state(state["mps"].to(cpu))
    generator = getattr(batches, "generator", None)
    if "loader" in state and isinstance(generator, torch.Generator):
        generator.set_state(state["loader"].to(cpu))


def _optimizer_settings(opt) -> dict:
    """The optimizer's class and hyperparameters (initial lr, betas, momentum, ...), without its state."""
    groups = [{k: (v if k != "lr" else g.get("initial_lr", v)) for k, v in g.items() if k not in ("params", "initial_lr")}
              for g in opt.param_groups]
    return {"class": type(opt).__name__, "groups": groups}


def _n_examples(batches) -> int | None:
    tensors = getattr(batches, "tensors", None)
    return int(tensors[0].shape[0]) if tensors else None


def _fingerprint(model, opt, batches, batch_size, valid, dynamic_binarize, seed, schedule_every) -> dict:
    """What a resumed run must share with the run that wrote the checkpoint (JSON-comparable)."""
    fp = {"model": type(model).__name__, "config": config_dict(model),
          "parameters": {k: list(v.shape) for k, v in model.state_dict().items()},
          "optimizer": _optimizer_settings(opt), "train_examples": _n_examples(batches), "batch_size": batch_size,
          "with_valid": valid is not None, "dynamic_binarize": dynamic_binarize, "seed": seed,
          "seed_offset": seed_offset(), "schedule_every": schedule_every}
    return json.loads(json.dumps(fp, default=str))  # tuples -> lists, odd values -> str: comparable after a round trip


def _fingerprint_mismatch(saved: dict, now: dict) -> list[str]:
    keys = sorted(set(saved) | set(now))
    return [f"{k}: checkpoint {saved.get(k)!r} vs now {now.get(k)!r}" for k in keys if saved.get(k) != now.get(k)]


# --------------------------------------------------------------------------------------------- data parallel
def _under_torchrun() -> bool:
    """True in a process started by torchrun (which sets RANK and WORLD_SIZE), or once a process group exists."""
    import torch.distributed as dist

    if not dist.is_available():
        return False
    return dist.is_initialized() or ("RANK" in os.environ and "WORLD_SIZE" in os.environ)


def _rank_device(dev: torch.device) -> torch.device:
    """This process's device under torchrun: GPU number LOCAL_RANK when the model is on a GPU, else the model's."""
    if dev.type != "cuda":
        return dev
    count, local = torch.cuda.device_count(), int(os.environ.get("LOCAL_RANK", "0"))
    if count == 1:
        return torch.device("cuda", 0)  # one visible GPU per process (CUDA_VISIBLE_DEVICES set per process)
    if local >= count:
        raise RuntimeError(f"local rank {local} has no GPU of its own: this node has {count}; start at most "
                           f"{count} processes per node (torchrun --nproc_per_node {count})")
    return torch.device("cuda", local)


def _destroy_process_group() -> None:
    """At exit, for a process group fit started. First a pause without the GIL: a backend thread that is still
    letting go of the tensors of the last collective needs it, and once the interpreter shuts down, a thread
    asking for the GIL ends the process ("terminate called without an active exception", gloo)."""
    import torch.distributed as dist

    time.sleep(0.2)
    if dist.is_initialized():
        dist.destroy_process_group()


class _LossModule(nn.Module):
    """The model with loss_fn as its forward, so that DistributedDataParallel sees every call loss_fn makes
    (model.elbo, model.log_weights, ...), not only model.forward."""

    def __init__(self, model: nn.Module, loss_fn: Callable):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch):
        return self.loss_fn(self.model, batch)


class _DataParallel:
    """fit's side of torch.distributed: this process's rank among `size` and the few collectives fit needs.

    Every process walks through the same global batches (the same loader, seed and binarization draws) and
    computes on its rows, `tensor_split(size)[rank]`; DistributedDataParallel averages the gradients.
    """

    def __init__(self, device: torch.device):
        import torch.distributed as dist

        self.dist = dist
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            atexit.register(_destroy_process_group)
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        # fit's own small collectives travel where the backend wants them: on the GPU for NCCL, else on the CPU
        self.comm_device = device if dist.get_backend() == "nccl" else torch.device("cpu")

    def wrap(self, model: nn.Module, loss_fn: Callable, device: torch.device) -> nn.Module:
        """DistributedDataParallel around (model, loss_fn); building it copies rank 0's weights to every process."""
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(_LossModule(model, loss_fn),
                                       device_ids=[device.index] if device.type == "cuda" else None)

    def shard(self, batch: tuple) -> tuple[tuple, float, int]:
        """(this process's rows of a batch, the weight n_mine * size / n of its mean loss, n_mine)."""
        n = _n_rows(batch)
        mine = tuple(t.tensor_split(self.size)[self.rank] if isinstance(t, torch.Tensor) and t.dim() > 0 else t
                     for t in batch)
        n_mine = _n_rows(mine)
        if n_mine == 0:  # fewer rows than processes: this one must still take part in the gradient sync,
            # so it computes on row 0 with weight 0
            return tuple(t[:1] if isinstance(t, torch.Tensor) and t.dim() > 0 else t for t in batch), 0.0, 0
        return mine, n_mine * self.size / n, n_mine

    def sum(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.comm_device)
        self.dist.all_reduce(t)
        return t.tolist()

    def any(self, flag) -> bool:
        return self.sum([1.0 if flag else 0.0])[0] > 0

    def share(self, obj):
        """rank 0's `obj` (anything picklable) on every process."""
        box = [obj if self.rank == 0 else None]
        self.dist.broadcast_object_list(box, src=0, device=self.comm_device)
        return box[0]

    def gather(self, obj) -> list:
        """[obj of rank 0, obj of rank 1, ...] (anything picklable) on every process."""
        out = [None] * self.size
        self.dist.all_gather_object(out, obj)
        return out

    def start_streams(self, state: dict | None, device, batches) -> None:
        """The random streams of a (resumed) run: rank 0's loader stream everywhere (the same batches and
        binarization draws), and a global stream of each process's own (its own sampling noise)."""
        saved = (state or {}).get("rng_ranks")
        if saved is not None and len(saved) == self.size:
            _set_rng_state(saved[self.rank], device, batches)  # resumed with as many processes: exactly
            return
        _set_rng_state(state["rng"] if state else self.share(_rng_state(device, batches)), device, batches)
        if self.rank > 0:  # rank 0 keeps the stream a single process would have; the others branch off it
            torch.manual_seed(int(torch.randint(0, 2**62, (1,))) + self.rank)


def _resume_point(model, path: Path, map_device, fp: dict) -> dict | None:
    """The fit state of the checkpoint at `path`, its weights loaded into `model`; None when there is none yet."""
    if not path.exists():
        return None
    state = _read(path, map_device)[2].get("fit_state")
    if state is None:
        raise CheckpointError(f"{path} was written by save(), not by fit(checkpoint=...): it has no "
                              "optimizer state or history to resume from; pass another checkpoint path")
    differs = _fingerprint_mismatch(state.get("fingerprint") or {}, fp)
    if differs:
        raise CheckpointError(f"{path} was written by a run with other settings, so it cannot be resumed here: "
                              + "; ".join(differs) + ". Resume with the same settings, or use a fresh checkpoint path")
    load(model, path)
    return state


def fit(model: nn.Module, loss_fn: Callable, data, epochs: int, batch_size: int = 100, lr: float = 1e-3,
        valid=None, optimizer=None, schedule: Callable[[int], float] | None = None, schedule_every: str = "epoch",
        dynamic_binarize: bool = False, seed: int | None = None, progress: bool | None = None, checkpoint=None,
        callback: Callable | None = None, device=None) -> History:
    """Minimise mean loss_fn(model, batch) -> scalar (or {"loss": scalar, term: scalar, ...}) over `data` for `epochs` epochs.

    data / valid: a tensor x, a tuple (x, y, ...) of equally long tensors (batched by gvlib.data.loader;
    `seed` (+ $GVLIB_SEED_OFFSET) seeds its shuffling, `dynamic_binarize` redraws x ~ Bernoulli(x) per batch,
    training data only), or any re-iterable of batches. valid is evaluated each epoch with model.eval() and
    torch.no_grad(). Reported losses are means over examples (batch means weighted by size).
    optimizer: None (Adam with `lr`), an Optimizer, or a function params -> Optimizer.
    schedule: epoch (0-based) -> lr multiplier of the optimizer's initial lr, e.g. `iwae_schedule(epochs)`;
    with schedule_every="step" it is called with the optimisation step instead (0-based, counted over the
    whole run, resumes included).
    checkpoint: a path; saved after every epoch (weights, optimizer, history, RNG states). If it exists, the run
    resumes after its last completed epoch and gives the same result as an uninterrupted run; a checkpoint
    written with other settings (model, config, optimizer and its hyperparameters, data size, batch size,
    validation data, binarization, seed) is refused with a CheckpointError that lists what differs.
    callback(epoch, model, history) runs after each epoch (1-based epoch); returning True stops the run.
    device: move the model there first; batches follow the model. progress: a tqdm bar over epochs; None shows
    it in a terminal or Jupyter unless GVLIB_QUIET=1. A NaN/inf loss raises FloatingPointError naming the epoch
    and batch. Returns the History, with the model in eval mode.

    Under torchrun (`torchrun --nproc_per_node N script.py`, the same script unchanged) fit trains data-parallel:
    it starts the process group (NCCL when the model is on a GPU, each process on GPU number $LOCAL_RANK; gloo
    on CPUs) unless one exists, wraps (model, loss_fn) in DistributedDataParallel, and each process computes
    on its rows of every batch of `batch_size` (the global batch: the same batches as one process, split N ways),
    with its mean loss weighted so that the averaged gradient is the whole batch's. The same seed then gives the
    same parameters with any N, up to the order of floating-point sums, as long as loss_fn draws no random
    numbers (the loader's order and binarization are the same everywhere; a sampling loss draws each process's
    noise from its own stream) and the model has no batch statistics. Every trainable parameter must get a
    gradient at every step (DistributedDataParallel's rule). Reported losses are over all processes;
    callback runs on every process (the run stops when it returns True on any); only rank 0 shows progress and
    writes the checkpoint, which resumes with any N.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fit trains an nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a function (model, batch) -> loss, got {type(loss_fn).__name__}")
    epochs = nonnegative_int("epochs", epochs)
    if schedule is not None and not callable(schedule):
        raise TypeError(f"schedule must be a function epoch -> lr multiplier, got {type(schedule).__name__}")
    if schedule_every not in ("epoch", "step"):
        raise ValueError(f"schedule_every must be 'epoch' or 'step', got {schedule_every!r}")

    if device is not None:
        model.to(device)
    dev = _model_device(model)
    if dev is None or not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    dp = None  # data parallel under torchrun: one process per GPU (or per CPU share), each on its rows of every batch
    if _under_torchrun():
        dev = _rank_device(dev)
        model.to(dev)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dp = _DataParallel(dev)
    batches = _as_batches(data, batch_size, True, dynamic_binarize, seed, "data")
    valid_batches = None if valid is None else _as_batches(valid, batch_size, False, False, 0, "valid")
    opt = _make_optimizer(optimizer, model, lr)
    for group in opt.param_groups:
        group.setdefault("initial_lr", group["lr"])
    fp = _fingerprint(model, opt, batches, batch_size, valid, dynamic_binarize, seed, schedule_every)

    history = History(valid=[] if valid is not None else None)
    start, steps = 0, 0
    path = Path(checkpoint) if checkpoint is not None else None
    if dp is None:
        state = _resume_point(model, path, dev, fp) if path is not None else None
    else:  # rank 0 reads the checkpoint (onto the CPU) and shares its state, or its failure, with the others
        state = error = None
        try:
            state = _resume_point(model, path, torch.device("cpu"), fp) if path is not None and dp.rank == 0 else None
        except Exception as e:  # noqa: BLE001 - every process must learn of it, or the others wait for ever
            error, state = e, CheckpointError(f"rank 0 could not resume from {path}: {type(e).__name__}: {e}")
        state = dp.share(state)
        if isinstance(state, CheckpointError):
            raise error or state
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        history = History(**state["history"])
        start, steps = state["epoch"], state.get("steps", 0)
        if dp is None:
            _set_rng_state(state["rng"], dev, batches)
    evaluate = lambda batch: loss_fn(model, batch)  # noqa: E731
    forward = evaluate
    if dp is not None:
        dp.start_streams(state, dev, batches)
        forward = dp.wrap(model, loss_fn, dev)  # rank 0's weights (fresh or resumed) on every process

    def write_checkpoint(epoch_done):
        if path is not None:
            rng = _rng_state(dev, batches)
            fit_state = {"epoch": epoch_done, "steps": steps, "optimizer": opt.state_dict(),
                         "history": history.as_dict(), "rng": rng, "fingerprint": fp}
            if dp is not None:
                fit_state["rng_ranks"] = dp.gather(rng)  # every process's streams, so a resumed run goes on exactly
            if dp is None or dp.rank == 0:
                save(model, path, fit_state=fit_state)

    def step_hook():
        nonlocal steps
        if schedule is not None and schedule_every == "step":
            _apply_schedule(opt, schedule, steps)
        steps += 1

    from tqdm.auto import tqdm

    quiet = not _show_progress(progress) or (dp is not None and dp.rank > 0)
    bar = tqdm(total=epochs, initial=min(start, epochs), disable=quiet,
               desc=f"fit {type(model).__name__}", unit="epoch", leave=True)
    try:
        for epoch in range(start, epochs):
            if history.stopped_early:
                break
            if schedule is not None and schedule_every == "epoch":
                _apply_schedule(opt, schedule, epoch)
            model.train()
            t0 = time.perf_counter()
            train_loss, train_terms = _run_epoch(forward, batches, dev, opt, epoch + 1, "training",
                                                 before_step=step_hook, dp=dp)
            history.epoch.append(epoch + 1)
            history.train.append(train_loss)
            history.time.append(time.perf_counter() - t0)
            history.lr.append(float(opt.param_groups[0]["lr"]))
            for k, v in train_terms.items():
                history.train_terms.setdefault(k, []).append(v)
            postfix = {"train": f"{train_loss:.4g}"}
            if valid_batches is not None:
                model.eval()
                with torch.no_grad():
                    valid_loss, valid_terms = _run_epoch(evaluate, valid_batches, dev, None, epoch + 1,
                                                         "validation", dp=dp)
                history.valid.append(valid_loss)
                for k, v in valid_terms.items():
                    history.valid_terms.setdefault(k, []).append(v)
                postfix["valid"] = f"{valid_loss:.4g}"
            if callback is not None:
                stop = callback(epoch + 1, model, history)
                if stop if dp is None else dp.any(stop):  # under torchrun: when it says so on any process
                    history.stopped_early = True
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
            write_checkpoint(epoch + 1)
    finally:
        bar.close()
    model.eval()
    if dp is not None and path is not None:
        dp.dist.barrier()  # rank 0's last checkpoint is written when fit returns on every process
    return history
