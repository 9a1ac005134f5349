"""Dirichlet read-outs/densities and bootstrap statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from w2s_core.metrics import dirichlet as D
from w2s_core.metrics import stats as S


def test_readouts_identities() -> None:
    rng = np.random.default_rng(0)
    alpha = 1 + rng.exponential(3, size=(50, 4))
    r = D.dirichlet_readouts(alpha)
    np.testing.assert_allclose(r["belief"].sum(axis=1) + r["vacuity"], 1.0)  # Σb + u = 1
    np.testing.assert_allclose(r["prob"].sum(axis=1), 1.0)
    np.testing.assert_allclose(r["prob"][0], sps.dirichlet.mean(alpha[0]))  # α/S
    assert r["S"].shape == (50,) and r["belief"].shape == (50, 4)


def test_readouts_hand() -> None:
    # α = (1, 1, 1): no evidence → S = 3, u = 1, b = 0
    r = D.dirichlet_readouts(np.ones((1, 3)))
    assert r["vacuity"][0] == 1.0 and r["S"][0] == 3.0 and (r["belief"] == 0).all()
    # α = (7, 2, 1): S = 10, u = .3, b = (.6, .1, 0), p = (.7, .2, .1)
    r = D.dirichlet_readouts(np.array([[7.0, 2.0, 1.0]]))
    np.testing.assert_allclose(r["belief"][0], [0.6, 0.1, 0.0])
    np.testing.assert_allclose(r["prob"][0], [0.7, 0.2, 0.1])
    assert r["vacuity"][0] == pytest.approx(0.3)


def test_dirichlet_summary() -> None:
    alpha = np.array([[9.0, 1.0], [1.0, 1.5], [1.0, 19.0], [2.0, 1.0]])
    y = np.array([0, 0, 1, 1])  # predictions 0, 1, 1, 0 → correct, wrong, correct, wrong
    # S = 10, 2.5, 20, 3 → u = .2, .8, .1, 2/3
    out = D.dirichlet_summary(alpha, y)
    assert out["mean_S"] == pytest.approx((10 + 2.5 + 20 + 3) / 4)
    assert out["vacuity_correct"] == pytest.approx((0.2 + 0.1) / 2)
    assert out["vacuity_wrong"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert out["auroc_vacuity"] == pytest.approx(1.0)  # every wrong one is more vacuous
    rng = np.random.default_rng(1)
    alpha = 1 + rng.exponential(2, size=(200, 3))
    y = rng.integers(0, 3, 200)
    u, wrong = 3 / alpha.sum(1), alpha.argmax(1) != y
    assert D.dirichlet_summary(alpha, y)["auroc_vacuity"] == pytest.approx(roc_auc_score(wrong, u))
    all_right = D.dirichlet_summary(alpha, alpha.argmax(1))
    assert math.isnan(all_right["auroc_vacuity"]) and math.isnan(all_right["vacuity_wrong"])


def test_beta_density() -> None:
    grid = np.linspace(0.0005, 0.9995, 1000)  # midpoints of 1000 cells of width .001
    a, b = 2.5, 4.0
    norm = math.gamma(a + b) / (math.gamma(a) * math.gamma(b))
    closed = norm * grid ** (a - 1) * (1 - grid) ** (b - 1)
    dens = D.beta_density(a, b, grid)
    np.testing.assert_allclose(dens, closed, rtol=1e-10)
    assert dens.sum() * 0.001 == pytest.approx(1.0, abs=1e-4)


def test_dirichlet_density_simplex() -> None:
    alpha = np.array([2.0, 3.0, 4.0])
    pts, dens = D.dirichlet_density_simplex(alpha, n_grid=60)
    assert pts.shape == (3600, 3) and dens.shape == (3600,)
    assert (pts > 0).all()
    np.testing.assert_allclose(pts.sum(axis=1), 1.0)
    # closed form Γ(Σα)/ΠΓ(α_c) Π x_c^(α_c − 1)
    log_norm = math.lgamma(alpha.sum()) - sum(math.lgamma(v) for v in alpha)
    closed = np.exp(log_norm + ((alpha - 1) * np.log(pts)).sum(axis=1))
    np.testing.assert_allclose(dens, closed, rtol=1e-8)
    # midpoint rule: each point stands for area 1/(2 n²) → Σ dens / (2 n²) ≈ 1
    assert dens.sum() / (2 * 60**2) == pytest.approx(1.0, abs=5e-3)
    _, flat = D.dirichlet_density_simplex(np.ones(3), n_grid=10)
    np.testing.assert_allclose(flat, 2.0)  # uniform Dirichlet density = Γ(3) = 2


def test_binary_auroc_vs_sklearn() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(size=300) + labels, 1)  # rounding creates ties
    assert S.binary_auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
    assert math.isnan(S.binary_auroc(scores, np.zeros(300)))


def test_mean_std_ci_basic() -> None:
    v = [0.2, 0.4, 0.6, 0.8]
    out = S.mean_std_ci(v)
    assert out["mean"] == pytest.approx(0.5) and out["n"] == 4 and out["n_undefined"] == 0
    assert out["std"] == pytest.approx(np.std(v, ddof=1))
    assert 0.2 <= out["lo"] <= out["mean"] <= out["hi"] <= 0.8
    assert S.mean_std_ci(v, seed=3) == S.mean_std_ci(v, seed=3)  # deterministic


def test_mean_std_ci_edge_cases() -> None:
    one = S.mean_std_ci([0.7])
    assert one["lo"] == one["hi"] == one["mean"] == 0.7 and math.isnan(one["std"])
    out = S.mean_std_ci([0.1, float("nan"), 0.3, float("nan")])
    assert out["n"] == 2 and out["n_undefined"] == 2 and out["mean"] == pytest.approx(0.2)
    empty = S.mean_std_ci([float("nan")])
    assert empty["n"] == 0 and empty["n_undefined"] == 1 and math.isnan(empty["mean"])


def test_bootstrap_ci_shrinks_and_matches_scipy() -> None:
    rng = np.random.default_rng(4)
    small, big = rng.normal(size=10), rng.normal(size=1000)
    w_small = S.mean_std_ci(small)["hi"] - S.mean_std_ci(small)["lo"]
    w_big = S.mean_std_ci(big)["hi"] - S.mean_std_ci(big)["lo"]
    assert w_big < w_small / 3  # ≈ √100 = 10× narrower
    data = rng.normal(size=60)
    ours = S.mean_std_ci(data, n_boot=4000)
    ref = sps.bootstrap((data,), np.mean, n_resamples=4000, method="percentile", rng=0)
    se = data.std(ddof=1) / math.sqrt(60)
    assert ours["lo"] == pytest.approx(ref.confidence_interval.low, abs=0.15 * se)
    assert ours["hi"] == pytest.approx(ref.confidence_interval.high, abs=0.15 * se)
