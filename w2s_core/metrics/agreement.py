"""Agreement among K weak teachers: pairwise agreement, Cohen's κ, Fleiss' κ, vote entropy.

Inputs are hard predictions ``preds`` (K, N) int in [0, C) (K teachers × N examples).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd


def _check_preds(preds: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    p = np.asarray(preds)
    if p.ndim != 2 or p.shape[1] == 0:
        raise ValueError(f"preds must be (K, N) with N > 0, got {p.shape}")
    p = p.astype(int)
    if n_classes is not None and (p.min() < 0 or p.max() >= n_classes):
        raise ValueError(f"preds must lie in [0, {n_classes}), got [{p.min()}, {p.max()}]")
    return p


def vote_counts(preds: np.ndarray, n_classes: int) -> np.ndarray:
    """Votes per example and class: n_ic = Σ_k 1[preds_ki = c] → (N, C)."""
    p = _check_preds(preds, n_classes)
    return (p[:, :, None] == np.arange(n_classes)).sum(axis=0)  # (K, N, C) → (N, C)


def pairwise_agreement(preds: np.ndarray) -> np.ndarray:
    """A_jk = (1/N) Σᵢ 1[preds_ji = preds_ki] → (K, K), diagonal 1."""
    p = _check_preds(preds)
    return (p[:, None, :] == p[None, :, :]).mean(axis=2)  # (K, K, N) → (K, K)


def cohen_kappa_matrix(preds: np.ndarray, n_classes: int) -> np.ndarray:
    """Cohen's κ for every pair of teachers → (K, K), diagonal 1.

    κ_jk = (p_o − p_e) / (1 − p_e), with observed agreement p_o = (1/N) Σᵢ 1[ŷ_ji = ŷ_ki] and
    chance agreement p_e = Σ_c q_jc q_kc (q_jc = fraction of teacher j's votes for class c).
    NaN off the diagonal when p_e = 1 (both teachers constant on the same class), as in sklearn.
    """
    p = _check_preds(preds, n_classes)
    k = p.shape[0]
    onehot = (p[:, :, None] == np.arange(n_classes)).astype(float)  # (K, N, C)
    q = onehot.mean(axis=1)  # (K, C) class frequencies per teacher
    p_e = q @ q.T  # (K, K)
    p_o = pairwise_agreement(p)  # (K, K)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(p_e < 1.0, (p_o - p_e) / (1.0 - p_e), np.nan)
    kappa[np.arange(k), np.arange(k)] = 1.0
    return kappa


def fleiss_kappa_from_counts(counts: np.ndarray) -> float:
    """Fleiss' κ from a vote-count table ``counts`` (N, C), n raters per subject (constant).

    p_c = Σᵢ n_ic / (N n);  Pᵢ = (Σ_c n_ic² − n) / (n (n − 1));  P̄ = mean Pᵢ;  P̄_e = Σ_c p_c²;
    κ = (P̄ − P̄_e) / (1 − P̄_e). NaN when P̄_e = 1 (every vote in one class).
    """
    c = np.asarray(counts, dtype=float)
    if c.ndim != 2 or c.shape[0] == 0:
        raise ValueError(f"counts must be (N, C) with N > 0, got {c.shape}")
    n_raters = c.sum(axis=1)  # (N,)
    n = n_raters[0]
    if not np.allclose(n_raters, n) or n < 2:
        raise ValueError("every subject needs the same number (≥ 2) of ratings")
    p_c = c.sum(axis=0) / c.sum()  # (C,)
    p_i = ((c**2).sum(axis=1) - n) / (n * (n - 1))  # (N,)
    p_bar, p_e = p_i.mean(), float((p_c**2).sum())
    if np.isclose(p_e, 1.0):
        return float("nan")
    return float((p_bar - p_e) / (1.0 - p_e))


def fleiss_kappa(preds: np.ndarray, n_classes: int) -> float:
    """Fleiss' κ of K teachers (raters) over N examples (subjects).

    Counts n_ic = votes for class c on example i, then ``fleiss_kappa_from_counts``.
    """
    return fleiss_kappa_from_counts(vote_counts(preds, n_classes))


def vote_entropy(preds: np.ndarray, n_classes: int) -> np.ndarray:
    """Entropy (nats) of each example's vote distribution → (N,).

    Hᵢ = −Σ_c v_ic log v_ic with v_ic = n_ic / K (0 log 0 = 0);
    0 = unanimous, log C = maximal split.
    """
    v = vote_counts(preds, n_classes) / np.asarray(preds).shape[0]  # (N, C)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(v > 0, v * np.log(v), 0.0)
    return -terms.sum(axis=1)


def teacher_set_summary(teacher_probs: Mapping[str, np.ndarray], y: np.ndarray) -> dict:
    """Summary of a set of teachers from their soft labels ``{name: (N, C)}`` on the same examples.

    Returns accuracy (pd.Series by name), agreement and kappa (K × K DataFrames indexed by
    name), fleiss_kappa (float), mean_vote_entropy (float, nats), with hard labels = argmax.
    """
    if not teacher_probs:
        raise ValueError("teacher_probs is empty")
    names = list(teacher_probs)
    arrays = [np.asarray(teacher_probs[n], dtype=float) for n in names]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or arrays[0].ndim != 2:
        raise ValueError(f"all teachers need probs of one shape (N, C), got {sorted(shapes)}")
    n_classes = arrays[0].shape[1]
    t = np.asarray(y).astype(int)
    preds = np.stack([a.argmax(axis=1) for a in arrays])  # (K, N)
    if t.shape != (preds.shape[1],):
        raise ValueError(f"y must be ({preds.shape[1]},), got {t.shape}")
    return {
        "accuracy": pd.Series((preds == t).mean(axis=1), index=names, name="accuracy"),
        "agreement": pd.DataFrame(pairwise_agreement(preds), index=names, columns=names),
        "kappa": pd.DataFrame(cohen_kappa_matrix(preds, n_classes), index=names, columns=names),
        "fleiss_kappa": fleiss_kappa(preds, n_classes) if len(names) > 1 else float("nan"),
        "mean_vote_entropy": float(vote_entropy(preds, n_classes).mean()),
    }
