"""Figures of the course in one house style: a colour-blind-safe palette, large fonts, dpi 90.

Importing this module changes nothing. Every function here draws inside `style()` (matplotlib's rc_context,
so the user's settings are restored after), takes `ax=` to draw into an existing Axes (compose figures with
plt.subplots), sets a title and axis labels, and returns the Figure. A notebook that wants the house style
for its own figures too calls `use_style()` once. Tensors on any device are accepted (see `to_numpy`).
"""
from __future__ import annotations

import functools
import math
import warnings
from typing import Callable, Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch
from cycler import cycler
from matplotlib.figure import Figure

__all__ = ["PALETTE", "MARKERS", "STYLE", "CMAP", "CMAP_IMAGE", "style", "use_style", "to_numpy", "image_grid",
           "compare_images", "plot_curves_with_spread", "plot_latent_2d", "plot_manifold_2d", "plot_samples_2d",
           "plot_density_2d"]

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision deficiency.
# Ordered for lines on white: blue, vermillion, bluish green, orange, reddish purple, sky blue, black, yellow.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"]
MARKERS = ["o", "s", "^", "D", "v"]  # categorical scatters: colour i % 8 and marker i % 5 (so 10 digits differ)
CMAP = "viridis"        # densities and continuous values: perceptually uniform, colour-blind safe
CMAP_IMAGE = "gray"     # images: pixel intensity 0 = black, 1 = white
DPI = 90

STYLE = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.figsize": (7.0, 4.5),
    "figure.facecolor": "white",
    "font.size": 13,
    "axes.titlesize": 15,
    "axes.labelsize": 14,
    "xtick.labelsize": 12,
    "ytick.labelsize": 12,
    "legend.fontsize": 12,
    "legend.title_fontsize": 12,
    "legend.framealpha": 0.85,
    "lines.linewidth": 2.2,
    "lines.markersize": 6,
    "axes.prop_cycle": cycler(color=PALETTE),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "image.cmap": CMAP,
}


def style(**overrides):
    """The house rcParams (STYLE, with `overrides`) as a context: `with style(): ...`; the user's settings come back after."""
    return mpl.rc_context({**STYLE, **overrides})


def use_style(**overrides) -> None:
    """Apply the house rcParams for the rest of the session (a notebook's first cell), for the notebook's own figures."""
    mpl.rcParams.update({**STYLE, **overrides})


def _styled(fn):
    """Run a plotting function inside `style()`."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with style():
            return fn(*args, **kwargs)
    return wrapper


def to_numpy(x) -> np.ndarray:
    """A NumPy copy of a tensor on any device (x.detach().to("cpu"), float32 for half types) or of an array-like."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu")  # plotting needs host memory; the library computes on the inputs' device
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


# --------------------------------------------------------------------------------------------- helpers
def _axes(ax, figsize=None):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, dpi=DPI, layout="constrained")  # room for outside legends
        return fig, ax
    return ax.figure, ax


def _finish(ax, title, xlabel=None, ylabel=None):
    ax.set_title(title, fontsize=STYLE["axes.titlesize"])
    if xlabel is not None:
        ax.set_xlabel(xlabel, fontsize=STYLE["axes.labelsize"])
    if ylabel is not None:
        ax.set_ylabel(ylabel, fontsize=STYLE["axes.labelsize"])
    ax.tick_params(labelsize=STYLE["xtick.labelsize"])
    return ax.figure


def _as_images(images, image_shape=None, name="images"):
    """(n, D), (n, H, W), (n, 1, H, W), (n, 3, H, W) or (n, H, W, 3) -> (n, H, W) or (n, H, W, 3) NumPy."""
    a = to_numpy(images).astype(np.float32, copy=False)
    if a.ndim < 2:
        raise ValueError(f"{name} must be a batch of images: (n, D), (n, H, W) or (n, C, H, W), got shape {a.shape}; "
                         "for one image pass x[None]")
    n = a.shape[0]
    if image_shape is not None:
        shape = tuple(int(s) for s in image_shape)
        if math.prod(shape) != math.prod(a.shape[1:]):
            raise ValueError(f"{name} of shape {a.shape} have {math.prod(a.shape[1:])} values each, "
                             f"which cannot be reshaped to image_shape={shape}")
        a = a.reshape(n, *shape)
    elif a.ndim == 2:
        d = a.shape[1]
        side = math.isqrt(d)
        if side * side != d:
            raise ValueError(f"cannot infer the image shape of {name} with D={d} pixels each (not a square such as "
                             "64 = 8x8 or 784 = 28x28); pass image_shape=(H, W)")
        a = a.reshape(n, side, side)
    if a.ndim == 4 and a.shape[1] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 1, -1)  # (n, C, H, W) -> (n, H, W, C)
    if a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 3 or (a.ndim == 4 and a.shape[-1] == 3)):
        raise ValueError(f"cannot read {name} of shape {to_numpy(images).shape} as images: expected (n, D), "
                         "(n, H, W), (n, 1, H, W) or (n, 3, H, W); pass image_shape=(H, W) for flat images")
    return a


def _mosaic(a, nrow, pad, fill, top_gap=0):
    """Tile (n, H, W[, 3]) images into one array, `nrow` images per row, `pad` pixels between them."""
    n, h, w = a.shape[:3]
    ncol = nrow
    rows = -(-n // ncol)
    cell_h, cell_w = h + pad + top_gap, w + pad
    out = np.full((rows * cell_h + pad, ncol * cell_w + pad) + a.shape[3:], fill, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, ncol)
        y, x = pad + top_gap + r * cell_h, pad + c * cell_w
        out[y:y + h, x:x + w] = a[i]
    return out, rows, cell_h, cell_w


def _value_range(a, vmin, vmax):
    if vmin is None and vmax is None and a.size and np.nanmin(a) >= 0 and np.nanmax(a) <= 1:
        return 0.0, 1.0  # pixel intensities: keep 0 black and 1 white whatever the batch holds
    return vmin, vmax


# --------------------------------------------------------------------------------------------- images
@_styled
def image_grid(images, nrow: int | None = None, image_shape=None, titles: Sequence[str] | None = None, ax=None,
               title: str | None = None, vmin=None, vmax=None, cmap: str = CMAP_IMAGE) -> Figure:
    """Grid of n images (n, D) | (n, H, W) | (n, C, H, W), D = 64 / 784 read as 8x8 / 28x28; `nrow` images per row.

    nrow follows torchvision's make_grid: the number of images in each row (default max(ceil(sqrt(n)), min(n, 10))).
    titles: one short string per image, drawn above it. Values in [0, 1] map 0 to black and 1 to white.
    """
    a = _as_images(images, image_shape)
    n, h, w = a.shape[:3]
    if n == 0:
        raise ValueError("image_grid got 0 images")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles has {len(titles)} entries for {n} images")
    ncol = int(nrow) if nrow is not None else max(math.ceil(math.sqrt(n)), min(n, 10))  # wide: slides are wide
    if ncol < 1:
        raise ValueError(f"nrow (images per row) must be >= 1, got {nrow}")
    pad = max(1, h // 14)
    gap = int(round(0.45 * h)) if titles is not None else 0
    vmin, vmax = _value_range(a, vmin, vmax)
    lo = vmin if vmin is not None else float(np.nanmin(a))
    hi = vmax if vmax is not None else float(np.nanmax(a))
    mosaic, rows, cell_h, cell_w = _mosaic(a, ncol, pad, fill=hi, top_gap=gap)
    if ax is None:
        size = min(1.1, 9.0 / ncol)
        fig, ax = _axes(None, figsize=(max(3.0, ncol * size), max(1.5, rows * size * cell_h / cell_w + 0.6)))
    fig = ax.figure
    ax.imshow(mosaic, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for side in ax.spines.values():
        side.set_visible(False)
    if titles is not None:
        for i, t in enumerate(titles):
            r, c = divmod(i, ncol)
            ax.text(pad + c * cell_w + w / 2, pad + r * cell_h + gap - 0.5, str(t), ha="center", va="bottom",
                    fontsize=10)
    shape = "x".join(str(s) for s in a.shape[1:3])
    return _finish(ax, title if title is not None else f"{n} images ({shape})")


@_styled
def compare_images(rows: Mapping[str, object], image_shape=None, ax=None, title: str | None = None, vmin=None,
                   vmax=None, cmap: str = CMAP_IMAGE) -> Figure:
    """One labelled row per entry of {label: images (n, D) | (n, H, W)}, e.g. {"data": x, "reconstruction": x_hat}."""
    if not isinstance(rows, Mapping) or not rows:
        raise TypeError("compare_images expects a non-empty dict {row label: images}, "
                        f"got {type(rows).__name__}")
    arrays = [_as_images(v, image_shape, name=f"row {k!r}") for k, v in rows.items()]
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"the rows hold images of different shapes {sorted(shapes)}; give them one image_shape")
    ncol = max(a.shape[0] for a in arrays)
    h, w = arrays[0].shape[1:3]
    pad = max(1, h // 14)
    stacked = []
    for a in arrays:  # shorter rows are left blank on the right
        blank = np.full((ncol - a.shape[0],) + a.shape[1:], np.nan, dtype=np.float32)
        stacked.append(np.concatenate([a, blank]))
    a = np.concatenate(stacked)
    vmin, vmax = _value_range(a[~np.isnan(a)], vmin, vmax)
    lo = vmin if vmin is not None else float(np.nanmin(a))
    hi = vmax if vmax is not None else float(np.nanmax(a))
    mosaic, _, cell_h, cell_w = _mosaic(np.nan_to_num(a, nan=hi), ncol, pad, fill=hi)
    if ax is None:
        size = min(1.0, 8.0 / ncol)
        fig, ax = _axes(None, figsize=(2.2 + ncol * size, 0.8 + len(arrays) * size * cell_h / cell_w))
    ax.imshow(mosaic, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_yticks([pad + r * cell_h + h / 2 for r in range(len(arrays))], [str(k) for k in rows])
    ax.set_xticks([pad + c * cell_w + w / 2 for c in range(ncol)], [str(c) for c in range(ncol)])
    ax.tick_params(length=0)
    ax.grid(False)
    for side in ax.spines.values():
        side.set_visible(False)
    return _finish(ax, title if title is not None else " vs ".join(str(k) for k in rows), xlabel="example")


# --------------------------------------------------------------------------------------------- curves
def _band(ax, x_list, y_list, color, label, linestyle, spread):
    length = max(len(y) for y in y_list)
    y = np.full((len(y_list), length), np.nan)
    for i, v in enumerate(y_list):
        y[i, :len(v)] = v
    x = next(xx for xx in x_list if len(xx) == length)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns where shorter runs end
        mean = np.nanmean(y, axis=0)
        if spread == "std":
            lo, hi = mean - np.nanstd(y, axis=0), mean + np.nanstd(y, axis=0)
        elif spread == "minmax":
            lo, hi = np.nanmin(y, axis=0), np.nanmax(y, axis=0)
        else:
            raise ValueError(f"spread must be 'std' or 'minmax', got {spread!r}")
    ax.plot(x, mean, color=color, linestyle=linestyle, label=label)
    if len(y_list) > 1:
        ax.fill_between(x, lo, hi, color=color, alpha=0.2, linewidth=0)


@_styled
def plot_curves_with_spread(curves_by_label: Mapping[str, object], ax=None, title: str | None = None,
                            xlabel: str = "epoch", ylabel: str = "loss (nats)", spread: str = "std",
                            x=None) -> Figure:
    """Mean curve and a ± spread band per label from {label: (n_runs, n_points) array or list of 1-D curves}."""
    if not isinstance(curves_by_label, Mapping) or not curves_by_label:
        raise TypeError("plot_curves_with_spread expects a non-empty dict {label: curves}")
    fig, ax = _axes(ax)
    for i, (label, curves) in enumerate(curves_by_label.items()):
        if isinstance(curves, (torch.Tensor, np.ndarray)):
            arr = to_numpy(curves).astype(float)
            ys = [arr] if arr.ndim == 1 else list(arr)
        else:
            ys = [to_numpy(c).astype(float).reshape(-1) for c in curves]
        if not ys:
            raise ValueError(f"label {label!r} has no curves")
        xs = [np.asarray(x, dtype=float)[:len(y)] if x is not None else np.arange(1, len(y) + 1) for y in ys]
        _band(ax, xs, ys, PALETTE[i % len(PALETTE)], str(label), "-", spread)
    ax.legend()
    what = "1 s.d." if spread == "std" else "min-max"
    return _finish(ax, title if title is not None else f"mean ± {what} over runs", xlabel, ylabel)


# --------------------------------------------------------------------------------------------- 2-D plots
def _points_2d(x, name):
    a = to_numpy(x).astype(float, copy=False)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"{name} must have shape (n, 2), got {a.shape}"
                         + ("; project it to 2-D first (e.g. the first two principal components)"
                            if a.ndim == 2 and a.shape[1] > 2 else ""))
    return a


@_styled
def plot_latent_2d(z, labels=None, ax=None, title: str | None = None, xlabel: str = "$z_1$",
                   ylabel: str = "$z_2$", legend_title: str = "label", s: float = 12, alpha: float = 0.7) -> Figure:
    """Scatter of latent codes z (n, 2), coloured by integer labels (n,) (legend) or continuous values (colorbar)."""
    z = _points_2d(z, "z")
    fig, ax = _axes(ax, figsize=(6.5, 5.5))
    if labels is None:
        ax.scatter(z[:, 0], z[:, 1], s=s, alpha=alpha, color=PALETTE[0], linewidths=0)
    else:
        lab = to_numpy(labels).reshape(-1)
        if lab.shape[0] != z.shape[0]:
            raise ValueError(f"labels has {lab.shape[0]} entries for {z.shape[0]} points")
        values = np.unique(lab)
        integer = lab.dtype.kind in "iub" or (lab.dtype.kind == "f" and np.all(lab == np.round(lab)))
        if integer and len(values) <= 20 or lab.dtype.kind in "OUS":
            for i, v in enumerate(values):
                m = lab == v
                ax.scatter(z[m, 0], z[m, 1], s=s, alpha=alpha, color=PALETTE[i % len(PALETTE)],
                           marker=MARKERS[i % len(MARKERS)], linewidths=0,
                           label=str(int(v)) if integer and lab.dtype.kind != "O" else str(v))
            leg = ax.legend(title=legend_title, loc="center left", bbox_to_anchor=(1.01, 0.5), markerscale=1.8,
                            frameon=False)
            for handle in leg.legend_handles if hasattr(leg, "legend_handles") else leg.legendHandles:
                handle.set_alpha(1)
        else:
            sc = ax.scatter(z[:, 0], z[:, 1], c=lab.astype(float), s=s, alpha=alpha, cmap=CMAP, linewidths=0)
            fig.colorbar(sc, ax=ax, label=legend_title)
    ax.set_aspect("equal", adjustable="datalim")
    return _finish(ax, title if title is not None else "latent codes", xlabel, ylabel)


def _callable_device(fn, device):
    if device is not None:
        return torch.device(device)
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, torch.nn.Module):
        for p in owner.parameters():
            return p.device
    return None


def _extent(extent):
    if np.isscalar(extent):
        return (-float(extent), float(extent), -float(extent), float(extent))
    e = tuple(float(v) for v in extent)
    if len(e) == 2:
        return (e[0], e[1], e[0], e[1])
    if len(e) != 4 or e[0] >= e[1] or e[2] >= e[3]:
        raise ValueError(f"extent must be L, (lo, hi) or (xmin, xmax, ymin, ymax) with min < max, got {extent!r}")
    return e


@_styled
def plot_manifold_2d(decode_fn: Callable, n: int = 15, extent=None, image_shape=None, ax=None,
                     title: str | None = None, device=None, xlabel: str = "$z_1$", ylabel: str = "$z_2$") -> Figure:
    """Images decode_fn(z): (n², 2) -> (n², D) on an n x n grid of z: Gaussian quantiles Φ⁻¹(0.05..0.95), or linear on `extent`.

    decode_fn must return pixel means in [0, 1] (apply torch.sigmoid to logits). z goes to `device`, or to the
    device of the module when decode_fn is a bound method such as model.decode. Row 0 (top) is the largest z_2.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (grid points per axis) must be a positive int, got {n!r}")
    if extent is None:
        probs = torch.linspace(0.05, 0.95, n, dtype=torch.float64)
        u1 = u2 = torch.distributions.Normal(0.0, 1.0).icdf(probs)
        how = "Gaussian quantiles"
    else:
        x0, x1, y0, y1 = _extent(extent)
        u1 = torch.linspace(x0, x1, n, dtype=torch.float64)
        u2 = torch.linspace(y0, y1, n, dtype=torch.float64)
        how = "linear grid"
    zz2, zz1 = torch.meshgrid(u2.flip(0), u1, indexing="ij")  # row 0 at the top = largest z_2
    z = torch.stack([zz1.reshape(-1), zz2.reshape(-1)], dim=1).to(torch.float32)
    dev = _callable_device(decode_fn, device)
    if dev is not None:
        z = z.to(dev)
    with torch.no_grad():
        out = decode_fn(z)
    if isinstance(out, (tuple, list)):
        out = out[0]
    images = _as_images(out, image_shape, name="decode_fn's output")
    if images.shape[0] != n * n:
        raise ValueError(f"decode_fn returned {images.shape[0]} images for {n * n} latent points")
    h, w = images.shape[1:3]
    pad = max(1, h // 14)
    mosaic, _, cell_h, cell_w = _mosaic(images, n, pad, fill=1.0)
    lo, hi = _value_range(images, None, None)
    fig, ax = _axes(ax, figsize=(6.5, 6.5))
    ax.imshow(mosaic, cmap=CMAP_IMAGE, vmin=lo, vmax=hi, interpolation="nearest")
    step = max(1, n // 5)
    cols = list(range(0, n, step))
    ax.set_xticks([pad + c * cell_w + w / 2 for c in cols], [f"{float(u1[c]):.1f}" for c in cols])
    ax.set_yticks([pad + r * cell_h + h / 2 for r in cols], [f"{float(u2.flip(0)[r]):.1f}" for r in cols])
    ax.grid(False)
    for side in ax.spines.values():
        side.set_visible(False)
    return _finish(ax, title if title is not None else f"decoded latent grid ({how})", xlabel, ylabel)


@_styled
def plot_samples_2d(x, ax=None, title: str | None = None, labels=None, s: float = 6, alpha: float = 0.5,
                    xlabel: str = "$x_1$", ylabel: str = "$x_2$", color=None, label: str | None = None) -> Figure:
    """Scatter of 2-D points x (n, 2), or of several sets {label: (n, 2)} (e.g. data vs model samples) with a legend."""
    fig, ax = _axes(ax, figsize=(5.5, 5.5))
    sets = x if isinstance(x, Mapping) else {label: x}
    for i, (name, pts) in enumerate(sets.items()):
        a = _points_2d(pts, f"x[{name!r}]" if name is not None else "x")
        c = color if (color is not None and len(sets) == 1) else PALETTE[i % len(PALETTE)]
        ax.scatter(a[:, 0], a[:, 1], s=s, alpha=alpha, color=c, linewidths=0,
                   label=None if name is None else str(name))
    if len(sets) > 1 or label is not None:
        leg = ax.legend(markerscale=2.5)
        for handle in leg.legend_handles if hasattr(leg, "legend_handles") else leg.legendHandles:
            handle.set_alpha(1)
    ax.set_aspect("equal", adjustable="datalim")
    return _finish(ax, title if title is not None else "samples", xlabel, ylabel)


@_styled
def plot_density_2d(log_prob_fn: Callable, extent=4.0, n: int = 150, ax=None, title: str | None = None,
                    log: bool = False, samples=None, device=None, xlabel: str = "$x_1$", ylabel: str = "$x_2$",
                    colorbar: bool = True) -> Figure:
    """Heat map of p(x) = exp(log_prob_fn(x)) (log p if log=True), log_prob_fn: (m, 2) -> (m,), on an n x n grid over `extent`.

    extent: L (the square [-L, L]²), (lo, hi) or (xmin, xmax, ymin, ymax). samples (k, 2) are overlaid in white.
    """
    x0, x1, y0, y1 = _extent(extent)
    gx = torch.linspace(x0, x1, n)
    gy = torch.linspace(y0, y1, n)
    yy, xx = torch.meshgrid(gy, gx, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    dev = _callable_device(log_prob_fn, device)
    if dev is not None:
        pts = pts.to(dev)
    with torch.no_grad():
        lp = to_numpy(log_prob_fn(pts)).astype(float)
    if lp.size != n * n:
        raise ValueError(f"log_prob_fn must map (m, 2) points to (m,) log densities; got shape {lp.shape} "
                         f"for m = {n * n}")
    lp = lp.reshape(n, n)
    values = lp if log else np.exp(lp)
    fig, ax = _axes(ax, figsize=(6.0, 5.2))
    im = ax.imshow(values, origin="lower", extent=(x0, x1, y0, y1), cmap=CMAP, aspect="equal",
                   interpolation="bilinear")
    if samples is not None:
        a = _points_2d(samples, "samples")
        ax.scatter(a[:, 0], a[:, 1], s=4, color="white", alpha=0.6, linewidths=0, label="samples")
    if colorbar:
        fig.colorbar(im, ax=ax, label="log p(x)" if log else "p(x)", shrink=0.85)
    ax.grid(False)
    return _finish(ax, title if title is not None else ("log density" if log else "density"), xlabel, ylabel)
