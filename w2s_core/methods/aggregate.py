"""Label aggregation over K teachers' soft labels: soft vote, majority vote, Dawid–Skene,
and teacher weights λ_k estimated without gold labels.

Shapes: teacher soft labels ``p`` are (K, N, C) numpy arrays; λ is (K,).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from w2s_core.errors import W2SError


def onehot(labels: np.ndarray, c: int) -> np.ndarray:
    """Integer labels (N,) → one-hot rows (N, C) float64."""
    return np.eye(c, dtype=np.float64)[labels]


def soft_vote(p: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Σ_k λ_k p^(k): the λ-weighted mean soft label. (K, N, C), (K,) → (N, C)."""
    return np.einsum("k,knc->nc", lam, p)


def majority_vote(p: np.ndarray) -> np.ndarray:
    """Hard majority vote of the teachers' argmax labels. (K, N, C) → (N,) int.

    Ties (e.g. an even K split 2–2) are broken by the teachers' mean probability among the
    tied classes: a naive rule (first class wins) biases ties toward class 0 and made PGR
    negative in our feasibility probe.
    """
    k, n, c = p.shape
    votes = np.zeros((n, c))
    np.add.at(votes, (np.broadcast_to(np.arange(n), (k, n)), p.argmax(-1)), 1.0)
    tied = votes == votes.max(-1, keepdims=True)  # (N, C) classes sharing the top count
    mean_p = np.where(tied, p.mean(0), -np.inf)
    return mean_p.argmax(-1)


@dataclass(frozen=True)
class DawidSkeneResult:
    posterior: np.ndarray  # (N, C) P(true class | votes)
    accuracy: np.ndarray  # (K,) estimated P(teacher label == true label), no gold used
    confusion: np.ndarray  # (K, C_true, C_obs)


def dawid_skene(p: np.ndarray, n_iter: int = 100) -> DawidSkeneResult:
    """Dawid & Skene (1979) EM over per-teacher confusion matrices on the hard labels.

    Uses crowd-kit's maintained implementation; it sees only the teachers' argmax labels,
    never gold. Estimated accuracy_k = Σ_c π_c · P(obs = c | true = c).
    """
    from crowdkit.aggregation import DawidSkene  # heavy import: only when used

    k, n, c = p.shape
    hard = p.argmax(-1)  # (K, N)
    df = pd.DataFrame({"task": np.tile(np.arange(n), k), "worker": np.repeat(np.arange(k), n),
                       "label": hard.reshape(-1)})
    ds = DawidSkene(n_iter=n_iter).fit(df)
    post = np.zeros((n, c))
    probas = ds.probas_
    for col in probas.columns:  # crowd-kit only knows labels that some teacher used
        post[probas.index.to_numpy(), int(col)] = probas[col].to_numpy()
    post /= post.sum(-1, keepdims=True)
    conf = np.zeros((k, c, c))
    for (worker, obs), row in ds.errors_.iterrows():
        for true, v in row.items():
            conf[int(worker), int(true), int(obs)] = v
    # a class nobody predicted has no column: treat its row as uniform
    for kk in range(k):
        for t in range(c):
            if conf[kk, t].sum() == 0:
                conf[kk, t] = 1.0 / c
    prior = post.mean(0)
    acc = np.einsum("c,kcc->k", prior, conf)
    return DawidSkeneResult(post, acc, conf)


def teacher_weights(spec: str | Sequence[float], p: np.ndarray) -> np.ndarray:
    """λ_k: "uniform", "ds" (∝ Dawid–Skene accuracy above chance, no gold), or explicit numbers.

    Explicit weights must be K non-negative numbers with a positive sum; they are normalised.
    """
    k, _, c = p.shape
    if isinstance(spec, str):
        if spec == "uniform":
            return np.full(k, 1.0 / k)
        if spec == "ds":
            if k == 1:
                return np.ones(1)
            acc = dawid_skene(p).accuracy
            w = np.clip(acc - 1.0 / c, 1e-3, None)  # a teacher at chance gets (almost) no say
            return w / w.sum()
        raise W2SError(f"unknown teacher weighting '{spec}'",
                       "use uniform, ds or a list of numbers")
    w = np.asarray(list(spec), dtype=np.float64)
    if w.shape != (k,):
        raise W2SError(f"{len(w)} teacher weights given for {k} teachers",
                       f"give exactly {k} numbers, one per teacher, in config order")
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise W2SError(f"teacher weights {w.tolist()} must be finite, non-negative, sum > 0",
                       "fix the weights")
    return w / w.sum()
