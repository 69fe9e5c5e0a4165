"""gvlib.metrics against independent computations: brute-force loops, scipy, torch.distributions, closed forms."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from gvlib import metrics


def rng(seed=0):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------------
# modes and sample quality
# --------------------------------------------------------------------------------------------------

def brute_modes(samples, centres, sigma):
    """Per-centre counts of high-quality samples, by Python loops over numpy rows."""
    s, c = samples.double().numpy(), centres.double().numpy()
    counts = [0] * len(c)
    good = 0
    for x in s:
        d = [math.sqrt(sum((x[j] - m[j]) ** 2 for j in range(len(x)))) for m in c]
        k = int(np.argmin(d))
        if d[k] <= 3 * sigma:
            counts[k] += 1
            good += 1
    return counts, good / len(s)


@pytest.mark.parametrize("seed", range(5))
def test_mode_counts_match_brute_force(seed):
    g = rng(seed)
    centres = torch.randn(6, 3, generator=g, dtype=torch.float64) * 3
    pick = torch.randint(0, 6, (400,), generator=g)
    samples = centres[pick] + 0.4 * torch.randn(400, 3, generator=g, dtype=torch.float64)
    counts, hq = brute_modes(samples, centres, 0.3)
    assert metrics.mode_counts(samples, centres, 0.3).tolist() == counts
    assert metrics.high_quality_fraction(samples, centres, 0.3) == pytest.approx(hq, abs=1e-15)
    for min_count in (1, 5, 40, 1000):
        assert metrics.modes_captured(samples, centres, 0.3, min_count) == sum(c >= min_count for c in counts)
    idx, dist = metrics.nearest_centre(samples.float(), centres.float())
    ref = torch.cdist(samples, centres)
    assert torch.equal(idx, ref.argmin(1))
    torch.testing.assert_close(dist, ref.min(1).values, rtol=1e-6, atol=1e-6)


def test_hand_made_cases_and_the_inclusive_threshold():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    # distances 1.5 = 3 * 0.5 exactly (in binary): high quality; 1.5 + 2^-10 is not
    samples = torch.tensor([[1.5, 0.0], [10.0, -1.5], [1.5 + 2 ** -10, 0.0], [5.0, 5.0]])
    assert metrics.mode_counts(samples, centres, 0.5).tolist() == [1, 1, 0]
    assert metrics.modes_captured(samples, centres, 0.5) == 2
    assert metrics.modes_captured(samples, centres, 0.5, min_count=2) == 0
    assert metrics.high_quality_fraction(samples, centres, 0.5) == 0.5
    # a collapsed generator: every sample on one mode
    collapsed = torch.zeros(100, 2)
    assert metrics.modes_captured(collapsed, centres, 0.1) == 1
    assert metrics.high_quality_fraction(collapsed, centres, 0.1) == 1.0


def test_high_quality_fraction_of_true_samples_is_the_chi_square_probability():
    # for N(mu, s^2 I_d), ||x - mu||^2 / s^2 ~ chi^2_d: the fraction within 3 s is P(chi^2_d <= 9)
    g = rng(3)
    for d in (1, 2, 5):
        centres = torch.tensor([[0.0] * d, [100.0] * d], dtype=torch.float64)
        n = 20_000
        x = centres[torch.randint(0, 2, (n,), generator=g)] + 0.02 * torch.randn(n, d, generator=g, dtype=torch.float64)
        p = stats.chi2.cdf(9, d)
        se = math.sqrt(p * (1 - p) / n)
        assert abs(metrics.high_quality_fraction(x, centres, 0.02) - p) < 5 * se
    assert abs((1 - math.exp(-4.5)) - stats.chi2.cdf(9, 2)) < 1e-12, "2-D: 1 - exp(-9/2)"


# --------------------------------------------------------------------------------------------------
# MMD
# --------------------------------------------------------------------------------------------------

def brute_mmd2(x, y, bw):
    """The unbiased estimate by explicit double loops in numpy float64."""
    x, y = x.double().numpy(), y.double().numpy()
    k = lambda a, b: math.exp(-((a - b) ** 2).sum() / (2 * bw ** 2))
    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


@pytest.mark.parametrize("n, m, d, bw", [(2, 2, 1, 1.0), (7, 11, 3, 0.5), (30, 20, 2, 2.0), (25, 25, 5, 0.3)])
def test_mmd2_matches_double_loops(n, m, d, bw):
    g = rng(n + m)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(m, d, generator=g, dtype=torch.float64) + 0.5
    assert metrics.mmd2(x, y, bw) == pytest.approx(brute_mmd2(x, y, bw), rel=1e-10, abs=1e-12)
    assert metrics.mmd2(x, y, bw) == pytest.approx(metrics.mmd2(y, x, bw), rel=1e-12, abs=1e-14)
    # float32 inputs: the same value to float32 accuracy
    assert metrics.mmd2(x.float(), y.float(), bw) == pytest.approx(brute_mmd2(x, y, bw), abs=1e-5)


def test_mmd2_in_blocks_equals_one_block(monkeypatch):
    g = rng(5)
    x, y = torch.randn(300, 2, generator=g, dtype=torch.float64), torch.randn(200, 2, generator=g, dtype=torch.float64)
    whole = metrics.mmd2(x, y, 0.7)
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 1000)  # blocks of 3-5 rows
    assert metrics.mmd2(x, y, 0.7) == pytest.approx(whole, rel=1e-12, abs=1e-15)


def gaussian_mmd2(mu1, s1, mu2, s2, d, h):
    """MMD^2 of N(mu1, s1^2 I_d) and N(mu2, s2^2 I_d) under exp(-|a-b|^2 / 2h^2): E exp(-|u|^2/2h^2), u ~ N(m, v I)
    = (h^2 / (h^2 + v))^(d/2) exp(-|m|^2 / (2 (h^2 + v)))."""
    e = lambda v, m2: (h ** 2 / (h ** 2 + v)) ** (d / 2) * math.exp(-m2 / (2 * (h ** 2 + v)))
    gap = float(((mu1 - mu2) ** 2).sum())
    return e(2 * s1 ** 2, 0.0) + e(2 * s2 ** 2, 0.0) - 2 * e(s1 ** 2 + s2 ** 2, gap)


@pytest.mark.parametrize("shift, s2", [(0.0, 1.0), (0.0, 1.5), (0.8, 1.0), (2.0, 0.5)])
def test_mmd2_is_unbiased_for_the_closed_form_of_two_gaussians(shift, s2):
    g = rng(11)
    d, h, n, reps = 2, 1.0, 40, 400
    mu1 = torch.zeros(d, dtype=torch.float64)
    mu2 = torch.full((d,), shift, dtype=torch.float64)
    truth = gaussian_mmd2(mu1, 1.0, mu2, s2, d, h)
    est = torch.tensor([metrics.mmd2(mu1 + torch.randn(n, d, generator=g, dtype=torch.float64),
                                     mu2 + s2 * torch.randn(n, d, generator=g, dtype=torch.float64), h)
                        for _ in range(reps)])
    se = est.std().item() / math.sqrt(reps)
    assert abs(est.mean().item() - truth) < 5 * se + 1e-12, (est.mean().item(), truth, se)
    if shift == 0.0 and s2 == 1.0:
        assert truth == 0.0 and (est < 0).any(), "unbiased: equal distributions give negative estimates too"


# --------------------------------------------------------------------------------------------------
# Parzen window
# --------------------------------------------------------------------------------------------------

def test_parzen_matches_scipy_and_torch_distributions():
    g = rng(2)
    samples = torch.randn(50, 4, generator=g, dtype=torch.float64)
    x = torch.randn(30, 4, generator=g, dtype=torch.float64) * 1.5
    for sigma in (0.1, 0.5, 2.0):
        per_comp = np.stack([stats.multivariate_normal(mean=s, cov=sigma ** 2 * np.eye(4)).logpdf(x.numpy())
                             for s in samples.numpy()])  # (n, m)
        ref = (logsumexp(per_comp, axis=0) - math.log(50)).mean()
        assert metrics.parzen_log_likelihood(samples, x, sigma) == pytest.approx(ref, rel=1e-12, abs=1e-10)
        mix = torch.distributions.MixtureSameFamily(
            torch.distributions.Categorical(probs=torch.full((50,), 1 / 50, dtype=torch.float64)),
            torch.distributions.Independent(torch.distributions.Normal(samples, sigma), 1))
        assert metrics.parzen_log_likelihood(samples, x, sigma) == pytest.approx(mix.log_prob(x).mean().item(),
                                                                                rel=1e-12, abs=1e-10)
        assert metrics.parzen_log_likelihood(samples.float(), x.float(), sigma) == pytest.approx(ref, rel=1e-5)


def test_parzen_is_stable_where_the_naive_formula_underflows():
    # one sample at distance 30 with sigma 0.01: exp(-4.5e6) is 0 in float64, the log is exact
    samples = torch.zeros(1, 3, dtype=torch.float64)
    x = torch.tensor([[30.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    sigma = 0.01
    exact = [-900 / (2 * sigma ** 2) - 1.5 * math.log(2 * math.pi * sigma ** 2), -1.5 * math.log(2 * math.pi * sigma ** 2)]
    assert metrics.parzen_log_likelihood(samples, x, sigma) == pytest.approx(np.mean(exact), rel=1e-12)
    assert math.isfinite(metrics.parzen_log_likelihood(samples.float(), x.float(), sigma))


def test_parzen_in_blocks_and_sigma_selection(monkeypatch):
    g = rng(4)
    samples = torch.randn(80, 2, generator=g, dtype=torch.float64)
    x = torch.randn(60, 2, generator=g, dtype=torch.float64)
    whole = metrics.parzen_log_likelihood(samples, x, 0.3)
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 200)
    assert metrics.parzen_log_likelihood(samples, x, 0.3) == pytest.approx(whole, rel=1e-13)
    sigmas = [0.01, 0.1, 0.3, 1.0, 10.0]
    best, scores = metrics.parzen_select_sigma(samples, x, sigmas)
    assert scores == [metrics.parzen_log_likelihood(samples, x, s) for s in sigmas]
    assert best == sigmas[int(np.argmax(scores))] and best not in (0.01, 10.0)


def test_bernoulli_parzen_is_a_pmf_and_matches_torch_distributions(monkeypatch):
    g = rng(5)
    d = 4
    grid = torch.tensor([[(k >> j) & 1 for j in range(d)] for k in range(2 ** d)], dtype=torch.float64)
    for samples in (torch.bernoulli(torch.full((7, d), 0.4, dtype=torch.float64), generator=g),   # binary samples
                    torch.rand(5, d, generator=g, dtype=torch.float64)):                         # grey centres
        for eps in (0.01, 0.2, 0.5):
            per_x = torch.tensor([metrics.parzen_log_likelihood(samples, v[None], eps, kernel="bernoulli")
                                  for v in grid])
            assert torch.logsumexp(per_x, 0).item() == pytest.approx(0.0, abs=1e-12)   # sums to 1 over {0,1}^d
            mix = torch.distributions.MixtureSameFamily(
                torch.distributions.Categorical(probs=torch.full((len(samples),), 1 / len(samples), dtype=torch.float64)),
                torch.distributions.Independent(torch.distributions.Bernoulli(probs=eps + (1 - 2 * eps) * samples), 1))
            assert metrics.parzen_log_likelihood(samples, grid, eps, kernel="bernoulli") == pytest.approx(
                mix.log_prob(grid).mean().item(), rel=1e-12)
    # at eps = 1/2 every kernel is the uniform pmf: -d log 2 whatever the samples
    assert metrics.parzen_log_likelihood(samples, grid, 0.5, kernel="bernoulli") == pytest.approx(-d * math.log(2))
    # blocks, and the flip probability chosen on validation data
    x = torch.bernoulli(torch.full((60, d), 0.3, dtype=torch.float64), generator=g)
    whole = metrics.parzen_log_likelihood(samples, x, 0.1, kernel="bernoulli")
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 40)
    assert metrics.parzen_log_likelihood(samples, x, 0.1, kernel="bernoulli") == pytest.approx(whole, rel=1e-13)
    best, scores = metrics.parzen_select_sigma(samples, x, [0.05, 0.1, 0.3], kernel="bernoulli")
    assert best == [0.05, 0.1, 0.3][int(np.argmax(scores))]


def test_bernoulli_parzen_refuses_what_it_cannot_score():
    s, x = torch.rand(5, 3), torch.bernoulli(torch.full((4, 3), 0.5))
    with pytest.raises(ValueError, match="binary data"):
        metrics.parzen_log_likelihood(s, x + 0.1, 0.1, kernel="bernoulli")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.parzen_log_likelihood(s * 2, x, 0.1, kernel="bernoulli")
    with pytest.raises(ValueError, match=r"\(0, 1/2\]"):
        metrics.parzen_log_likelihood(s, x, 0.7, kernel="bernoulli")
    with pytest.raises(ValueError, match="unknown Parzen kernel"):
        metrics.parzen_log_likelihood(s, x, 0.1, kernel="laplace")


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------

def test_bad_input_gets_clear_errors():
    x, c = torch.randn(10, 2), torch.randn(3, 2)
    with pytest.raises(TypeError, match="samples must be a torch.Tensor"):
        metrics.modes_captured(x.numpy(), c, 0.1)
    with pytest.raises(TypeError, match="floating-point"):
        metrics.high_quality_fraction(x.long(), c, 0.1)
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        metrics.modes_captured(x[0], c, 0.1)
    with pytest.raises(ValueError, match="centres must have 2 columns"):
        metrics.modes_captured(x, torch.randn(3, 5), 0.1)
    with pytest.raises(ValueError, match="NaN or infinite"):
        metrics.mmd2(torch.tensor([[0.0], [float("nan")]]), torch.zeros(3, 1), 1.0)
    for bad in (0, -1.0, float("inf"), True, "0.1"):
        with pytest.raises(ValueError, match="sigma"):
            metrics.high_quality_fraction(x, c, bad)
        with pytest.raises(ValueError, match="bandwidth"):
            metrics.mmd2(x, x, bad)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="min_count"):
            metrics.modes_captured(x, c, 0.1, min_count=bad)
    with pytest.raises(ValueError, match="at least 2 row"):
        metrics.mmd2(x[:1], x, 1.0)
    with pytest.raises(ValueError, match="at least 1 row"):
        metrics.high_quality_fraction(x[:0], c, 0.1)
    with pytest.raises(ValueError, match="x must have 2 columns"):
        metrics.parzen_log_likelihood(x, torch.randn(4, 3), 0.5)
    with pytest.raises(ValueError, match="sigmas must be a non-empty sequence"):
        metrics.parzen_select_sigma(x, x, [])
    with pytest.raises(ValueError, match="sigmas must be a non-empty sequence"):
        metrics.parzen_select_sigma(x, x, 0.5)
    assert metrics.modes_captured(x[:0], c, 0.1) == 0, "no samples capture no mode"


# --------------------------------------------------------------------------------------------------
# mode_histogram_kl (chapter 08)
# --------------------------------------------------------------------------------------------------

def test_mode_histogram_kl_against_a_hand_computed_histogram():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]], dtype=torch.float64)
    # 6 high-quality samples on mode 0, 2 on mode 1, none on 2 and 3; one far sample that must not count
    x = torch.cat([centres[[0] * 6 + [1] * 2] + 0.01, torch.tensor([[5.0, 5.0]], dtype=torch.float64)])
    h = np.array([6, 2]) / 8
    assert metrics.mode_histogram_kl(x, centres, 0.1) == pytest.approx(float((h * np.log(h * 4)).sum()), rel=1e-12)
    assert metrics.mode_histogram_kl(centres, centres, 0.1) == pytest.approx(0.0, abs=1e-15)
    assert metrics.mode_histogram_kl(centres[:1].repeat(5, 1), centres, 0.1) == pytest.approx(math.log(4), rel=1e-12)
    assert math.isnan(metrics.mode_histogram_kl(torch.tensor([[5.0, 5.0]]), centres.float(), 0.1))


def test_mode_histogram_kl_of_a_perfect_sampler_is_near_zero():
    g = torch.Generator().manual_seed(3)
    centres = 4 * torch.randn(8, 2, generator=g, dtype=torch.float64)
    x = centres[torch.randint(0, 8, (20_000,), generator=g)] + 0.01 * torch.randn(20_000, 2, generator=g, dtype=torch.float64)
    # the KL of an empirical histogram of n draws from uniform is about (K - 1) / (2 n) on average
    assert 0 <= metrics.mode_histogram_kl(x, centres, 0.01) < 10 * 7 / (2 * 20_000 * 0.98)
