"""gvlib.plot: every function returns a titled Figure with labelled axes, and rejects what it cannot draw."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import nn  # noqa: E402

from gvlib import plot  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def check(fig, labelled=True):
    assert isinstance(fig, Figure)
    fig.canvas.draw()  # layout and rendering work, not only the calls
    ax = fig.axes[0]
    assert ax.get_title(), "every figure has a title"
    if labelled:
        assert ax.get_xlabel() and ax.get_ylabel(), "axes carry labels"
    return ax


# Machado, Oliveira & Fernandes (2009), severity 1.0: linear-RGB matrices simulating each colour-vision deficiency.
CVD = {
    "normal": np.eye(3),
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "tritanopia": np.array([[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                            [0.004733, 0.691367, 0.303900]]),
}


def _lab(rgb_linear):
    """CIE L*a*b* (D65) of linear-RGB colours (n, 3)."""
    xyz = rgb_linear @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)


def min_colour_distance(colours, deficiency):
    """Smallest CIE76 distance between any two of `colours` as seen with `deficiency` (Machado et al. 2009)."""
    srgb = np.array([to_rgb(c) for c in colours])
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    lab = _lab(np.clip(linear @ CVD[deficiency].T, 0, 1))
    d = np.linalg.norm(lab[:, None] - lab[None], axis=-1)
    return d[np.triu_indices(len(colours), 1)].min()


@pytest.mark.parametrize("deficiency", list(CVD))
def test_the_palettes_line_colours_stay_apart_for_colour_blind_readers(deficiency):
    # The first six colours are the ones lines use; under every simulated deficiency each pair stays at least
    # 10 CIE76 units apart. The test is not vacuous: two of matplotlib's first six default colours (tab10)
    # come closer than that for red-green deficiencies, and the same check says so.
    assert min_colour_distance(plot.PALETTE[:6], deficiency) > 10
    if deficiency in ("protanopia", "deuteranopia"):
        tab10 = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
        assert min_colour_distance(tab10, deficiency) < 10


def test_style_is_a_context_and_importing_changes_nothing():
    import subprocess
    import sys
    code = ("import matplotlib as mpl; before = dict(mpl.rcParams); import gvlib.plot; "
            "print(dict(mpl.rcParams) == before)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "True"
    before = matplotlib.rcParams["font.size"]
    with plot.style(**{"font.size": 30}):
        assert matplotlib.rcParams["font.size"] == 30
        assert 80 <= matplotlib.rcParams["figure.dpi"] <= 100
    assert matplotlib.rcParams["font.size"] == before
    fig = plot.image_grid(torch.rand(4, 64))
    assert fig.dpi == plot.DPI and matplotlib.rcParams["font.size"] == before  # drawn in the style, settings restored


@pytest.mark.parametrize("shape", [(6, 64), (6, 8, 8), (6, 1, 8, 8), (5, 784), (3, 3, 8, 8)])
def test_image_grid_shapes(shape):
    fig = plot.image_grid(torch.rand(shape), title="digits")
    assert check(fig, labelled=False).get_title() == "digits"


def test_image_grid_titles_ax_and_bad_shapes():
    fig, axes = plt.subplots(1, 2)
    out = plot.image_grid(np.random.rand(4, 12), image_shape=(3, 4), titles=list("abcd"), ax=axes[1])
    assert out is fig and axes[1].get_title()
    assert [t.get_text() for t in axes[1].texts] == list("abcd")
    with pytest.raises(ValueError, match=r"cannot infer the image shape .* D=50 .* image_shape=\(H, W\)"):
        plot.image_grid(torch.rand(4, 50))
    with pytest.raises(ValueError, match="cannot be reshaped"):
        plot.image_grid(torch.rand(4, 64), image_shape=(7, 9))
    with pytest.raises(ValueError, match="titles has 2 entries for 4 images"):
        plot.image_grid(torch.rand(4, 64), titles=["a", "b"])
    with pytest.raises(ValueError, match="x\\[None\\]"):
        plot.image_grid(torch.rand(64))


def test_compare_images():
    x = torch.rand(5, 64)
    ax = check(plot.compare_images({"data": x, "reconstruction": x.flip(0)[:4]}), labelled=False)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["data", "reconstruction"]


def test_plot_curves_with_spread():
    ax = check(plot.plot_curves_with_spread({"a": np.random.rand(3, 10), "b": [torch.rand(10) for _ in range(3)]}))
    mean_line = ax.get_lines()[0].get_ydata()
    assert mean_line.shape == (10,)


def test_plot_latent_2d_categorical_and_continuous():
    z = torch.randn(100, 2)
    ax = check(plot.plot_latent_2d(z, torch.arange(100) % 10))
    assert len(ax.get_legend().get_texts()) == 10
    check(plot.plot_latent_2d(z, torch.rand(100)))
    check(plot.plot_latent_2d(z.numpy()))
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        plot.plot_latent_2d(torch.randn(10, 3))


def test_plot_manifold_2d_uses_the_decoders_device():
    decoder = nn.Sequential(nn.Linear(2, 64), nn.Sigmoid())
    seen = []

    def decode(z):
        seen.append(z.shape)
        return decoder(z)

    check(plot.plot_manifold_2d(decode, n=4))
    assert seen == [torch.Size([16, 2])]
    check(plot.plot_manifold_2d(decoder.forward, n=3, extent=(-2, 2)))
    with pytest.raises(ValueError, match="cannot infer"):
        plot.plot_manifold_2d(nn.Linear(2, 10), n=3)


def test_plot_samples_and_density_2d():
    check(plot.plot_samples_2d(torch.randn(50, 2)))
    ax = check(plot.plot_samples_2d({"data": torch.randn(50, 2), "model": torch.randn(50, 2)}))
    assert len(ax.get_legend().get_texts()) == 2
    normal = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
    fig = plot.plot_density_2d(normal.log_prob, extent=3, n=30, samples=torch.randn(20, 2))
    check(fig)
    assert len(fig.axes) == 2  # with a colorbar
    check(plot.plot_density_2d(normal.log_prob, extent=(-3, 3, -2, 2), n=20, log=True, colorbar=False))
    with pytest.raises(ValueError, match=r"\(m,\) log densities"):
        plot.plot_density_2d(lambda x: x, n=10)


def test_to_numpy_accepts_tensors_with_grad_and_half():
    t = torch.ones(2, 2, requires_grad=True) * 2
    assert isinstance(plot.to_numpy(t), np.ndarray) and plot.to_numpy(t).sum() == 8
    assert plot.to_numpy(torch.ones(3, dtype=torch.bfloat16)).dtype == np.float32
