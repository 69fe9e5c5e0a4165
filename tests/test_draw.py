"""gvlib.draw: the filterbank against a loop, the canvas as a sum of writes, causality of the recurrence, the KL
terms against torch.distributions, the protocol of gvlib.models (bounds and fit), and the captioned digits."""
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

import gvlib
from gvlib import bounds, draw
from gvlib.draw import DRAW, DRAWConfig

F64 = torch.float64


def loop_filterbank(g, delta, var, n, size):
    """F[i, a] by the paper's formula, one entry at a time, 1-based i and a (float64 Python numbers)."""
    rows = []
    for i in range(1, n + 1):
        mu = g + (i - n / 2 - 0.5) * delta
        row = [math.exp(-(a - mu) ** 2 / (2 * var)) for a in range(1, size + 1)]
        z = sum(row)
        rows.append([v / z for v in row])
    return torch.tensor(rows, dtype=F64)


@pytest.mark.parametrize("g,delta,var,n,size", [(7.5, 1.3, 0.8, 5, 14), (2.0, 3.0, 4.0, 3, 9), (12.1, 0.4, 0.3, 4, 14),
                                                (1.0, 0.01, 50.0, 2, 6)])
def test_filterbank_against_loop(g, delta, var, n, size):
    fb = draw.filterbank(torch.tensor(g, dtype=F64), torch.tensor(delta, dtype=F64), torch.tensor(var, dtype=F64), n, size)
    assert fb.shape == (n, size)
    torch.testing.assert_close(fb, loop_filterbank(g, delta, var, n, size), rtol=1e-12, atol=1e-14)


def test_filterbank_batched_and_far_from_the_image():
    g = torch.tensor([1.0, 40.0], dtype=F64)             # the second grid lies far right of a 10-pixel image
    fb = draw.filterbank(g, torch.tensor([1.0, 1.0], dtype=F64), torch.tensor([0.5, 0.5], dtype=F64), 3, 10)
    assert torch.isfinite(fb).all()                       # exp underflows everywhere; softmax still normalises
    torch.testing.assert_close(fb.sum(-1), torch.ones(2, 3, dtype=F64))
    assert fb[1, :, -1].min() > 0.99                      # all the mass at the nearest pixel


def test_attention_params_paper_formulas():
    raw = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0], [-1.0, 1.0, math.log(2.0), math.log(0.5), math.log(3.0)]], dtype=F64)
    gx, gy, delta, var, gamma = draw.attention_params(raw, height=14, width=10, n=5)
    torch.testing.assert_close(gx, torch.tensor([5.5, 0.0], dtype=F64))          # (A + 1)/2 (g~ + 1), A = 10
    torch.testing.assert_close(gy, torch.tensor([7.5, 15.0], dtype=F64))         # B = 14
    torch.testing.assert_close(delta, torch.tensor([13 / 4, 13 / 8], dtype=F64))  # (max(A, B) - 1)/(N - 1) delta~
    torch.testing.assert_close(var, torch.tensor([1.0, 2.0], dtype=F64))
    torch.testing.assert_close(gamma, torch.tensor([1.0, 3.0], dtype=F64))
    with pytest.raises(ValueError):
        draw.attention_params(raw, 14, 10, n=1)


def test_read_and_write_against_loops():
    gen = torch.Generator().manual_seed(0)
    B, A, N = 6, 5, 3
    img = torch.rand(B, A, generator=gen, dtype=F64)
    fy = torch.softmax(torch.randn(N, B, generator=gen, dtype=F64), -1)
    fx = torch.softmax(torch.randn(N, A, generator=gen, dtype=F64), -1)
    gamma = torch.tensor(1.7, dtype=F64)
    glimpse = draw.read(img, fy, fx, gamma)
    ref = torch.tensor([[1.7 * sum(fy[i, b] * img[b, a] * fx[j, a] for b in range(B) for a in range(A)).item()
                         for j in range(N)] for i in range(N)], dtype=F64)
    torch.testing.assert_close(glimpse, ref)
    patch = torch.randn(N, N, generator=gen, dtype=F64)
    out = draw.write(patch, fy, fx, gamma)
    ref_w = torch.tensor([[sum(fy[i, b] * patch[i, j] * fx[j, a] for i in range(N) for j in range(N)).item() / 1.7
                           for a in range(A)] for b in range(B)], dtype=F64)
    torch.testing.assert_close(out, ref_w)


def small(**kw):
    base = dict(height=6, width=5, steps=3, z_dim=2, enc_hidden=8, dec_hidden=8, read_n=2, write_n=3)
    base.update(kw)
    gvlib.seed_everything(0)
    return DRAW(DRAWConfig(**base)).double()


@pytest.mark.parametrize("kw", [{}, {"read_n": None, "write_n": None}, {"learned_prior": True},
                                {"vocab_size": len(draw.VOCAB), "learned_prior": True}])
def test_canvas_is_sum_of_writes_and_log_weights(kw):
    m = small(**kw)
    x = torch.bernoulli(torch.full((4, 30), 0.3, dtype=F64))
    y = torch.stack([draw.encode_caption("the 3 is above the 7"), draw.encode_caption("the 1 is left of the 2")] * 2) \
        if kw.get("vocab_size") else None
    r = m.run(x, 2, y, keep=True)
    c = r["canvases"]                                        # (T, k, b, D)
    writes = torch.diff(c, dim=0, prepend=torch.zeros_like(c[:1]))
    # recompute each write from scratch is what run does; here: c_T is the logits and the sum of the per-step writes
    torch.testing.assert_close(writes.sum(0), r["logits"])
    assert r["log_q_z"].shape == (3, 2, 4) and r["kl"].shape == (3, 2, 4)
    lw = m.log_weights(x, 5, y) if y is not None else m.log_weights(x, 5)
    assert lw.shape == (5, 4) and torch.isfinite(lw).all()
    ll = bounds.estimate_log_likelihood(m, x, k=20, chunk=7, batch_size=3, y=y)
    assert ll.shape == (4,) and torch.isfinite(ll).all()


def test_write_recomputed_matches_canvas_increment():
    m = small()
    x = torch.bernoulli(torch.full((3, 30), 0.5, dtype=F64))
    gvlib.seed_everything(1)
    r = m.run(x, 1, keep=True)
    # replay the decoder from the kept z: the canvas increment of step t is write(h^dec_t)
    z = torch.stack([torch.zeros(1, 3, 2, dtype=F64)] * 3)
    gvlib.seed_everything(1)
    r1 = m.run(x, 1, z=z, keep=True)
    h, s = torch.zeros(3, 8, dtype=F64), torch.zeros(3, 8, dtype=F64)
    canvas = torch.zeros(3, 30, dtype=F64)
    for t in range(3):
        h, s = m.dec(z[t, 0], (h, s))
        canvas = canvas + m._write(h)[0]
        torch.testing.assert_close(r1["canvases"][t, 0], canvas)
    assert r["logits"].shape == (1, 3, 30)


def test_causality_of_the_recurrence():
    """Changing z_t leaves c_1..c_{t-1}, q(z_1..t) and the KLs of steps 1..t unchanged, and changes c_t."""
    m = small(learned_prior=True)
    x = torch.bernoulli(torch.full((2, 30), 0.4, dtype=F64))
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(3, 1, 2, 2, generator=gen, dtype=F64)
    base = m.run(x, 1, z=z, keep=True)
    for t in range(3):
        z2 = z.clone()
        z2[t] += 1.0
        other = m.run(x, 1, z=z2, keep=True)
        torch.testing.assert_close(other["canvases"][:t], base["canvases"][:t], rtol=0, atol=0)
        torch.testing.assert_close(other["kl"][:t + 1], base["kl"][:t + 1], rtol=0, atol=0)
        assert (other["canvases"][t] - base["canvases"][t]).abs().max() > 1e-6
        if t < 2:
            assert (other["kl"][t + 1] - base["kl"][t + 1]).abs().max() > 1e-9


def test_autograd_causality_of_generation():
    """Generation: d c_t / d z_s = 0 for s > t (checked through autograd)."""
    m = small()
    z = torch.randn(3, 1, 2, 2, dtype=F64, requires_grad=True)
    r = m.run(None, 1, n=2, z=z, keep=True)
    for t in range(3):
        (grad,) = torch.autograd.grad(r["canvases"][t].sum(), z, retain_graph=True)
        assert grad[t + 1:].abs().max() == 0 if t < 2 else True
        assert grad[:t + 1].abs().max() > 0


@pytest.mark.parametrize("learned", [False, True])
def test_kl_terms_against_torch_distributions(learned):
    m = small(learned_prior=learned)
    x = torch.bernoulli(torch.full((3, 30), 0.5, dtype=F64))
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(3, 1, 3, 2, generator=gen, dtype=F64)
    r = m.run(x, 1, z=z)
    # replay by hand: q and p at every step from the same states
    h_e = s_e = torch.zeros(3, 8, dtype=F64)
    h_d = s_d = torch.zeros(3, 8, dtype=F64)
    canvas = torch.zeros(3, 30, dtype=F64)
    for t in range(3):
        mu_p, logvar_p = m._prior(h_d)
        rd, _ = m._glimpse(x, x - torch.sigmoid(canvas), h_d)
        h_e, s_e = m.enc(torch.cat([rd, h_d], -1), (h_e, s_e))
        mu_q, logvar_q = m.q_params(h_e).chunk(2, -1)
        q = Normal(mu_q, torch.exp(0.5 * logvar_q))
        p = Normal(mu_p, torch.exp(0.5 * logvar_p))
        torch.testing.assert_close(r["kl"][t, 0], kl_divergence(q, p).sum(-1))
        torch.testing.assert_close(r["log_q_z"][t, 0], q.log_prob(z[t, 0]).sum(-1))
        torch.testing.assert_close(r["log_p_z"][t, 0], p.log_prob(z[t, 0]).sum(-1))
        h_d, s_d = m.dec(z[t, 0], (h_d, s_d))
        canvas = canvas + m._write(h_d)[0]
    torch.testing.assert_close(r["logits"][0], canvas)


def test_elbo_is_mean_log_weight_in_expectation():
    """E_q[log w] = ELBO: the closed-form-KL elbo and the mean log-weight agree within Monte Carlo error."""
    m = small()
    x = torch.bernoulli(torch.full((2, 30), 0.5, dtype=F64))
    gvlib.seed_everything(2)
    lw = m.log_weights(x, 4000)                                 # (k, b)
    el = m.elbo(x.repeat(4000, 1)).view(4000, 2)               # (k, b): 4000 independent one-trajectory ELBOs
    diff = lw.mean(0) - el.mean(0)
    se = (lw.var(0) / 4000 + el.var(0) / 4000).sqrt()
    assert (diff.abs() < 5 * se).all(), (diff, se)


def test_alignment_weights_and_padding():
    m = small(vocab_size=len(draw.VOCAB))
    y = torch.stack([draw.encode_caption("the 3 is above the 7"), draw.encode_caption("the 1 is left of the 2")])
    h_lang, mask = m.encode_caption(y)
    assert h_lang.shape == (2, 7, 2 * m.config.lang_hidden)
    s, alpha = m.align(torch.randn(2, 8, dtype=F64), h_lang, mask)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(2, dtype=F64))
    assert alpha[0, 6] == 0 and alpha[1, 6] > 0                # the 6-word caption's padding gets no weight
    torch.testing.assert_close(s, (alpha[..., None] * h_lang).sum(1))
    # padding does not change the states of the real words (backward direction included)
    y_long = torch.cat([y, torch.zeros(2, 3, dtype=y.dtype)], 1)
    h_long, _ = m.encode_caption(y_long)
    torch.testing.assert_close(h_long[:, :7], h_lang)


def test_sample_and_errors():
    m = small()
    assert m.sample(5).shape == (5, 30)
    with pytest.raises(ValueError):
        m.log_weights(torch.zeros(2, 29, dtype=F64))
    with pytest.raises(ValueError):
        m.log_weights(torch.zeros(2, 30, dtype=F64), 1, torch.zeros(2, 7, dtype=torch.long))
    mc = small(vocab_size=len(draw.VOCAB))
    with pytest.raises(ValueError):
        mc.log_weights(torch.zeros(2, 30, dtype=F64))


def test_fit_trains_a_draw():
    from gvlib.train import fit
    m = small()
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(64, 30, generator=gen) < torch.linspace(0.05, 0.95, 30)).double()
    h = fit(m, lambda mod, b: -mod.elbo(b[0]).mean(), x, epochs=15, batch_size=32, lr=1e-2, seed=0, progress=False)
    assert h.train[-1] < h.train[0] - 2


def test_captioned_digits():
    x = torch.zeros(20, 196)
    labels = torch.arange(20) % 10
    x[torch.arange(20), labels] = 1.0                         # digit d lights pixel d of its 14x14 image
    held = [(3, 7, "vertical")]
    canv, caps, arr = draw.captioned_digits(x, labels, 300, held_out=held, seed=0)
    assert canv.shape == (300, 784) and caps.shape == (300, 7) and arr.shape == (300, 3)
    assert not ((arr[:, 0] == 3) & (arr[:, 1] == 7) & (arr[:, 2] == 0)).any()
    for i in range(300):
        a, b, lay = arr[i].tolist()
        s1, s2 = draw.LAYOUTS[("vertical", "horizontal")[lay]]
        assert draw.slot_crops(canv[i:i + 1], s1)[0].argmax() == a
        assert draw.slot_crops(canv[i:i + 1], s2)[0].argmax() == b
        words = draw.decode_caption(caps[i]).split()
        assert words[1] in (str(a), str(b)) and words[-1] in (str(a), str(b))
    test, tcaps, tarr = draw.captioned_digits(x, labels, 10, held_out=held, seed=1, exclude_held_out=False)
    assert (tarr == torch.tensor([3, 7, 0])).all()
    assert {draw.decode_caption(c) for c in tcaps} <= {"the 3 is above the 7", "the 7 is below the 3"}
