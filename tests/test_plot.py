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
from gvlib.train import History  # noqa: E402


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


def history(seed=0, n=5, valid=True, terms=True):
    rng = np.random.default_rng(seed)
    train = list(100 / np.arange(1, n + 1) + rng.normal(0, 1, n))
    h = History(epoch=list(range(1, n + 1)), train=train, time=[0.1] * n, lr=[1e-3] * n,
                valid=[t + 2 for t in train] if valid else None)
    if terms:
        h.train_terms = {"rec": [t - 10 for t in train], "kl": [10.0] * n}
        if valid:
            h.valid_terms = {"rec": [t - 8 for t in train], "kl": [10.0] * n}
    return h


def test_palette_is_okabe_ito_and_style_applies():
    assert len(plot.PALETTE) == 8 and len(set(plot.PALETTE)) == 8
    assert all(len(to_rgb(c)) == 3 for c in plot.PALETTE)
    assert 80 <= matplotlib.rcParams["figure.dpi"] <= 100
    with plot.style(**{"font.size": 30}):
        assert matplotlib.rcParams["font.size"] == 30
    assert matplotlib.rcParams["font.size"] == plot.STYLE["font.size"]


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


def test_plot_history_forms():
    check(plot.plot_history(history()))
    check(plot.plot_history(history(valid=False), title="no valid"))
    check(plot.plot_history(history().as_dict()))
    ax = check(plot.plot_history(history(), keys=["loss", "rec", "kl"]))
    assert len(ax.get_lines()) == 6 and ax.get_legend() is not None
    ax = check(plot.plot_history([history(0), history(1)], labels=["VAE", "IWAE"], splits=["valid"]))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["VAE valid", "IWAE valid"]
    # three seeds per label: mean line and a spread band per label and split
    ax = check(plot.plot_history({"batch norm": [history(s) for s in range(3)],
                                  "no batch norm": [history(s + 3, n=4) for s in range(3)]}))
    assert len(ax.collections) == 4 and "seeds" in ax.get_title()
    with pytest.raises(KeyError, match="no term 'elbo'"):
        plot.plot_history(history(), keys=["elbo"])


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
