"""Classification metrics against hand-computed cases and sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from w2s_core.errors import W2SError
from w2s_core.metrics import classification as M
from w2s_core.metrics.registry import METRICS


def _random_probs(rng: np.random.Generator, n: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    logits = rng.normal(size=(n, c)) * 2
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(c, p=row) for row in p])  # labels drawn from p: roughly calibrated
    return p, y


# 3-class toy set for hand arithmetic (conf = max, pred = argmax):
#   row 0: conf .40 pred 0, y 0 → correct
#   row 1: conf .45 pred 1, y 2 → wrong
#   row 2: conf .90 pred 0, y 0 → correct
#   row 3: conf .70 pred 1, y 0 → wrong
TOY_P = np.array([[0.4, 0.3, 0.3], [0.2, 0.45, 0.35], [0.9, 0.05, 0.05], [0.1, 0.7, 0.2]])
TOY_Y = np.array([0, 2, 0, 0])


def test_accuracy_hand() -> None:
    assert M.accuracy(TOY_P, TOY_Y) == pytest.approx(0.5)  # rows 0, 2 correct → 2/4


def test_pgr_cases() -> None:
    # (0.8 − 0.6) / (0.9 − 0.6) = 0.2 / 0.3
    assert M.pgr(0.8, 0.6, 0.9) == pytest.approx(2 / 3)
    assert M.pgr(0.6, 0.6, 0.9) == 0.0 and M.pgr(0.9, 0.6, 0.9) == pytest.approx(1.0)
    assert M.pgr(0.5, 0.6, 0.9) == pytest.approx(-1 / 3)  # transfer below the floor
    assert M.pgr_defined(0.6, 0.9)
    for floor, ceil in [(0.7, 0.7), (0.8, 0.7)]:  # floor == ceiling, floor > ceiling
        assert math.isnan(M.pgr(0.75, floor, ceil))
        assert not M.pgr_defined(floor, ceil)
    assert not M.pgr_defined(float("nan"), 0.9)


def test_ece_hand_two_bins() -> None:
    # bins (0, .5], (.5, 1]: bin0 = rows 0, 1: conf (.40 + .45)/2 = .425, acc 1/2 → gap .075
    #                        bin1 = rows 2, 3: conf (.90 + .70)/2 = .80,  acc 1/2 → gap .30
    # ECE = .5 · .075 + .5 · .30 = .1875;  MCE = .30
    assert M.ece(TOY_P, TOY_Y, n_bins=2) == pytest.approx(0.1875)
    assert M.mce(TOY_P, TOY_Y, n_bins=2) == pytest.approx(0.30)
    tab = M.reliability_table(TOY_P, TOY_Y, n_bins=2)
    assert list(tab.columns) == ["bin", "lo", "hi", "confidence", "accuracy", "count"]
    np.testing.assert_allclose(tab["confidence"], [0.425, 0.8])
    np.testing.assert_allclose(tab["count"], [2, 2])


def test_bin_edge_goes_to_lower_bin() -> None:
    # conf exactly .5 with 2 bins → first bin (0, .5] (sklearn's convention)
    p = np.array([[0.5, 0.5], [0.8, 0.2]])
    tab = M.reliability_table(p, np.array([0, 0]), n_bins=2)
    assert tab["bin"].tolist() == [0, 1]


def _calibrated_set() -> tuple[np.ndarray, np.ndarray]:
    # 3 confidence levels, 20 examples each, exactly conf·20 of them correct → ECE = 0
    rows, ys = [], []
    for conf in (0.6, 0.75, 0.9):
        n_right = round(conf * 20)
        for i in range(20):
            rows.append([conf, 1 - conf])
            ys.append(0 if i < n_right else 1)
    return np.array(rows), np.array(ys)


def test_ece_zero_when_perfectly_calibrated() -> None:
    p, y = _calibrated_set()
    assert M.ece(p, y) == pytest.approx(0.0, abs=1e-12)
    assert M.ece_equal_mass(p, y) == pytest.approx(0.0, abs=1e-12)
    assert M.mce(p, y) == pytest.approx(0.0, abs=1e-12)


def test_equal_mass_bins_equal_counts() -> None:
    rng = np.random.default_rng(0)
    p, y = _random_probs(rng, 300, 3)  # continuous confidences: no ties
    tab = M.reliability_table(p, y, n_bins=15, strategy="quantile")
    assert tab["count"].tolist() == [20] * 15
    p, y = _random_probs(rng, 301, 3)
    counts = M.reliability_table(p, y, n_bins=15, strategy="quantile")["count"]
    assert counts.sum() == 301 and counts.max() - counts.min() <= 1
    # uniform bins on the same data are far from equal
    assert M.reliability_table(p, y, strategy="uniform")["count"].std() > 1


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_reliability_matches_sklearn(strategy: str) -> None:
    rng = np.random.default_rng(1)
    p, y = _random_probs(rng, 500, 2)
    # top-label table == calibration_curve(correct, confidence)
    correct = (p.argmax(axis=1) == y).astype(int)
    tab = M.reliability_table(p, y, n_bins=10, strategy=strategy)
    prob_true, prob_pred = calibration_curve(correct, p.max(axis=1), n_bins=10, strategy=strategy)
    np.testing.assert_allclose(tab["accuracy"], prob_true)
    np.testing.assert_allclose(tab["confidence"], prob_pred)
    assert tab["count"].sum() == len(y)


def test_ece_matches_independent_loop() -> None:
    rng = np.random.default_rng(2)
    p, y = _random_probs(rng, 400, 4)
    conf, correct = p.max(axis=1), p.argmax(axis=1) == y
    total, worst = 0.0, 0.0
    for b in range(15):  # plain loop over (b/15, (b+1)/15], first bin closed at 0
        lo, hi = b / 15, (b + 1) / 15
        m = (conf > lo) & (conf <= hi) if b else (conf <= hi)
        if m.any():
            gap = abs(correct[m].mean() - conf[m].mean())
            total += m.sum() / len(y) * gap
            worst = max(worst, gap)
    assert M.ece(p, y) == pytest.approx(total)
    assert M.mce(p, y) == pytest.approx(worst)


def test_brier_hand_and_sklearn() -> None:
    # row [.7, .2, .1], y 0: (.7−1)² + .2² + .1² = .09 + .04 + .01 = .14
    assert M.brier(np.array([[0.7, 0.2, 0.1]]), np.array([0])) == pytest.approx(0.14)
    rng = np.random.default_rng(3)
    p, y = _random_probs(rng, 200, 2)
    # binary: Σ_c over 2 classes = 2 (p1 − y)² → 2 × brier_score_loss
    assert M.brier(p, y) == pytest.approx(2 * brier_score_loss(y, p[:, 1]))


def test_nll_hand_and_sklearn() -> None:
    assert M.nll(np.array([[0.7, 0.3]]), np.array([0])) == pytest.approx(-math.log(0.7))
    assert M.nll(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(-math.log(1e-12))
    rng = np.random.default_rng(4)
    p, y = _random_probs(rng, 200, 5)
    assert M.nll(p, y) == pytest.approx(log_loss(y, p, labels=range(5)))


def test_auroc_vs_sklearn() -> None:
    rng = np.random.default_rng(5)
    p, y = _random_probs(rng, 300, 2)
    assert M.auroc(p, y) == pytest.approx(roc_auc_score(y, p[:, 1]))
    p, y = _random_probs(rng, 300, 4)
    expected = roc_auc_score(y, p, multi_class="ovr", average="macro")
    assert M.auroc(p, y) == pytest.approx(expected)
    # ties: scores [.5, .5] pos/neg → AUROC .5
    assert M.auroc(np.array([[0.5, 0.5], [0.5, 0.5]]), np.array([0, 1])) == pytest.approx(0.5)


def test_auroc_nan_when_class_absent() -> None:
    p = np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2], [0.1, 0.8, 0.1]])
    assert math.isnan(M.auroc(p, np.array([0, 0, 1])))  # class 2 absent
    assert math.isnan(M.auroc(np.array([[0.3, 0.7], [0.4, 0.6]]), np.array([1, 1])))


# student vs weak, threshold .75 (s = student argmax/conf, w = weak argmax/conf, y = gold):
#   0: s 0/.90  w 1/.80  y 1 → both confident, disagree        (weak right)
#   1: s 1/.80  w 1/.90  y 0 → weak wrong, student copies confidently
#   2: s 1/.60  w 1/.80  y 0 → weak wrong, student copies but not confident
#   3: s 0/.95  w 0/.60  y 0 → agree, weak not confident      (weak right)
#   4: s 0/.80  w 1/.85  y 0 → both confident, disagree; weak wrong, student right
S_P = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.95, 0.05], [0.8, 0.2]])
W_P = np.array([[0.2, 0.8], [0.1, 0.9], [0.2, 0.8], [0.6, 0.4], [0.15, 0.85]])
SW_Y = np.array([1, 0, 0, 0, 0])


def test_weak_agreement_metrics_hand() -> None:
    assert M.weak_agreement(S_P, W_P) == pytest.approx(3 / 5)  # rows 1, 2, 3 agree
    assert M.confident_disagreement_rate(S_P, W_P) == pytest.approx(2 / 5)  # rows 0, 4
    # weak wrong on rows 1, 2, 4; copied confidently on row 1 only → 1/3
    assert M.confident_agreement_given_wrong(S_P, W_P, SW_Y) == pytest.approx(1 / 3)
    # with threshold .55 row 2 counts as confident too → 2/3
    assert M.confident_agreement_given_wrong(S_P, W_P, SW_Y, 0.55) == pytest.approx(2 / 3)
    assert math.isnan(M.confident_agreement_given_wrong(S_P, W_P, W_P.argmax(axis=1)))


def test_run_metrics_keys() -> None:
    rng = np.random.default_rng(6)
    p, y = _random_probs(rng, 50, 3)
    base = {"accuracy", "ece", "ece_em", "mce", "brier", "nll", "auroc"}
    assert set(M.run_metrics(p, y)) == base
    weak, _ = _random_probs(rng, 50, 3)
    alpha = rng.uniform(1, 5, size=(50, 3))
    out = M.run_metrics(p, y, weak_probs=weak, alpha=alpha)
    assert base | {"weak_agreement", "cdr", "car_wrong", "mean_S", "auroc_vacuity"} <= set(out)
    assert all(isinstance(v, float) for v in out.values())
    assert out["accuracy"] == M.accuracy(p, y)


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        M.accuracy(np.array([[2.0, 1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="labels"):
        M.accuracy(np.array([[0.5, 0.5]]), np.array([2]))
    with pytest.raises(ValueError, match="strategy"):
        M.reliability_table(TOY_P, TOY_Y, strategy="bogus")  # type: ignore[arg-type]


def test_registry() -> None:
    assert set(METRICS.names()) == {"accuracy", "ece", "ece_em", "mce", "brier", "nll", "auroc"}
    assert METRICS.get("accuracy").higher_is_better and not METRICS.get("ece").higher_is_better
    for name, entry in METRICS.items():
        assert entry.name == name and entry.description
        assert isinstance(entry.fn(TOY_P, np.array([0, 1, 2, 0])), float)
    with pytest.raises(W2SError, match="known"):
        METRICS.get("f1")
