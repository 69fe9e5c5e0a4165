"""Burda, Grosse & Salakhutdinov (2016), Table 1: VAE and IWAE, 1 and 2 stochastic layers, k = 1, 5, 50.

    python -m gvlib.experiments.iwae_table --dataset digits --epochs 100 --seeds 0 1 2 --out runs/iwae_digits_3seeds
    python -m gvlib.experiments.iwae_table --dataset binarized_mnist --data-root ../shared/data --epochs 2
    python -m gvlib.experiments.iwae_table --dataset digits --epochs 30 --out runs/iwae_digits

For every number of stochastic layers L and every k it trains a VAE (loss -1/k sum_i log w_i, k samples)
and an IWAE (loss -L_k = -log 1/k sum_i w_i); for k = 1 the two losses are the same, so that model is
trained once and reported in both columns. Each model is then scored on the test set: the negative
log-likelihood -log p(x) estimated by L_{eval_k} (k = 5000 in the paper) and the number of active units
per layer (Cov_x E_q[h | x] > 0.01). Writes into --out:

- ``checkpoints/<model>.pt``: `gvlib.train.fit` checkpoints, written after every epoch (a killed run resumes
  from the last completed epoch of the model it was training);
- ``models/<model>.json``: one finished model's results (a re-run skips the models that have one);
- ``table.json`` and ``table.md``: our numbers beside the paper's, with the command, the settings, the
  hardware, each model's seed, device and wall times.

One model per process or machine (a cluster's job array, one GPU each): ``--only N`` (the N-th line of
``--list``) or ``--only layers=2,k=50,objective=iwae`` trains and scores only that model and writes only its
``models/<model>.json`` (with the settings it was made with and its hardware); ``--collect [FOLDER ...]`` then
builds the table from the parts in --out (and those in the FOLDERs, copied in), trains nothing, and refuses parts
made with other settings or a table with parts missing. The README has a Slurm recipe.

Seeds. ``--seed s`` trains every model once, from seed s. ``--seeds 0 1 2`` trains every model once per seed
(model names end in ``_s<seed>``; the seed fixes the initialisation, the data order and the binarization draws),
and each cell of the table is then the mean over the seeds with its standard error (sample s.d. / sqrt(n)),
the per-seed values kept in table.json.

Schedule. The paper trains for 3,280 epochs with Adam (lr 1e-3, betas 0.9/0.999, eps 1e-4, batch 20): 8
stages of 3^i epochs, i = 0..7, at lr 1e-3 * 10^(-i/7). ``--schedule paper`` (the default) keeps these
proportions but lays them over the *optimisation steps* of an --epochs run (stage i ends after
(3^0 + ... + 3^i) / 3280 of all steps), so that --epochs 3280 is the paper's schedule exactly, and a
one-epoch run still walks down the whole ladder instead of spending its only epoch at the last stage's
rate, which is what compressing per epoch would do. ``--schedule constant`` keeps lr 1e-3 throughout
(better for very short runs, but not the paper's).

Reference numbers: dynamically binarized MNIST (``--dataset mnist``) is the paper's Table 1; the fixed
binarization of Larochelle & Murray (``--dataset binarized_mnist``) has only one-layer IWAE numbers in the
paper's appendix (k = 1, 5, 50: 88.71, 87.63, 87.10). For ``--dataset digits`` (8x8 images, 64 pixels) the
MNIST numbers are shown for the trends only: the scales are not comparable.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from gvlib._files import atomic_write

__all__ = ["PAPER_TABLE1", "PAPER_FIXED_BINARIZATION", "DATASETS", "model_specs", "run", "main",
           "markdown_table", "mean_and_se", "ConfigMismatchError", "PartsError", "select_models", "only_argument", "collect"]

DATASETS = ("binarized_mnist", "mnist", "digits")

#: Table 1 of Burda et al. (2016), dynamically binarized MNIST: (layers, k) -> {objective: (NLL, active units)}.
PAPER_TABLE1 = {
    (1, 1): {"vae": (86.76, "19"), "iwae": (86.76, "19")},
    (1, 5): {"vae": (86.47, "20"), "iwae": (85.54, "22")},
    (1, 50): {"vae": (86.35, "20"), "iwae": (84.78, "25")},
    (2, 1): {"vae": (85.33, "16+5"), "iwae": (85.33, "16+5")},
    (2, 5): {"vae": (85.01, "17+5"), "iwae": (83.89, "21+5")},
    (2, 50): {"vae": (84.78, "17+5"), "iwae": (82.90, "26+7")},
}
#: The paper's appendix, fixed binarization (Larochelle & Murray 2011): one-layer IWAE only (k = 1 is the VAE too).
PAPER_FIXED_BINARIZATION = {
    (1, 1): {"vae": (88.71, None), "iwae": (88.71, None)},
    (1, 5): {"iwae": (87.63, None)},
    (1, 50): {"iwae": (87.10, None)},
}
_REFERENCE = {
    "mnist": ("Burda et al. (2016), Table 1: dynamically binarized MNIST", PAPER_TABLE1),
    "binarized_mnist": ("Burda et al. (2016), appendix: fixed binarization of Larochelle & Murray (2011), "
                        "one stochastic layer, IWAE only", PAPER_FIXED_BINARIZATION),
    "digits": ("Burda et al. (2016), Table 1 (MNIST, 784 pixels): for the trends only, digits has 64 pixels",
               PAPER_TABLE1),
}
_SETTINGS_THAT_MUST_MATCH = ("dataset", "epochs", "batch_size", "lr", "schedule", "seed", "seeds", "limit",
                             "eval_k", "eval_n")


class ConfigMismatchError(RuntimeError):
    """--out holds a run made with other settings."""


class PartsError(RuntimeError):
    """--collect found parts made with other settings, or not every model of the table."""


# ------------------------------------------------------------------------------------------------ data, models
def load_data(dataset: str, data_root=None, limit: int | None = None, eval_n: int | None = None,
              download: bool = True):
    """(x_train, x_test, dynamic_binarize): training rows (first `limit`) and `eval_n` test rows (a seeded random subset)."""
    from gvlib import data

    if dataset == "digits":
        x_train, _ = data.load_digits("train", binarize="dynamic")
        x_test, _ = data.load_digits("test", binarize="fixed")
        dynamic = True
    elif dataset == "mnist":
        x_train, _ = data.load_mnist("train", root=data_root, download=download, binarize="dynamic")
        x_test, _ = data.load_mnist("test", root=data_root, download=download, binarize="fixed")
        dynamic = True
    elif dataset == "binarized_mnist":
        x_train = data.load_binarized_mnist("train", root=data_root, download=download)
        x_test = data.load_binarized_mnist("test", root=data_root, download=download)
        dynamic = False
    else:
        raise ValueError(f"unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
    if limit is not None:
        x_train = x_train[:limit]
    if eval_n is not None and eval_n < x_test.shape[0]:
        # a random subset: binarized MNIST's test split is sorted by class
        order = torch.randperm(x_test.shape[0], generator=torch.Generator().manual_seed(0))
        x_test = x_test[order[:eval_n]]
    return x_train, x_test, dynamic


def build_model(dataset: str, layers: int, x_dim: int):
    """The paper's architectures on 784 pixels; `HierarchicalVAE.small` (64-64-h16 | 32-32-h8) on digits."""
    from gvlib.models import HierarchicalVAE

    if dataset == "digits":
        return HierarchicalVAE.small(n_layers=layers, x_dim=x_dim)
    return HierarchicalVAE.iwae_paper(n_layers=layers, x_dim=x_dim)


def model_specs(ks, layers, seeds=None) -> list[dict]:
    """The models to train: one per (layers, k, objective), the k = 1 model once ("vae=iwae"); with `seeds`, one
    per seed too (name suffix ``_s<seed>``, key "seed"), seeds innermost so that a partial run covers every cell."""
    specs = []
    for n_layers in layers:
        for k in ks:
            for objective in (("vae=iwae",) if k == 1 else ("vae", "iwae")):
                name = f"L{n_layers}_k{k}_{objective.replace('=', '_')}"
                spec = {"name": name, "layers": n_layers, "k": k, "objective": objective}
                if seeds is None:
                    specs.append(spec)
                else:
                    specs.extend({**spec, "name": f"{name}_s{s}", "seed": s} for s in seeds)
    return specs


def make_loss(objective: str, k: int):
    """loss_fn(model, batch) for `gvlib.train.fit`: -mean L_k (IWAE) or -mean of 1/k sum log w (VAE)."""
    from gvlib.bounds import elbo, iwae_bound

    def loss_fn(model, batch):
        log_w = model.log_weights(batch[0], k)                  # (k, batch)
        bound = elbo(log_w) if objective == "vae" else iwae_bound(log_w)
        return -bound.mean()

    return loss_fn


def step_schedule(kind: str, total_steps: int):
    """step (0-based) -> lr multiplier: the paper's 8 stages of 3^i laid over `total_steps`, or constant 1."""
    if kind == "constant":
        return None
    from gvlib.train import iwae_schedule

    return iwae_schedule(max(1, total_steps))  # indexed by step instead of epoch: same proportions


# ------------------------------------------------------------------------------------------------ evaluation
def evaluate(model, x_test, eval_k: int, progress: bool, desc: str):
    """(NLL estimate -mean L_{eval_k}, active units per layer) on x_test, in blocks with a progress bar."""
    from tqdm.auto import tqdm

    from gvlib.bounds import active_units, estimate_log_likelihood

    chunk = min(eval_k, 1000)
    per_call = max(1, 20_000 // chunk)               # inputs per log_weights call: chunk * per_call rows
    block = max(per_call, 100)
    values = []
    for start in tqdm(range(0, x_test.shape[0], block), desc=desc, unit="block", disable=not progress,
                      leave=False):
        xb = x_test[start:start + block]
        values.append(estimate_log_likelihood(model, xb, k=eval_k, chunk=chunk, batch_size=per_call))
    log_px = torch.cat(values)
    active = active_units(model, x_test) if x_test.shape[0] >= 2 else [0] * len(model.latent_dims)
    return -log_px.double().mean().item(), active


# ------------------------------------------------------------------------------------------------ tables
def _fmt_active(active):
    return "+".join(str(a) for a in active)


def _reference(dataset, layers, k, objective):
    table = _REFERENCE[dataset][1]
    entry = table.get((layers, k), {}).get(objective)
    return (None, None) if entry is None else entry


def mean_and_se(values) -> tuple[float, float | None]:
    """(mean, standard error s.d./sqrt(n) with the n - 1 s.d.) of a list of numbers; the s.e. is None for one value."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        raise ValueError("mean_and_se needs at least one value")
    mean = sum(values) / n
    if n == 1:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def _fmt_active_over_seeds(per_seed: list[list[int]]) -> str:
    """Per-layer mean ± s.e. of the active units over seeds, bottom + top: "13.3 ± 0.9" or "8.0 ± 0.6 + 0.0 ± 0.0"."""
    parts = []
    for layer in zip(*per_seed):
        mean, se = mean_and_se(layer)
        parts.append(f"{mean:.1f} ± {se:.1f}")
    return " + ".join(parts)


def _aggregate_cell(row: dict, obj: str, cell: list[dict]) -> None:
    """Fill row's {obj}_* fields from the models of one cell: one model as before, several (seeds) as mean ± s.e."""
    cell = sorted(cell, key=lambda r: r.get("seed", 0))
    if len(cell) == 1:
        r = cell[0]
        row[f"{obj}_nll"] = r["nll"]
        row[f"{obj}_active"] = _fmt_active(r["active"])
        row[f"{obj}_model"] = r["name"]
        return
    nll, se = mean_and_se([r["nll"] for r in cell])
    row[f"{obj}_nll"], row[f"{obj}_nll_se"] = nll, se
    row[f"{obj}_nll_seeds"] = [r["nll"] for r in cell]
    row[f"{obj}_active"] = _fmt_active_over_seeds([r["active"] for r in cell])
    row[f"{obj}_active_mean"] = [mean_and_se(layer)[0] for layer in zip(*(r["active"] for r in cell))]
    row[f"{obj}_active_se"] = [mean_and_se(layer)[1] for layer in zip(*(r["active"] for r in cell))]
    row[f"{obj}_active_seeds"] = [list(r["active"]) for r in cell]
    row[f"{obj}_seeds"] = [r.get("seed") for r in cell]
    row[f"{obj}_models"] = [r["name"] for r in cell]


def table_rows(results: list[dict], dataset: str) -> list[dict]:
    """One row per (layers, k) with VAE and IWAE beside the paper's numbers; the k = 1 model fills both columns.
    Several models per cell (one per seed) give the mean and its standard error (`{obj}_nll_se`, per-seed lists)."""
    cells = {}
    for r in results:
        for obj in (("vae", "iwae") if r["objective"] == "vae=iwae" else (r["objective"],)):
            cells.setdefault((r["layers"], r["k"], obj), []).append(r)
    rows = {}
    for (layers, k, obj), cell in sorted(cells.items()):
        row = rows.setdefault((layers, k), {"layers": layers, "k": k})
        _aggregate_cell(row, obj, cell)
    out = []
    for key in sorted(rows):
        row = rows[key]
        for obj in ("vae", "iwae"):
            nll, act = _reference(dataset, row["layers"], row["k"], obj)
            row[f"paper_{obj}_nll"], row[f"paper_{obj}_active"] = nll, act
        out.append(row)
    return out


def markdown_table(rows: list[dict]) -> str:
    """The table in the paper's layout: layers, k, then NLL and active units for VAE and IWAE, ours (paper)."""
    def cell(v, paper, fmt="{:.2f}", se=None):
        ours = "–" if v is None else (fmt.format(v) if isinstance(v, float) else str(v))
        if se is not None:
            ours += " ± " + fmt.format(se)
        ref = "–" if paper is None else (fmt.format(paper) if isinstance(paper, float) else str(paper))
        return f"{ours} ({ref})"

    lines = ["| # stoch. layers | k | VAE NLL (paper) | VAE active (paper) | IWAE NLL (paper) | IWAE active (paper) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['layers']} | {r['k']} | {cell(r.get('vae_nll'), r['paper_vae_nll'], se=r.get('vae_nll_se'))} | "
                     f"{cell(r.get('vae_active'), r['paper_vae_active'])} | "
                     f"{cell(r.get('iwae_nll'), r['paper_iwae_nll'], se=r.get('iwae_nll_se'))} | "
                     f"{cell(r.get('iwae_active'), r['paper_iwae_active'])} |")
    return "\n".join(lines)


def hardware(device: torch.device) -> dict:
    """What ran it: machine, CPU count, torch threads and version, the device (GPU name where there is one)."""
    info = {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "device": str(device)}
    try:
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def stored_tables(folder) -> list[tuple[Path, dict]]:
    """The stored tables (path, table dict) in `folder` (the course keeps them in results/: iwae_table_<dataset>.json), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [(p, json.loads(p.read_text())) for p in sorted(folder.glob("iwae_table_*.json"))]


def _plural(n, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _write_json(path: Path, obj) -> None:
    text = (json.dumps(obj, indent=2) + "\n").encode()
    atomic_write(path, lambda f: f.write(text))


# ------------------------------------------------------------------------------------------------ the run
def run(dataset: str = "digits", epochs: int = 10, ks=(1, 5, 50), layers=(1, 2), out="runs/iwae_table",
        data_root=None, device=None, eval_k: int = 5000, eval_n: int | None = None, limit: int | None = None,
        batch_size: int = 20, lr: float = 1e-3, schedule: str = "paper", seed: int = 0, progress: bool | None = None,
        download: bool = True, command: str | None = None, log=print, only=None, collect_from=None,
        seeds=None) -> dict:
    """Train and score the models of Table 1 (skipping finished ones in `out`); returns the table.json dict.

    only: train and score only the models `select_models` picks (an index or {"layers": 2, "k": 50, ...}), write
    their parts and no table; returns {"models": [...], "settings": ...}. collect_from: a list of folders or part
    files (may be empty): build the table from the parts (see `collect`), training nothing. seeds (distinct ints):
    every model is trained once per seed and the cells are means ± s.e. over them.
    """
    from gvlib import get_device, seed_everything
    from gvlib.train import IWAE_ADAM, fit

    _check_run_args(dataset, epochs, ks, layers, eval_k, eval_n, limit, batch_size, lr, schedule)
    seeds = _check_seeds(seeds)
    ks, layers = list(ks), list(layers)
    device = get_device(device) if not isinstance(device, torch.device) else device
    if progress is None:
        progress = os.environ.get("GVLIB_QUIET", "").strip().lower() in ("", "0", "false", "no")
    out = Path(out)
    settings = {"dataset": dataset, "epochs": epochs, "ks": ks, "layers": layers, "batch_size": batch_size,
                "lr": lr, "schedule": schedule, "seed": seed if seeds is None else None, "limit": limit,
                "eval_k": eval_k, "eval_n": eval_n, "adam": {k: v for k, v in IWAE_ADAM.items() if k != "lr"}}
    if seeds is not None:
        settings["seeds"] = seeds
    config_path = out / "config.json"
    if config_path.exists():
        old = json.loads(config_path.read_text())
        diff = [f"{k}: {old.get(k)!r} there, {settings.get(k)!r} now" for k in _SETTINGS_THAT_MUST_MATCH
                if old.get(k) != settings.get(k)]
        if diff:
            raise ConfigMismatchError(f"{out} holds a run with other settings ({'; '.join(diff)}); pass another "
                                      "--out, or delete that folder to start again")
    else:
        _write_json(config_path, settings)

    x_train, x_test, dynamic = load_data(dataset, data_root, limit, eval_n, download)
    x_dim = x_train.shape[1]
    steps_per_epoch = math.ceil(x_train.shape[0] / batch_size)
    specs = model_specs(ks, layers, seeds)
    if only is not None:
        specs = select_models(specs, only)
    if collect_from is not None:
        _gather_parts(out, collect_from, specs, _part_settings(settings), log)
    log(f"iwae_table: {len(specs)} models on {dataset} ({x_train.shape[0]} training rows, {x_test.shape[0]} test rows, "
        f"{'dynamic' if dynamic else 'fixed'} binarization), {epochs} epochs of {steps_per_epoch} steps, device {device}")
    results = []
    t_start = time.perf_counter()
    from tqdm.auto import tqdm
    for spec in tqdm(specs, desc="iwae_table", unit="model", disable=not progress):
        result_path = out / "models" / f"{spec['name']}.json"
        if result_path.exists():
            results.append(json.loads(result_path.read_text()))
            log(f"  {spec['name']}: done before, skipped (NLL {results[-1]['nll']:.2f})")
            continue
        model_seed = spec.get("seed", seed)            # --seeds: the spec's own seed; else --seed for every model
        seed_everything(model_seed)                    # the same initialisation for every model of a size and seed
        model = build_model(dataset, spec["layers"], x_dim).to(device)
        opt = torch.optim.Adam(model.parameters(), **{**IWAE_ADAM, "lr": lr})
        sched = step_schedule(schedule, epochs * steps_per_epoch)
        objective = "iwae" if spec["objective"] == "vae=iwae" else spec["objective"]
        loss_fn = make_loss(objective, spec["k"])
        checkpoint = out / "checkpoints" / f"{spec['name']}.pt"
        resumed = checkpoint.exists()
        t0 = time.perf_counter()
        history = fit(model, loss_fn, x_train, epochs=epochs, batch_size=batch_size, optimizer=opt,
                      schedule=sched, schedule_every="step", dynamic_binarize=dynamic, seed=model_seed,
                      progress=progress, checkpoint=checkpoint)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        seed_everything(model_seed + 1)
        nll, active = evaluate(model, x_test.to(device), eval_k, progress, f"eval {spec['name']}")
        eval_s = time.perf_counter() - t0
        result = {**spec, "nll": nll, "active": active, "active_str": _fmt_active(active), "seed": model_seed,
                  "epochs": epochs, "final_train_loss": history.train[-1] if history.train else None,
                  "train_seconds": round(train_s, 2), "train_seconds_all_epochs": round(sum(history.time), 2),
                  "eval_seconds": round(eval_s, 2), "resumed": resumed, "device": str(device),
                  "n_params": sum(p.numel() for p in model.parameters()),
                  "finished": datetime.datetime.now().isoformat(timespec="seconds"),
                  "settings": _part_settings(settings), "hardware": hardware(device)}
        _write_json(result_path, result)
        results.append(result)
        log(f"  {spec['name']}: NLL {nll:.2f}, active {result['active_str']}, train {train_s:.0f} s, eval {eval_s:.0f} s")

    if only is not None:  # one job of several: its parts are written, the table is --collect's
        log(f"iwae_table: wrote {', '.join(str(out / 'models' / (s['name'] + '.json')) for s in specs)}; "
            "build the table with --collect once every model is done")
        return {"models": results, "settings": settings}
    rows = table_rows(results, dataset)
    table = {
        "command": command,
        "settings": settings,
        "schedule_note": ("paper: Burda et al.'s 8 stages of 3^i epochs at lr 1e-3 * 10^(-i/7), laid over the "
                          "optimisation steps of this run in the same proportions" if schedule == "paper"
                          else "constant lr"),
        "reference": _REFERENCE[dataset][0],
        "nll_estimate": f"-mean over {x_test.shape[0]} test images of L_k with k = {eval_k} importance samples",
        "hardware": hardware(device),
        "rows": rows,
        "models": results,
        "seconds_this_call": round(time.perf_counter() - t_start, 1),
        "train_seconds_total": round(sum(r["train_seconds_all_epochs"] for r in results), 1),
        "eval_seconds_total": round(sum(r["eval_seconds"] for r in results), 1),
        "trained_on": _trained_on(results),
        "seeds": seeds if seeds is not None else [seed],
    }
    _write_json(out / "table.json", table)
    md = [f"# IWAE table on {dataset}", "",
          f"Command: `{command}`" if command else "Made by `gvlib.experiments.iwae_table.run`.", "",
          f"Ours, with the reference in parentheses: {table['reference']}.", "",
          markdown_table(rows), "",
          f"NLL: {table['nll_estimate']} (nats). Active units: Cov_x E_q[h | x] > 0.01, per layer (bottom + top).",
          f"Training: {_plural(epochs, 'epoch')} on {x_train.shape[0]} images, Adam (lr {lr}, eps 1e-4), batch {batch_size}, "
          f"schedule: {table['schedule_note']}; " + (f"seed {seed} for every model." if seeds is None else
          f"every model trained once per seed ({', '.join(map(str, seeds))}); each cell is the mean ± standard error "
          f"over the {len(seeds)} seeds (per-seed values in table.json)."),
          f"Hardware: {table['hardware']['processor'] or table['hardware']['machine']}, {table['hardware']['cpu_count']} "
          f"CPUs, {_plural(table['hardware']['torch_threads'], 'torch thread')}, device {device}"
          + (f" ({table['hardware']['gpu']})" if "gpu" in table["hardware"] else "") + f", torch {torch.__version__}.",
          f"Wall time: training {table['train_seconds_total']:.0f} s, evaluation {table['eval_seconds_total']:.0f} s "
          "(summed over models; per model in table.json).", ""]
    if len(table["trained_on"]) > 1 or (table["trained_on"] and table["trained_on"][0] != _machine(table["hardware"])):
        md[-1:] = [f"Trained on: {'; '.join(table['trained_on'])} (the hardware line is the machine that built the "
                   "table from the parts).", ""]
    md_text = "\n".join(md).encode()
    atomic_write(out / "table.md", lambda f: f.write(md_text))
    return table


def _positive_int(name, v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")


def _check_run_args(dataset, epochs, ks, layers, eval_k, eval_n, limit, batch_size, lr, schedule):
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
    _positive_int("epochs", epochs)
    ks, layers = list(ks), list(layers)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks) or len(set(ks)) != len(ks):
        raise ValueError(f"k must be distinct positive ints (importance samples), e.g. 1 5 50, got {ks}")
    if not layers or any(n not in (1, 2) for n in layers) or len(set(layers)) != len(layers):
        raise ValueError(f"layers must be 1 and/or 2 (the paper's architectures), got {layers}")
    _positive_int("eval_k", eval_k)
    _positive_int("batch_size", batch_size)
    if eval_n is not None:
        _positive_int("eval_n", eval_n)
        if eval_n < 2:
            raise ValueError(f"eval_n must be at least 2 (active units are a variance over test images), got {eval_n}")
    if limit is not None:
        _positive_int("limit", limit)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if schedule not in ("paper", "constant"):
        raise ValueError(f"schedule must be 'paper' or 'constant', got {schedule!r}")


def _check_seeds(seeds):
    """None, or the seeds as a list of distinct ints (at least one)."""
    if seeds is None:
        return None
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct ints, e.g. 0 1 2, got {seeds}")
    return seeds


# ------------------------------------------------------------------------------------------------ one model per job
def only_argument(text: str):
    """--only's value: an index "7" -> 7, or "layers=2,k=50,objective=iwae" -> {"layers": 2, "k": 50, "objective": "iwae"}."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    only = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise ValueError(f"--only {text!r}: expected an index (a line of --list) or key=value pairs such as "
                             "layers=2,k=50,objective=iwae")
        value = value.strip()
        only[key.strip()] = int(value) if value.lstrip("-").isdigit() else value
    if not only:
        raise ValueError("--only needs an index or key=value pairs, e.g. --only layers=2,k=50,objective=iwae")
    return only


def _only_text(spec: dict) -> str:
    """The --only value that picks exactly this model."""
    keys = [k for k in spec if k != "name"]
    return ",".join(f"{k}={spec[k]}" for k in keys)


def _matches(spec: dict, key: str, value) -> bool:
    if key == "objective" and spec["objective"] == "vae=iwae":
        return value in ("vae", "iwae", "vae=iwae")  # the k = 1 model is both
    return str(spec[key]) == str(value)


def select_models(specs: list[dict], only) -> list[dict]:
    """The models `only` picks: specs[only] for an int, else those whose every key=value matches (at least one)."""
    listing = "; ".join(f"{i}: {_only_text(s)}" for i, s in enumerate(specs))
    if isinstance(only, int):
        if not 0 <= only < len(specs):
            raise ValueError(f"--only {only}: there are {len(specs)} models, 0 to {len(specs) - 1} ({listing})")
        return [specs[only]]
    keys = sorted({k for s in specs for k in s if k != "name"})
    unknown = [k for k in only if k not in keys]
    if unknown:
        raise ValueError(f"--only: unknown key {', '.join(unknown)}; a model is picked by {', '.join(keys)}")
    picked = [s for s in specs if all(_matches(s, k, v) for k, v in only.items())]
    if not picked:
        raise ValueError(f"--only {_only_text(only)} picks none of the {len(specs)} models ({listing})")
    return picked


def _part_settings(settings: dict) -> dict:
    """What a part must share with the table it joins."""
    return {k: settings.get(k) for k in _SETTINGS_THAT_MUST_MATCH}


def _read_parts(sources) -> list[tuple[Path, dict]]:
    """(path, part) for every part in the folders (a run's --out or its models/) and files named."""
    found = []
    for src in map(Path, sources):
        if src.is_file():
            files = [src]
        elif (src / "models").is_dir():
            files = sorted((src / "models").glob("*.json"))
        elif src.is_dir():
            files = sorted(src.glob("*.json"))
        else:
            raise PartsError(f"--collect {src}: no such folder or file")
        for f in files:
            try:
                part = json.loads(f.read_text())
            except (OSError, ValueError) as e:
                raise PartsError(f"{f} is not a readable part ({e}); delete it or run its model again") from e
            if isinstance(part, dict) and "name" in part and "nll" in part:
                found.append((f, part))
    return found


def _gather_parts(out: Path, sources, specs: list[dict], expected: dict, log) -> None:
    """Check the parts in out/models and in `sources` against `expected`, copy the new ones into out/models, and
    raise PartsError unless every model of `specs` has exactly one part made with these settings."""
    wanted = {s["name"] for s in specs}
    own = out / "models"
    parts = {}
    for path, part in _read_parts([own] if own.is_dir() else []) + _read_parts(sources):
        if part["name"] not in wanted:
            log(f"  {path}: {part['name']} is not in this table (other --k or --layers), left out")
            continue
        saved = part.get("settings")
        if saved is None and path.parent != own:  # parts in --out itself are vouched for by its config.json
            raise PartsError(f"{path} does not say what settings it was made with; make it again with this version")
        differs = [f"{k}: {saved.get(k)!r} there, {v!r} here" for k, v in expected.items()
                   if saved is not None and saved.get(k) != v]
        if differs:
            raise PartsError(f"{path} ({part['name']}) was made with other settings: {'; '.join(differs)}")
        if part["name"] in parts and parts[part["name"]][1] != part:
            raise PartsError(f"two different parts for {part['name']}: {parts[part['name']][0]} and {path}; "
                             "keep one")
        parts.setdefault(part["name"], (path, part))
    missing = [s for s in specs if s["name"] not in parts]
    if missing:
        raise PartsError(f"{len(missing)} of {len(specs)} models have no part yet: "
                         + "; ".join(f"{s['name']} (--only {_only_text(s)})" for s in missing)
                         + ". Run them, then --collect again")
    for name, (path, part) in sorted(parts.items()):
        if path.parent != own:
            _write_json(own / f"{name}.json", part)
            log(f"  {name}: part copied from {path}")


def collect(out, sources=(), **settings) -> dict:
    """Build table.json and table.md in `out` from the models' parts, training nothing: run(..., collect_from=sources)."""
    return run(out=out, collect_from=list(sources), **settings)


def _machine(hw: dict) -> str:
    """One machine in words: the GPU, or the processor (machine type), and the CPU count."""
    if hw.get("gpu"):
        return f"{hw['gpu']} ({hw['device']})"
    return f"{hw.get('processor') or hw.get('machine')}, {hw.get('cpu_count')} CPUs ({hw.get('device')})"


def _trained_on(results: list[dict]) -> list[str]:
    """The distinct machines the models were trained on (parts made before parts recorded it count as here)."""
    return sorted({_machine(r["hardware"]) for r in results if r.get("hardware")})


def _under_torchrun() -> bool:
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


# ------------------------------------------------------------------------------------------------ command line
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gvlib.experiments.iwae_table",
        description="The experiment of Table 1 of Burda et al. (2016), with its protocol (--epochs 3280 for its "
                    "scale): VAE and IWAE, k importance samples, 1-2 stochastic layers; test NLL and active units "
                    "beside the paper's numbers. Resumable: run the same command again after an interruption.")
    p.add_argument("--dataset", required=True, choices=DATASETS,
                   help="binarized_mnist: Larochelle & Murray's fixed binarization (paper's appendix); mnist: "
                        "dynamically binarized (Table 1); digits: sklearn's 8x8 digits (small, offline)")
    p.add_argument("--epochs", type=int, required=True, help="training epochs per model (paper: 3280)")
    p.add_argument("--k", type=int, nargs="+", default=[1, 5, 50], help="importance samples (default 1 5 50)")
    p.add_argument("--layers", type=int, nargs="+", default=[1, 2], help="stochastic layers (default 1 2)")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: gvlib.get_device())")
    p.add_argument("--data-root", default=None,
                   help="folder holding mnist/ or binarized_mnist/ (default $GVLIB_DATA or ~/.cache/gvlib)")
    p.add_argument("--out", default=None, help="output folder (default runs/iwae_table_<dataset>)")
    p.add_argument("--eval-k", type=int, default=5000, help="importance samples of the NLL estimate (paper: 5000)")
    p.add_argument("--eval-n", type=int, default=None, help="score on a random subset of this many test images")
    p.add_argument("--limit", type=int, default=None, help="train on the first N training images only (tiny runs)")
    p.add_argument("--batch-size", type=int, default=20, help="mini-batch size (paper: 20)")
    p.add_argument("--lr", type=float, default=1e-3, help="initial learning rate (paper: 1e-3)")
    p.add_argument("--schedule", default="paper", choices=("paper", "constant"),
                   help="paper: the 8 stages 3^i at lr*10^(-i/7), proportions kept over the run's steps")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=0, help="seed of every model's initialisation and data order")
    seeds.add_argument("--seeds", type=int, nargs="+", default=None,
                       help="train every model once per seed; cells are mean ± s.e. over seeds (e.g. 0 1 2)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading absent data files")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--only", default=None, metavar="N|KEY=VALUE,...",
                   help="train and score one model only (a job of an array) and write its part: the N-th of --list "
                        "(e.g. $SLURM_ARRAY_TASK_ID) or e.g. layers=2,k=50,objective=iwae")
    p.add_argument("--collect", nargs="*", default=None, metavar="FOLDER",
                   help="build the table from the parts in --out and in these folders (runs' --out or their "
                        "models/), training nothing; refuses parts made with other settings")
    p.add_argument("--list", action="store_true", help="print the models, one per line, with their --only index")
    return p


def main(argv=None) -> int:
    """Command line entry point: parse, check, run; bad arguments and missing data exit with status 2."""
    parser = _parser()
    args = parser.parse_args(argv)
    argv_list = sys.argv[1:] if argv is None else list(argv)
    command = "python -m gvlib.experiments.iwae_table " + " ".join(shlex.quote(a) for a in argv_list)
    out = args.out or f"runs/iwae_table_{args.dataset}"
    try:
        _check_run_args(args.dataset, args.epochs, args.k, args.layers, args.eval_k, args.eval_n, args.limit,
                        args.batch_size, args.lr, args.schedule)
        _check_seeds(args.seeds)
        only = None if args.only is None else only_argument(args.only)
        if only is not None:
            select_models(model_specs(args.k, args.layers, args.seeds), only)
        if only is not None and args.collect is not None:
            raise ValueError("--only (train one model) and --collect (build the table) are separate steps")
        if _under_torchrun():
            raise ValueError("the table's models are small (batch 20) and train one per process: start one --only "
                             "job per GPU (see the README) instead of torchrun")
        from gvlib import get_device
        device = get_device(args.device)
    except (ValueError, RuntimeError) as e:
        parser.error(str(e))
    if args.list:
        for i, spec in enumerate(model_specs(args.k, args.layers, args.seeds)):
            print(f"{i}\t--only {_only_text(spec)}\t{spec['name']}")
        return 0
    if args.data_root is not None and not Path(args.data_root).is_dir():
        parser.error(f"--data-root {args.data_root} is not a folder (it should hold mnist/ or binarized_mnist/)")
    from gvlib.data import DataError
    try:
        table = run(args.dataset, args.epochs, args.k, args.layers, out, args.data_root, device, args.eval_k,
                    args.eval_n, args.limit, args.batch_size, args.lr, args.schedule, args.seed,
                    progress=False if args.quiet else None, download=not args.no_download, command=command,
                    only=only, collect_from=args.collect, seeds=args.seeds)
    except (DataError, ConfigMismatchError, PartsError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    if only is not None:
        return 0
    print(markdown_table(table["rows"]))
    print(f"wrote {Path(out) / 'table.md'} and {Path(out) / 'table.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
