"""Classification metrics: accuracy, PGR, calibration, proper scores, AUROC, weak-label agreement.

All functions are pure: ``probs`` (N, C) rows summing to 1, ``y`` (N,) int gold labels.
Calibration uses the *top label*: confidence cᵢ = maxₖ pᵢₖ, prediction ŷᵢ = argmaxₖ pᵢₖ.
Binning follows ``sklearn.calibration.calibration_curve``: bins are (lo, hi], the first one
also holds its lower edge.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from w2s_core.metrics.dirichlet import dirichlet_summary
from w2s_core.metrics.stats import binary_auroc

BinStrategy = Literal["uniform", "quantile"]


def _check(probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=float)
    t = np.asarray(y).astype(int)
    if p.ndim != 2 or t.ndim != 1 or p.shape[0] != t.shape[0] or p.shape[0] == 0:
        raise ValueError(f"need probs (N, C) and y (N,) with N > 0, got {p.shape} and {t.shape}")
    if t.min() < 0 or t.max() >= p.shape[1]:
        raise ValueError(f"labels must lie in [0, {p.shape[1]}), got [{t.min()}, {t.max()}]")
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("probs rows must sum to 1 (got logits? apply softmax first)")
    return p, t


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    """acc = (1/N) Σᵢ 1[argmax pᵢ = yᵢ]."""
    p, t = _check(probs, y)
    return float((p.argmax(axis=1) == t).mean())


def pgr_defined(p_floor: float, p_ceiling: float) -> bool:
    """PGR is defined only when the strong ceiling beats the weak floor: P_ceiling > P_floor."""
    return bool(np.isfinite(p_floor) and np.isfinite(p_ceiling) and p_ceiling > p_floor)


def pgr(p_transfer: float, p_floor: float, p_ceiling: float) -> float:
    """Performance gap recovered: (P_transfer − P_floor) / (P_ceiling − P_floor).

    NaN (undefined, to be flagged, never silently dropped) when P_ceiling ≤ P_floor.
    """
    if not pgr_defined(p_floor, p_ceiling):
        return float("nan")
    return float((p_transfer - p_floor) / (p_ceiling - p_floor))


def _bin_ids(
    scores: np.ndarray, n_bins: int, strategy: BinStrategy
) -> tuple[np.ndarray, np.ndarray]:
    """Bin index per score (N,) and the edges (n_bins + 1,), exactly as sklearn bins them.

    uniform: edges = linspace(0, 1, B+1); quantile (equal mass): edges = percentiles of
    ``scores`` at 0, 100/B, …, 100 (ties stay in one bin, so bins may be unequal or empty).
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be ≥ 1, got {n_bins}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.percentile(scores, np.linspace(0, 100, n_bins + 1))
    else:
        raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    return np.searchsorted(edges[1:-1], scores), edges  # side="left" → bins (lo, hi]


def _bin_sums(
    scores: np.ndarray, hits: np.ndarray, n_bins: int, strategy: BinStrategy
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: edges (B+1,), non-empty mask, count, Σ score, Σ hit (each (B,))."""
    ids, edges = _bin_ids(scores, n_bins, strategy)
    count = np.bincount(ids, minlength=n_bins)  # (B,)
    s_sum = np.bincount(ids, weights=scores, minlength=n_bins)
    h_sum = np.bincount(ids, weights=hits.astype(float), minlength=n_bins)
    return edges, count > 0, count, s_sum, h_sum


def _binned(
    scores: np.ndarray, hits: np.ndarray, n_bins: int, strategy: BinStrategy
) -> pd.DataFrame:
    """Per non-empty bin: bin, lo, hi, mean score, mean hit, count."""
    edges, keep, count, s_sum, h_sum = _bin_sums(scores, hits, n_bins, strategy)
    return pd.DataFrame({
        "bin": np.arange(n_bins)[keep],
        "lo": edges[:-1][keep],
        "hi": edges[1:][keep],
        "score": s_sum[keep] / count[keep],
        "hit": h_sum[keep] / count[keep],
        "count": count[keep],
    })


def _calibration_gaps(
    probs: np.ndarray, y: np.ndarray, n_bins: int, strategy: BinStrategy
) -> tuple[np.ndarray, np.ndarray]:
    """Top-label bins: weights |b|/N and gaps |acc(b) − conf(b)| of the non-empty bins.

    Plain numpy (no DataFrame): the sweep computes these for a thousand runs."""
    p, t = _check(probs, y)
    conf, correct = p.max(axis=1), p.argmax(axis=1) == t  # (N,), (N,)
    _, keep, count, s_sum, h_sum = _bin_sums(conf, correct, n_bins, strategy)
    c = count[keep]
    return c / c.sum(), np.abs(h_sum[keep] / c - s_sum[keep] / c)


def reliability_table(
    probs: np.ndarray, y: np.ndarray, n_bins: int = 15, strategy: BinStrategy = "uniform"
) -> pd.DataFrame:
    """Top-label reliability diagram data; empty bins dropped.

    Per bin b: confidence = mean cᵢ, accuracy = mean 1[ŷᵢ = yᵢ], count = |b|; lo/hi = edges.
    Equals ``calibration_curve(correct, confidence, n_bins=…, strategy=…)`` (prob_pred, prob_true).
    """
    p, t = _check(probs, y)
    conf, correct = p.max(axis=1), p.argmax(axis=1) == t  # (N,), (N,)
    df = _binned(conf, correct, n_bins, strategy)
    return df.rename(columns={"score": "confidence", "hit": "accuracy"})


def ece(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """Top-label expected calibration error with uniform bins.

    ECE = Σ_b (|b| / N) · |acc(b) − conf(b)| over B equal-width bins (lo, hi] of [0, 1].
    """
    w, gap = _calibration_gaps(probs, y, n_bins, "uniform")
    return float((w * gap).sum())


def ece_equal_mass(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE with equal-mass bins (edges = confidence percentiles; Roelofs et al. 2022).

    Same formula as ``ece``; each bin holds ≈ N/B examples (exactly, for distinct confidences
    and N divisible by B), so sparse high-confidence regions are not under-resolved.
    """
    w, gap = _calibration_gaps(probs, y, n_bins, "quantile")
    return float((w * gap).sum())


def mce(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """Maximum calibration error: MCE = max_b |acc(b) − conf(b)| over non-empty uniform bins."""
    return float(_calibration_gaps(probs, y, n_bins, "uniform")[1].max())


def brier(probs: np.ndarray, y: np.ndarray) -> float:
    """Multi-class Brier score: (1/N) Σᵢ Σ_c (pᵢc − 1[yᵢ = c])² ∈ [0, 2].

    Binary: equals 2 × sklearn's ``brier_score_loss(y, p₁)``.
    """
    p, t = _check(probs, y)
    onehot = np.eye(p.shape[1])[t]  # (N, C)
    return float(((p - onehot) ** 2).sum(axis=1).mean())


def nll(probs: np.ndarray, y: np.ndarray, eps: float = 1e-12) -> float:
    """Negative log-likelihood: (1/N) Σᵢ −log max(pᵢ,yᵢ, eps) (nats)."""
    p, t = _check(probs, y)
    return float(-np.log(np.maximum(p[np.arange(t.size), t], eps)).mean())


def auroc(probs: np.ndarray, y: np.ndarray) -> float:
    """AUROC. Binary: of p₁ as a detector of y = 1. Multi-class: macro one-vs-rest,
    (1/C) Σ_c AUROC(p·c, 1[y = c]); NaN if any class is absent from ``y``.
    """
    p, t = _check(probs, y)
    if p.shape[1] == 2:
        return binary_auroc(p[:, 1], t == 1)
    per_class = [binary_auroc(p[:, c], t == c) for c in range(p.shape[1])]
    return float(np.mean(per_class))  # NaN propagates when a class is absent


def _check_pair(student_probs: np.ndarray, weak_probs: np.ndarray) -> tuple[np.ndarray, ...]:
    s = np.asarray(student_probs, dtype=float)
    w = np.asarray(weak_probs, dtype=float)
    if s.shape != w.shape or s.ndim != 2:
        raise ValueError(f"student and weak probs must both be (N, C), got {s.shape}, {w.shape}")
    return s, w


def weak_agreement(student_probs: np.ndarray, weak_probs: np.ndarray) -> float:
    """Fraction of examples where the student's and the weak labels' argmax agree."""
    s, w = _check_pair(student_probs, weak_probs)
    return float((s.argmax(axis=1) == w.argmax(axis=1)).mean())


def confident_disagreement_rate(
    student_probs: np.ndarray, weak_probs: np.ndarray, threshold: float = 0.75
) -> float:
    """CDR = (1/N) Σᵢ 1[max sᵢ ≥ τ ∧ max wᵢ ≥ τ ∧ argmax sᵢ ≠ argmax wᵢ].

    The student confidently contradicts a confident supervisor (EleutherAI weak-to-strong).
    """
    s, w = _check_pair(student_probs, weak_probs)
    both = (s.max(axis=1) >= threshold) & (w.max(axis=1) >= threshold)
    return float((both & (s.argmax(axis=1) != w.argmax(axis=1))).mean())


def confident_agreement_given_wrong(
    student_probs: np.ndarray, weak_probs: np.ndarray, y: np.ndarray, threshold: float = 0.75
) -> float:
    """CAR | weak wrong = P(argmax sᵢ = argmax wᵢ ∧ max sᵢ ≥ τ | argmax wᵢ ≠ yᵢ).

    How often the student confidently copies the weak labels' mistakes; NaN if none are wrong.
    """
    s, w = _check_pair(student_probs, weak_probs)
    _, t = _check(w, y)
    w_hat = w.argmax(axis=1)
    wrong = w_hat != t
    if not wrong.any():
        return float("nan")
    copied = (s.argmax(axis=1) == w_hat) & (s.max(axis=1) >= threshold)
    return float(copied[wrong].mean())


def run_metrics(
    probs: np.ndarray,
    y: np.ndarray,
    *,
    weak_probs: np.ndarray | None = None,
    alpha: np.ndarray | None = None,
    n_bins: int = 15,
    threshold: float = 0.75,
) -> dict[str, float]:
    """Every metric above in one flat dict.

    Keys: accuracy, ece, ece_em, mce, brier, nll, auroc; with ``weak_probs`` (the weak
    ensemble's soft labels on the same examples): weak_agreement, cdr, car_wrong; with
    ``alpha`` (N, C): the keys of ``dirichlet_summary``.
    """
    out = {
        "accuracy": accuracy(probs, y),
        "ece": ece(probs, y, n_bins),
        "ece_em": ece_equal_mass(probs, y, n_bins),
        "mce": mce(probs, y, n_bins),
        "brier": brier(probs, y),
        "nll": nll(probs, y),
        "auroc": auroc(probs, y),
    }
    if weak_probs is not None:
        out["weak_agreement"] = weak_agreement(probs, weak_probs)
        out["cdr"] = confident_disagreement_rate(probs, weak_probs, threshold)
        out["car_wrong"] = confident_agreement_given_wrong(probs, weak_probs, y, threshold)
    if alpha is not None:
        out.update(dirichlet_summary(alpha, y))
    return out
