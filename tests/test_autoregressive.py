"""gvlib.autoregressive: every output depends only on strictly earlier positions, and on exactly the ones predicted.

Three independent ways to find what output p depends on, for random weights and inputs (float64, so that no
convolution algorithm's rounding can hide or fake a dependency):
- perturbation: flip input q and see which outputs move;
- autograd: the non-zero pattern of the Jacobian d output / d input;
- the masks: `mask_dependencies` propagates the kept taps through the wiring, without weights or autograd;
and, for the plain and the gated stack, a closed form of the set (the blind spot; the full reach).
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import gvlib
from gvlib import bounds
from gvlib.autoregressive import (GatedPixelCNN, MaskedConv2d, PixelCNN, PixelVAE, WaveNet, causal_mask,
                                  horizontal_mask, mask_dependencies, raster_before, vertical_mask)

TOL = 1e-10  # float64: an output that does not depend on an input moves by exactly 0; one that does, by far more


def _outputs(model, x, y=None, z=None):
    """Logits as (B, P), positions in raster order, for an image model, a WaveNet or a PixelVAE decoder given z."""
    if isinstance(model, PixelVAE):
        return model.decode_logits(x.reshape(x.shape[0], -1), z)
    out = model(x) if y is None else model(x, y)
    return out.reshape(out.shape[0], -1)


def _random_model(model, seed=0):
    """Random weights and biases of a visible size (the default init is fine too; this makes the test not rely on it)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model.double().eval()


def _inputs(model, shape, n, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.bernoulli(torch.full((n, 1, *shape), 0.5, dtype=torch.float64), generator=gen)
    y = torch.randint(0, model.n_classes, (n,), generator=gen) if getattr(model, "n_classes", None) else None
    z = torch.randn(n, model.z_dim, generator=gen, dtype=torch.float64) if isinstance(model, PixelVAE) else None
    if isinstance(model, PixelVAE):
        x = x.reshape(n, -1)
    return x, y, z


def perturbation_dependencies(model, shape, n=3) -> np.ndarray:
    """dep[p, q]: flipping input q (one at a time, n random inputs) moves output p by more than TOL."""
    x, y, z = _inputs(model, shape, n)
    flat = x.reshape(n, -1)
    with torch.no_grad():
        base = _outputs(model, x, y, z)
        dep = np.zeros((flat.shape[1],) * 2, dtype=bool)
        for q in range(flat.shape[1]):
            xq = flat.clone()
            xq[:, q] = 1 - xq[:, q]
            moved = (_outputs(model, xq.reshape(x.shape), y, z) - base).abs().amax(0) > TOL
            dep[:, q] = moved.numpy()
    return dep


def jacobian_dependencies(model, shape, n=3) -> np.ndarray:
    """dep[p, q]: d output_p / d input_q is non-zero (autograd, at n random inputs, union over them)."""
    x, y, z = _inputs(model, shape, n)
    x = x.clone().requires_grad_(True)
    out = _outputs(model, x, y, z)
    rows = []
    for p in range(out.shape[1]):
        (g,) = torch.autograd.grad(out[:, p].sum(), x, retain_graph=True)  # outputs of different inputs don't mix
        rows.append(g.reshape(n, -1).abs().amax(0) > TOL)
    return torch.stack(rows).numpy()


def _offsets_set(dep, shape, p):
    h, w = shape
    i, j = divmod(p, w)
    return {(qi - i, qj - j) for qi, qj in (divmod(int(q), w) for q in np.nonzero(dep[p])[0])}


# ---------------------------------------------------------------------------------------------- masks
def test_masks_by_definition():
    for k in (1, 3, 5, 7):
        c = k // 2
        for kind in "AB":
            m = causal_mask(k, kind)
            want = torch.tensor([[float(a < c or (a == c and (b < c or (kind == "B" and b == c)))) for b in range(k)]
                                 for a in range(k)])
            assert torch.equal(m, want), (k, kind)
            v = vertical_mask(k, kind)
            assert torch.equal(v, torch.tensor([[float(a < c or (kind == "B" and a == c))] * k for a in range(k)]))
            hm = horizontal_mask(k, kind)
            assert torch.equal(hm, torch.tensor([[float(b < c or (kind == "B" and b == c)) for b in range(k)]]))
    assert causal_mask(3, "A").sum() == 4 and causal_mask(3, "B").sum() == 5


@pytest.mark.parametrize("bad", [2, 0, -1, 2.0, True])
def test_masks_refuse_even_or_non_int_kernels(bad):
    with pytest.raises(ValueError):
        causal_mask(bad, "A")


def test_mask_type_is_checked():
    with pytest.raises(ValueError, match="mask_type"):
        causal_mask(3, "C")


def test_masked_conv_uses_the_masked_kernel():
    torch.manual_seed(0)
    conv = MaskedConv2d(2, 3, causal_mask(3, "A")).double()
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    ref = torch.nn.functional.conv2d(x, conv.weight * conv.mask, conv.bias, padding=1)
    assert torch.equal(conv(x), ref)
    unmasked = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
    assert not torch.allclose(conv(x), unmasked)


# ---------------------------------------------------------------------------------------------- image models
IMAGE_MODELS = [
    ("pixelcnn-L1", lambda: PixelCNN(layers=1, channels=4)),
    ("pixelcnn-L4", lambda: PixelCNN(layers=4, channels=4)),
    ("pixelcnn-k5", lambda: PixelCNN(layers=3, channels=4, kernel_size=5)),
    ("gated-L1", lambda: GatedPixelCNN(layers=1, channels=3)),
    ("gated-L3", lambda: GatedPixelCNN(layers=3, channels=3)),
    ("gated-k5-cond", lambda: GatedPixelCNN(layers=2, channels=3, kernel_size=5, n_classes=4)),
    ("pixelvae", lambda: PixelVAE(image_shape=(7, 6), z_dim=2, hidden=(8,), decoder_layers=3, channels=3)),
]


@pytest.mark.parametrize("name, make", IMAGE_MODELS, ids=[n for n, _ in IMAGE_MODELS])
def test_dependency_sets_agree_three_ways_and_are_strictly_causal(name, make):
    model = _random_model(make())
    shape = (7, 6)
    predicted = mask_dependencies(model, shape)
    by_perturbation = perturbation_dependencies(model, shape)
    by_gradient = jacobian_dependencies(model, shape)
    assert np.array_equal(by_perturbation, predicted), name
    assert np.array_equal(by_gradient, predicted), name
    before = raster_before(shape)
    assert not (predicted & ~before).any(), f"{name}: an output depends on itself or a later position"
    assert predicted[1:].any(axis=1).all(), f"{name}: an output after the first sees nothing"


def _plain_closed_form(layers, shape, p):
    """Offsets (up = negative rows) reachable from output p by `layers` 3x3 steps: type A first, then type B.

    A type-A step moves by (-1, -1), (-1, 0), (-1, +1) or (0, -1); a type-B step also by (0, 0). Moving right
    needs a step up, so (dr, dc) with dc > -dr is never reached: the blind spot.
    """
    h, w = shape
    i, j = divmod(p, w)
    a_steps = [(-1, -1), (-1, 0), (-1, 1), (0, -1)]
    reach = set(a_steps)
    for _ in range(layers - 1):
        reach = {(r + a, c + b) for r, c in reach for a, b in a_steps + [(0, 0)]}
    return {(r, c) for r, c in reach if 0 <= i + r < h and 0 <= j + c < w}


@pytest.mark.parametrize("layers", [1, 2, 3, 4, 5])
def test_plain_stack_has_the_blind_spot_the_masks_predict(layers):
    shape = (12, 12)
    model = _random_model(PixelCNN(layers=layers, channels=3))
    predicted = mask_dependencies(model, shape)
    by_gradient = jacobian_dependencies(model, shape, n=2)
    assert np.array_equal(by_gradient, predicted)
    for p in range(12 * 12):
        assert _offsets_set(predicted, shape, p) == _plain_closed_form(layers, shape, p), p
    # away from the borders, the blind spot is the wedge dc > -dr of the reach box: L(L - 1) / 2 pixels
    centre = 11 * 12 + 5
    seen = _offsets_set(predicted, shape, centre)
    box = {(r, c) for r in range(-layers, 1) for c in range(-layers, layers + 1) if (r, c) < (0, 0)}
    blind = box - seen
    assert seen <= box
    assert blind == {(r, c) for r, c in box if c > -r}
    assert len(blind) == layers * (layers - 1) // 2


@pytest.mark.parametrize("layers, k", [(1, 3), (2, 3), (4, 3), (2, 5), (3, 5)])
def test_gated_stack_covers_every_earlier_pixel_within_its_reach(layers, k):
    shape = (11, 13)
    model = _random_model(GatedPixelCNN(layers=layers, channels=2, kernel_size=k))
    predicted = mask_dependencies(model, shape)
    by_gradient = jacobian_dependencies(model, shape, n=2)
    assert np.array_equal(by_gradient, predicted)
    reach = layers * (k // 2)
    h, w = shape
    for p in range(h * w):
        i, j = divmod(p, w)
        want = {(r, c) for r in range(-reach, 1) for c in range(-reach, reach + 1)
                if (r, c) < (0, 0) and 0 <= i + r < h and 0 <= j + c < w}
        assert _offsets_set(predicted, shape, p) == want, (p, layers, k)


def test_exact_normalisation_and_sampling_frequencies():
    """On 2x3 images the 64 probabilities sum to 1, and 20,000 samples match them (chi-square, p > 1e-6 test)."""
    shape = (2, 3)
    all_x = torch.tensor(list(itertools.product([0.0, 1.0], repeat=6)), dtype=torch.float64).reshape(64, 1, *shape)
    for model in (PixelCNN(layers=2, channels=4), GatedPixelCNN(layers=2, channels=4, n_classes=3)):
        model = _random_model(model, seed=3)
        y = 2 if model.n_classes else None
        logp = model.log_prob(all_x, y=torch.full((64,), 2) if y is not None else None)
        assert abs(torch.logsumexp(logp, 0).item()) < 1e-12
        n = 20_000
        samples = model.sample(n, shape, y=y, generator=torch.Generator().manual_seed(7))
        assert samples.shape == (n, 1, *shape) and set(samples.unique().tolist()) <= {0.0, 1.0}
        codes = (samples.reshape(n, 6) * (2 ** torch.arange(5, -1, -1, dtype=torch.float64))).sum(1).long()
        counts = torch.bincount(codes, minlength=64).double()
        expected = n * logp.exp()
        chi2 = ((counts - expected) ** 2 / expected).sum().item()
        # chi-square with 63 degrees of freedom: P(chi2 > 140) < 1e-6
        assert chi2 < 140, chi2


def test_a_leaky_first_layer_breaks_normalisation():
    """The check above can fail: with a type-B first layer each pixel sees itself and the sum is not 1."""
    model = _random_model(PixelCNN(layers=2, channels=4), seed=3)
    model.convs[0].mask.copy_(causal_mask(3, "B"))
    all_x = torch.tensor(list(itertools.product([0.0, 1.0], repeat=6)), dtype=torch.float64).reshape(64, 1, 2, 3)
    assert abs(torch.logsumexp(model.log_prob(all_x), 0).item()) > 1e-3


def test_log_prob_is_the_sum_of_bernoulli_terms(device):
    gvlib.seed_everything(0)
    model = GatedPixelCNN(layers=2, channels=4, n_classes=3).to(device)
    x = torch.bernoulli(torch.full((5, 1, 6, 6), 0.3, device=device))
    y = torch.tensor([0, 1, 2, 0, 1], device=device)
    ref = torch.distributions.Bernoulli(logits=model(x, y)).log_prob(x).sum((1, 2, 3))
    assert torch.allclose(model.log_prob(x, y), ref, atol=1e-4)
    s = model.sample(3, (4, 5), y=1, generator=gvlib.generator(0, device=device))
    assert s.shape == (3, 1, 4, 5) and s.device.type == device.type
    assert PixelCNN(2, 4).to(device).sample(2, (3, 3)).device.type == device.type


def test_image_models_say_what_they_expected():
    model = PixelCNN(layers=2, channels=4)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        model(torch.zeros(2, 64))
    cond = GatedPixelCNN(layers=2, channels=4, n_classes=3)
    with pytest.raises(ValueError, match="class-conditional"):
        cond(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="0..2"):
        cond(torch.zeros(2, 1, 4, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="unconditional"):
        GatedPixelCNN(layers=2, channels=4)(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="odd"):
        PixelCNN(layers=2, channels=4, kernel_size=4)


# ---------------------------------------------------------------------------------------------- WaveNet
@pytest.mark.parametrize("layers, k", [(1, 2), (3, 2), (5, 2), (2, 3), (3, 3)])
def test_wavenet_sees_exactly_the_receptive_field_before_t(layers, k):
    t_len = 70
    model = _random_model(WaveNet(layers=layers, channels=3, kernel_size=k))
    assert model.receptive_field == (k - 1) * (2 ** layers - 1) + 1
    if k == 2:
        assert model.receptive_field == 2 ** layers
    x = torch.bernoulli(torch.full((3, 1, t_len), 0.5, dtype=torch.float64),
                        generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    out = model(x)
    assert out.shape == (3, 1, t_len)
    by_gradient = np.stack([
        (torch.autograd.grad(out[:, 0, t].sum(), x, retain_graph=True)[0][:, 0].abs().amax(0) > TOL).numpy()
        for t in range(t_len)])
    predicted = mask_dependencies(model, t_len)
    assert np.array_equal(by_gradient, predicted)
    r = model.receptive_field
    for t in range(t_len):
        assert set(np.nonzero(predicted[t])[0]) == set(range(max(0, t - r), t)), t
    # perturbation: flipping x_s moves exactly the outputs s+1 .. s+R
    with torch.no_grad():
        base = model(x)
        for s in (0, 17, t_len - 1):
            xs = x.clone()
            xs[:, 0, s] = 1 - xs[:, 0, s]
            moved = set(np.nonzero(((model(xs) - base).abs().amax((0, 1)) > TOL).numpy())[0])
            assert moved == set(range(s + 1, min(t_len, s + r + 1))), s


def test_wavenet_log_prob_and_sample(device):
    gvlib.seed_everything(0)
    model = WaveNet(layers=3, channels=4).to(device)
    x = torch.bernoulli(torch.full((4, 1, 20), 0.5, device=device))
    ref = torch.distributions.Bernoulli(logits=model(x)).log_prob(x).sum((1, 2))
    assert torch.allclose(model.log_prob(x), ref, atol=1e-4)
    s = model.sample(2, 15, generator=gvlib.generator(0, device=device))
    assert s.shape == (2, 1, 15) and s.device.type == device.type
    with pytest.raises(ValueError, match=r"\(B, 1, T\)"):
        model(torch.zeros(4, 20, device=device))


# ---------------------------------------------------------------------------------------------- PixelVAE
def test_pixelvae_follows_the_models_protocol(device):
    gvlib.seed_everything(0)
    model = PixelVAE(image_shape=(4, 4), z_dim=3, hidden=(16,), decoder_layers=2, channels=4).to(device)
    x = torch.bernoulli(torch.full((6, 16), 0.4, device=device))
    lw = model.log_weights(x, 5)
    assert lw.shape == (5, 6) and torch.isfinite(lw).all()
    assert model.elbo(x).shape == (6,)
    est = bounds.estimate_log_likelihood(model, x, k=50, chunk=25)
    assert est.shape == (6,) and est.device.type == device.type
    assert model.sample(2).shape == (2, 16)


def test_pixelvae_decoder_is_a_normalised_distribution_for_each_z():
    model = _random_model(PixelVAE(image_shape=(2, 3), z_dim=2, hidden=(8,), decoder_layers=2, channels=3), seed=5)
    all_x = torch.tensor(list(itertools.product([0.0, 1.0], repeat=6)), dtype=torch.float64)
    for zval in ([0.0, 0.0], [1.5, -2.0]):
        z = torch.tensor([zval], dtype=torch.float64).expand(64, 2)
        logits = model.decode_logits(all_x, z)
        logp = torch.distributions.Bernoulli(logits=logits).log_prob(all_x).sum(1)
        assert abs(torch.logsumexp(logp, 0).item()) < 1e-12


def test_pixelvae_without_autoregression_is_a_factorised_decoder():
    model = _random_model(PixelVAE(image_shape=(3, 3), z_dim=2, hidden=(8,), decoder_layers=0), seed=1)
    assert not mask_dependencies(model, (3, 3)).any()
    z = torch.randn(2, 2, dtype=torch.float64)
    a = model.decode_logits(torch.zeros(2, 9, dtype=torch.float64), z)
    b = model.decode_logits(torch.ones(2, 9, dtype=torch.float64), z)
    assert torch.equal(a, b)


def test_raster_before():
    before = raster_before((2, 2))
    assert before.tolist() == [[False] * 4, [True, False, False, False], [True, True, False, False],
                               [True, True, True, False]]
    assert math.isclose(raster_before(5).sum(), 10)


def test_inputs_in_another_float_dtype_or_labels_for_an_unconditional_model_are_refused():
    model = PixelCNN(layers=2, channels=4)
    with pytest.raises(TypeError, match="float64"):
        model(torch.zeros(1, 1, 4, 4, dtype=torch.float64))
    assert model(torch.zeros(1, 1, 4, 4, dtype=torch.int64)).shape == (1, 1, 4, 4)   # ints are cast
    with pytest.raises(ValueError, match="unconditional"):
        model.log_prob(torch.zeros(2, 1, 4, 4), y=torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="float64"):
        WaveNet(layers=2, channels=4)(torch.zeros(1, 1, 8, dtype=torch.float64))
    with pytest.raises(TypeError, match="float64"):
        PixelVAE(image_shape=(2, 2), z_dim=1, hidden=(4,), decoder_layers=1).elbo(torch.zeros(3, 4, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------- issue 26 additions
from gvlib.autoregressive import (MADE, AudioWaveNet, colour_mask, made_masks, mu_law_decode,  # noqa: E402
                                  mu_law_encode)


def test_colour_mask_matches_a_reference_loop_and_orders_colours():
    for n_in, n_out, k in [(3, 3, 1), (3, 6, 3), (6, 9, 5)]:
        for kind in "AB":
            got = colour_mask(n_in, n_out, k, kind)
            c = k // 2
            for o, i, a, b in itertools.product(range(n_out), range(n_in), range(k), range(k)):
                ci, co = 3 * i // n_in, 3 * o // n_out
                want = (a, b) < (c, c) or ((a, b) == (c, c) and (ci < co if kind == "A" else ci <= co))
                assert got[o, i, a, b].item() == float(want), (n_in, n_out, k, kind, o, i, a, b)
    with pytest.raises(ValueError, match="multiples of 3"):
        colour_mask(4, 3, 3, "A")


def test_sampling_on_the_reachable_rows_gives_the_full_pass_draws_and_completions_keep_the_given_pixels():
    for model, y in [(PixelCNN(layers=3, channels=4), None), (GatedPixelCNN(layers=2, channels=4, n_classes=3), 1),
                     (PixelCNN(layers=2, channels=4, levels=5), None)]:
        model = _random_model(model, seed=4)
        fast = model.sample(5, (6, 5), y=y, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():   # the same draws, each pixel from a pass over the whole image
            x = torch.zeros_like(fast)
            gen = torch.Generator().manual_seed(0)
            for pos in range(30):
                i, j = divmod(pos, 5)
                logits = (model(x) if y is None else model(x, torch.full((5,), y)))[:, :, i, j]
                if model.levels == 2:
                    x[:, 0, i, j] = torch.bernoulli(torch.sigmoid(logits[:, 0]), generator=gen)
                else:
                    x[:, 0, i, j] = torch.multinomial(torch.softmax(logits, 1), 1, generator=gen)[:, 0].double()
        assert torch.equal(fast, x)
        done = model.sample(5, (6, 5), y=y, given=fast, start=13, generator=torch.Generator().manual_seed(1))
        assert torch.equal(done.reshape(5, -1)[:, :13], fast.reshape(5, -1)[:, :13])


def test_grey_level_models_are_normalised_categoricals():
    all_x = torch.tensor(list(itertools.product(range(3), repeat=4)), dtype=torch.float64).reshape(-1, 1, 2, 2)
    for model in (PixelCNN(layers=2, channels=4, levels=3), GatedPixelCNN(layers=2, channels=4, levels=3)):
        model = _random_model(model, seed=5)
        assert model(all_x).shape == (81, 3, 2, 2)
        assert abs(torch.logsumexp(model.log_prob(all_x), 0).item()) < 1e-12
    with pytest.raises(ValueError, match="levels"):
        PixelCNN(levels=1)


def test_made_depends_exactly_on_the_earlier_inputs_of_its_order_and_is_normalised():
    order = [4, 0, 6, 2, 5, 1, 3]
    made = _random_model(MADE(7, hidden=(12, 9), order=order), seed=6)
    rank = np.empty(7, dtype=int)
    rank[order] = np.arange(7)
    earlier = rank[None, :] < rank[:, None]
    x = torch.bernoulli(torch.full((1, 7), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(2))
    jac = torch.autograd.functional.jacobian(made, x)[0, :, 0, :]
    assert np.array_equal((jac.abs() > TOL).numpy(), earlier)
    all_x = torch.tensor(list(itertools.product([0.0, 1.0], repeat=7)), dtype=torch.float64)
    assert abs(torch.logsumexp(made.log_prob(all_x), 0).item()) < 1e-12
    masks = made_masks([np.array([1, 2, 3]), np.array([1, 2])])
    assert masks[0].tolist() == [[1, 0, 0], [1, 1, 0]] and masks[1].tolist() == [[0, 0], [1, 0], [1, 1]]


def test_mu_law_codes_are_monotone_and_decode_within_half_a_level():
    x = torch.linspace(-1, 1, 20001)
    codes = mu_law_encode(x, 256)
    assert codes.min().item() == 0 and codes.max().item() == 255 and (codes.diff() >= 0).all()
    assert len(codes.unique()) == 256
    # decoding the code's centre: |f(x) - f(decode)| <= half a level in the companded domain
    f = lambda v: torch.sign(v) * torch.log1p(255 * v.abs()) / math.log(256)   # noqa: E731
    assert (f(x) - f(mu_law_decode(codes, 256).double())).abs().max().item() <= 1 / 255 + 1e-6
    small = x.abs() < 0.01   # near 0 mu-law is much finer than a uniform 256-level grid (step 2/255)
    assert (mu_law_decode(codes, 256) - x)[small].abs().max().item() < 0.2 * (1 / 255)


def test_audio_wavenet_sees_its_receptive_field_and_the_cache_gives_the_forward_logits():
    net = _random_model(AudioWaveNet(levels=7, channels=4, skip_channels=5, layers_per_cycle=3, cycles=2, n_classes=2))
    y = torch.tensor([0, 1])
    codes, logits = net.generate(2, 50, y=y, generator=torch.Generator().manual_seed(0), return_logits=True)
    assert (logits - net(codes, y)).abs().max().item() < 1e-10
    naive = net.generate(2, 50, y=y, generator=torch.Generator().manual_seed(0), cached=False)
    assert torch.equal(codes, naive)
    # the last output's dependence on each input step, through the embedding (a perturbation of each code)
    T = 60
    base_codes = torch.randint(0, 7, (1, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        base = net(base_codes, y[:1])[0, :, -1]
        lags = set()
        for t in range(T):
            c = base_codes.clone()
            c[0, t] = (c[0, t] + 3) % 7
            if (net(c, y[:1])[0, :, -1] - base).abs().max() > TOL:
                lags.add(T - 1 - t)
    assert lags == set(range(1, net.receptive_field + 1)), (sorted(lags), net.receptive_field)
    assert net.receptive_field == 2 + 2 * (1 + 2 + 4)
    assert abs(torch.logsumexp(torch.log_softmax(net(codes, y), 1), 1).abs().max().item()) < 1e-12
