"""gvlib.zoo: stacked MLPs against separate networks, the RBM against brute-force enumeration, the samplers' laws."""
from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
from torch import nn

import gvlib
from gvlib import zoo


def rng(seed=0):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------------
# Stack
# --------------------------------------------------------------------------------------------------

def test_stack_members_are_independent_mlps():
    net = zoo.Stack(4, [3, 7, 5, 2], "tanh", seed=3)
    x = torch.randn(4, 6, 3, generator=rng(1))
    out = net(x)
    assert out.shape == (4, 6, 2)
    for i in range(4):
        seq = net.member(i)
        assert isinstance(seq, nn.Sequential) and len(seq) == 5
        torch.testing.assert_close(seq(x[i]), out[i], rtol=1e-6, atol=1e-6)
        # the same by hand: tanh(x W + b) twice, then linear
        h = x[i]
        for j, (w, b) in enumerate(zip(net.weights, net.biases)):
            h = h @ w[i] + b[i, 0]
            h = torch.tanh(h) if j < 2 else h
        torch.testing.assert_close(h, out[i], rtol=1e-6, atol=1e-6)
    # member 0's loss moves no other member's parameters
    net(x)[0].sum().backward()
    for p in net.parameters():
        assert p.grad[1:].abs().max() == 0 and p.grad[0].abs().max() > 0


def test_stack_initialisation_is_per_member_reproducible_and_follows_the_seed_offset(monkeypatch):
    a, b = zoo.Stack(3, [2, 4, 1], seed=5), zoo.Stack(3, [2, 4, 1], seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    w = a.weights[0]
    assert not torch.equal(w[0], w[1]), "members start differently"
    # member i of seed s is member 0 of seed s + i
    c = zoo.Stack(1, [2, 4, 1], seed=6)
    assert torch.equal(c.weights[0][0], w[1])
    bound = 1 / math.sqrt(2)
    assert w.abs().max() <= bound, "torch.nn.Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in))"
    monkeypatch.setenv("GVLIB_SEED_OFFSET", "1000")
    d = zoo.Stack(3, [2, 4, 1], seed=5)
    assert not torch.equal(d.weights[0], w)
    monkeypatch.setenv("GVLIB_SEED_OFFSET", "0")
    assert torch.equal(zoo.Stack(3, [2, 4, 1], seed=1005).weights[0], d.weights[0])


def test_one_adam_over_a_stack_is_separate_adams_per_member():
    net = zoo.Stack(3, [2, 8, 1], seed=0)
    singles = [net.member(i) for i in range(3)]
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    opts = [torch.optim.Adam(s.parameters(), lr=1e-2) for s in singles]
    g = rng(2)
    for _ in range(5):
        x, y = torch.randn(3, 16, 2, generator=g), torch.randn(3, 16, 1, generator=g)
        opt.zero_grad()
        ((net(x) - y) ** 2).mean((1, 2)).sum().backward()
        opt.step()
        for i, (s, o) in enumerate(zip(singles, opts)):
            o.zero_grad()
            ((s(x[i]) - y[i]) ** 2).mean().backward()
            o.step()
    x = torch.randn(3, 5, 2, generator=g)
    for i in range(3):
        torch.testing.assert_close(net(x)[i], singles[i](x[i]), rtol=1e-5, atol=1e-6)


def test_stack_and_draw_batches_reject_bad_input():
    net = zoo.Stack(2, [3, 4, 1])
    with pytest.raises(ValueError, match=r"\(2, batch, 3\)"):
        net(torch.randn(3, 5, 3))
    with pytest.raises(ValueError, match=r"\(2, batch, 3\)"):
        net(torch.randn(5, 3))
    with pytest.raises(TypeError, match="floating-point"):
        net(torch.zeros(2, 5, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown activation"):
        zoo.Stack(2, [3, 1], "swish")
    with pytest.raises(ValueError, match="at least an input and an output"):
        zoo.Stack(2, [3])
    with pytest.raises(ValueError, match="member index"):
        net.member(2)
    pool = torch.arange(24.0).reshape(2, 6, 2)
    batch = zoo.draw_batches(pool, 50, generator=rng(0))
    assert batch.shape == (2, 50, 2)
    for i in range(2):  # every row comes from member i's own pool
        rows = {tuple(r) for r in pool[i].tolist()}
        assert all(tuple(r) in rows for r in batch[i].tolist())
    with pytest.raises(ValueError, match=r"\(M, N, d\)"):
        zoo.draw_batches(pool[0], 3)


# --------------------------------------------------------------------------------------------------
# RBM
# --------------------------------------------------------------------------------------------------

def all_binary(n, dtype=torch.float64):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=dtype)


def small_rbm(nv=4, nh=3, m=2, seed=0):
    rbm = zoo.RBM(m, nv, nh, seed=seed).double()
    g = rng(seed + 100)
    with torch.no_grad():
        rbm.W.copy_(torch.randn(m, nv, nh, generator=g, dtype=torch.float64))
        rbm.b.copy_(torch.randn(m, 1, nv, generator=g, dtype=torch.float64))
        rbm.c.copy_(torch.randn(m, 1, nh, generator=g, dtype=torch.float64))
    return rbm


def energy(rbm, i, v, h):
    """E(v, h) = -b.v - c.h - v W h for member i, one configuration at a time."""
    return -(rbm.b[i, 0] @ v) - (rbm.c[i, 0] @ h) - v @ rbm.W[i] @ h


def test_free_energy_and_conditionals_match_enumeration():
    rbm = small_rbm()
    vs, hs = all_binary(4), all_binary(3)
    free = rbm.free_energy(vs.expand(2, -1, -1))                             # (2, 16)
    for i in range(2):
        for a, v in enumerate(vs):
            e = torch.stack([energy(rbm, i, v, h) for h in hs])
            assert free[i, a].item() == pytest.approx(-torch.logsumexp(-e, 0).item(), rel=1e-12, abs=1e-12)
            # p(h_j = 1 | v) = sum over h with h_j = 1 of p(h | v)
            post = torch.softmax(-e, 0)
            ref = (post[:, None] * hs).sum(0)
            torch.testing.assert_close(rbm.hidden_probs(v.expand(2, 1, 4))[i, 0], ref, rtol=1e-12, atol=1e-12)
        for h in hs:
            e = torch.stack([energy(rbm, i, v, h) for v in vs])
            ref = (torch.softmax(-e, 0)[:, None] * vs).sum(0)
            torch.testing.assert_close(rbm.visible_probs(h.expand(2, 1, 3))[i, 0], ref, rtol=1e-12, atol=1e-12)


def test_cd_gradient_is_the_free_energy_difference_and_exact_in_the_limit():
    rbm = small_rbm(nv=5, nh=3)
    v0 = (torch.rand(2, 40, 5, generator=rng(3)) < 0.5).double()
    g1 = torch.Generator().manual_seed(9)
    grads, vk = rbm.cd_gradient(v0, k=3, generator=g1)
    # the CD direction is grad of F(v_k) - F(v_0) with v_k held fixed
    gap = (rbm.free_energy(vk).mean(1) - rbm.free_energy(v0).mean(1)).sum()
    ref = torch.autograd.grad(gap, (rbm.W, rbm.b, rbm.c))
    for key, r in zip(("W", "b", "c"), ref):
        torch.testing.assert_close(grads[key], r, rtol=1e-10, atol=1e-12)
    # v_k comes from k Gibbs rounds with that generator
    torch.testing.assert_close(vk, rbm.gibbs(v0, 3, generator=torch.Generator().manual_seed(9)))
    # persistent CD starts elsewhere
    _, vp = rbm.cd_gradient(v0, k=1, generator=rng(1), v_start=torch.ones_like(v0))
    assert vp.shape == v0.shape


def test_gibbs_sampling_reaches_the_exact_distribution():
    rbm = small_rbm(nv=3, nh=2, m=1, seed=4)
    vs = all_binary(3)
    log_p = -rbm.free_energy(vs[None])[0]
    p = torch.softmax(log_p, 0)                                              # exact p(v) by enumeration
    n = 20_000
    v = rbm.gibbs((torch.rand(1, n, 3, generator=rng(5)) < 0.5).double(), 50, generator=rng(6))[0]
    index = (v * torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64)).sum(1).long()
    freq = torch.bincount(index, minlength=8).double() / n
    se = torch.sqrt(p * (1 - p) / n)
    assert ((freq - p).abs() < 5 * se + 1e-4).all(), (freq, p)


def test_rbm_rejects_bad_shapes():
    rbm = zoo.RBM(2, 4, 3)
    with pytest.raises(ValueError, match=r"\(2, batch, 4\)"):
        rbm.free_energy(torch.zeros(3, 5, 4))
    with pytest.raises(ValueError, match="k must be a positive int"):
        rbm.cd_gradient(torch.zeros(2, 5, 4), k=0)
    with pytest.raises(ValueError, match="steps must be an int >= 0"):
        rbm.gibbs(torch.zeros(2, 5, 4), -1)


# --------------------------------------------------------------------------------------------------
# corruptions, chains, minibatch std
# --------------------------------------------------------------------------------------------------

def test_corruptions_have_the_stated_laws():
    x = (torch.rand(200, 100, generator=rng(1)) < 0.3).float()
    n = x.numel()
    for p in (0.0, 0.4, 1.0):
        y = zoo.salt_and_pepper(x, p, generator=rng(2))
        assert set(y.unique().tolist()) <= {0.0, 1.0}
        changed = (y != x).double().mean().item()  # a reset pixel changes with probability 1/2
        assert abs(changed - p / 2) < 5 * math.sqrt(0.25 / n) + 1e-12
    assert torch.equal(zoo.salt_and_pepper(x, 0.0), x)
    assert abs(zoo.salt_and_pepper(x, 1.0, generator=rng(3)).mean().item() - 0.5) < 5 * math.sqrt(0.25 / n)
    with pytest.raises(ValueError, match="p "):
        zoo.salt_and_pepper(x, 1.5)
    z = zoo.gaussian_corrupt(torch.zeros(100_000, 2, dtype=torch.float64), 0.3, generator=rng(4))
    assert abs(z.std().item() - 0.3) < 0.005 and abs(z.mean().item()) < 0.005


def test_gsn_chain_runs_the_step_and_records():
    out = zoo.gsn_chain(lambda x: 2 * x + 1, torch.zeros(3), 4, record=True)
    assert out.shape == (5, 3) and out[:, 0].tolist() == [0.0, 1.0, 3.0, 7.0, 15.0]
    assert zoo.gsn_chain(lambda x: x + 1, torch.zeros(2), 3).tolist() == [3.0, 3.0]
    with pytest.raises(TypeError, match="step must be a function"):
        zoo.gsn_chain(3, torch.zeros(2), 3)


def test_minibatch_std_appends_the_batch_std():
    x = torch.randn(2, 9, 3, generator=rng(7), dtype=torch.float64)
    out = zoo.minibatch_std(x)
    assert out.shape == (2, 9, 6) and torch.equal(out[..., :3], x)
    for i in range(2):
        ref = torch.tensor([x[i, :, j].numpy().std(ddof=1) for j in range(3)], dtype=torch.float64)
        torch.testing.assert_close(out[i, 4, 3:], ref, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="batch >= 2"):
        zoo.minibatch_std(torch.zeros(2, 1, 3))


def test_models_move_to_the_inputs_device_and_dtype():
    net = zoo.Stack(2, [2, 3, 1]).double()
    assert net(torch.zeros(2, 4, 2, dtype=torch.float64)).dtype == torch.float64
    rbm = copy.deepcopy(zoo.RBM(1, 3, 2)).double()
    assert rbm.gibbs(torch.zeros(1, 4, 3, dtype=torch.float64), 2).dtype == torch.float64
    assert gvlib.zoo.Stack is zoo.Stack


# ----------------------------------------------------------------------------------------------- toy scores
def test_toy_scores_of_data_and_of_baselines():
    from gvlib import data
    ref = data.toy_2d("ring8", 2000, seed=1)
    good = zoo.toy_scores("ring8", data.toy_2d("ring8", 2000, seed=2), ref)
    assert good["covered"] == 8 and good["captured"] == 8 and abs(good["precision"] - (1 - math.exp(-4.5))) < 0.01
    assert good["balance"] < 0.01 and abs(good["mmd2"]) < 0.003
    base = zoo.toy_baselines("ring8", 2000, seed=0, box=2.6)
    assert set(base) == {"held-out data", "uniform on the box", "one Gaussian fitted"}
    u, gfit = base["uniform on the box"], base["one Gaussian fitted"]
    assert u.abs().max() <= 2.6 and u.shape == (2000, 2)
    assert (gfit.mean(0).abs() < 0.15).all() and ((gfit.var(0) - 2.0).abs() < 0.3).all()   # ring8: mean 0, var 2
    for x in (u, gfit):
        r = zoo.toy_scores("ring8", x, ref)
        assert r["covered"] == 0 and r["precision"] < 0.01
    one = zoo.toy_scores("ring8", ref[:0].new_tensor(data.RING8_MEANS[:1]).repeat(50, 1), ref)
    assert one["covered"] == 1 and one["balance"] == pytest.approx(math.log(8))
    with pytest.raises(ValueError, match="ring8"):
        zoo.toy_scores("moons", ref, ref)
