"""Teacher agreement metrics against hand arithmetic, sklearn and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import entropy
from sklearn.metrics import cohen_kappa_score

from w2s_core.metrics import agreement as A

# The worked example of Wikipedia's "Fleiss' kappa" article:
# 10 subjects × 5 categories, 14 raters each.
FLEISS_COUNTS = np.array([
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
])
# column sums 20, 28, 39, 21, 32 (of 140) → p_c = .142857, .2, .278571, .15, .228571
# P̄_e = Σ p_c² = .020408 + .04 + .077602 + .0225 + .052245 = .212755
# Pᵢ = (Σ_c n_ic² − 14) / (14·13): numerators 182, 46, 56, 80, 60, 84, 44, 32, 52, 52 (sum 688)
# P̄ = 688 / 1820 = .378022;  κ = (.378022 − .212755) / (1 − .212755) = .209930
FLEISS_KAPPA = (688 / 1820 - 0.2127551020408163) / (1 - 0.2127551020408163)


def test_fleiss_worked_example() -> None:
    assert abs(FLEISS_KAPPA - 0.20993) < 1e-5
    assert A.fleiss_kappa_from_counts(FLEISS_COUNTS) == pytest.approx(FLEISS_KAPPA)
    assert round(A.fleiss_kappa_from_counts(FLEISS_COUNTS), 3) == 0.210


def test_fleiss_from_preds_equals_counts() -> None:
    # turn the count table into 14 raters' labels per subject (the rater order is irrelevant)
    preds = np.stack([np.repeat(np.arange(5), row) for row in FLEISS_COUNTS], axis=1)  # (14, 10)
    np.testing.assert_array_equal(A.vote_counts(preds, 5), FLEISS_COUNTS)
    assert A.fleiss_kappa(preds, 5) == pytest.approx(FLEISS_KAPPA)


def test_fleiss_perfect_and_degenerate() -> None:
    preds = np.array([[0, 1, 2, 1], [0, 1, 2, 1], [0, 1, 2, 1]])  # unanimous, varied classes
    assert A.fleiss_kappa(preds, 3) == pytest.approx(1.0)
    assert math.isnan(A.fleiss_kappa(np.zeros((3, 4), dtype=int), 3))  # all votes in one class
    with pytest.raises(ValueError):
        A.fleiss_kappa_from_counts(np.array([[2, 0], [1, 0]]))  # unequal rater counts


def test_pairwise_agreement_hand() -> None:
    preds = np.array([[0, 1, 1, 0], [0, 1, 0, 0], [1, 0, 0, 1]])
    # t0 vs t1: agree at 0, 1, 3 → .75; t0 vs t2: 0/4; t1 vs t2: agree at 2 → .25
    expected = np.array([[1, 0.75, 0], [0.75, 1, 0.25], [0, 0.25, 1]])
    np.testing.assert_allclose(A.pairwise_agreement(preds), expected)


def test_cohen_kappa_matrix_vs_sklearn() -> None:
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 4, size=200)
    preds = np.stack([np.where(rng.random(200) < acc, gold, rng.integers(0, 4, 200))
                      for acc in (0.9, 0.7, 0.5, 0.2)])  # (4, 200)
    kappa = A.cohen_kappa_matrix(preds, 4)
    for j in range(4):
        assert kappa[j, j] == 1.0
        for k in range(4):
            if j != k:
                assert kappa[j, k] == pytest.approx(cohen_kappa_score(preds[j], preds[k]))
    np.testing.assert_allclose(kappa, kappa.T)


def test_cohen_kappa_hand() -> None:
    # t0 = [0,0,1,1], t1 = [0,1,1,1]: p_o = 3/4; q0 = (.5,.5), q1 = (.25,.75)
    # p_e = .5·.25 + .5·.75 = .5 → κ = (.75 − .5) / .5 = .5
    kappa = A.cohen_kappa_matrix(np.array([[0, 0, 1, 1], [0, 1, 1, 1]]), 2)
    assert kappa[0, 1] == pytest.approx(0.5)
    # two constant teachers on the same class: p_e = 1 → undefined off the diagonal
    const = A.cohen_kappa_matrix(np.zeros((2, 5), dtype=int), 2)
    assert math.isnan(const[0, 1]) and const[0, 0] == 1.0


def test_vote_entropy_hand_and_scipy() -> None:
    preds = np.array([[0, 2, 0], [0, 2, 1], [1, 2, 2], [1, 2, 2]])  # (K=4, N=3)
    h = A.vote_entropy(preds, 3)
    # ex 0: votes (2, 2, 0)/4 → ln 2; ex 1: unanimous → 0
    # ex 2: (1, 1, 2)/4 → −(2·¼ ln ¼ + ½ ln ½) = 1.5 ln 2
    np.testing.assert_allclose(h, [math.log(2), 0.0, 1.5 * math.log(2)], atol=1e-12)
    np.testing.assert_allclose(h[2], entropy([1, 1, 2]))


def test_teacher_set_summary() -> None:
    y = np.array([0, 1, 1, 0])
    eye = np.eye(2)
    teachers = {"a": eye[[0, 1, 1, 0]] * 0.8 + 0.1, "b": eye[[0, 1, 0, 0]] * 0.6 + 0.2,
                "c": eye[[1, 0, 0, 1]] * 0.9 + 0.05}
    out = A.teacher_set_summary(teachers, y)
    assert out["accuracy"].to_dict() == pytest.approx({"a": 1.0, "b": 0.75, "c": 0.0})
    assert list(out["agreement"].index) == ["a", "b", "c"]
    assert out["agreement"].loc["a", "b"] == pytest.approx(0.75)
    assert out["kappa"].loc["a", "c"] == pytest.approx(-1.0)  # perfect disagreement, p_e = .5
    preds = np.array([[0, 1, 1, 0], [0, 1, 0, 0], [1, 0, 0, 1]])
    assert out["fleiss_kappa"] == pytest.approx(A.fleiss_kappa(preds, 2))
    assert out["mean_vote_entropy"] == pytest.approx(A.vote_entropy(preds, 2).mean())
