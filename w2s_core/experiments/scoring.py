"""How a finished transfer run is scored on the test split: its metrics against gold, against
the weak labels it was trained toward, and PGR with three weak floors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from w2s_core.methods import aggregate
from w2s_core.methods.registry import METHODS
from w2s_core.metrics.classification import accuracy, pgr, pgr_defined, run_metrics


def weak_reference(method: str, p: np.ndarray, lam: Sequence[float]) -> np.ndarray:
    """The labels a student of ``method`` was trained toward, made the same way from the
    teachers' test predictions p (K, N, C) with weights λ (K,) → (N, C): the soft mean for
    single/naive/bayes, the majority vote for vote, the consensus for joint, the Dawid–Skene
    posterior for dawid-skene. CDR/CAR and weak agreement compare against it."""
    w = np.asarray(lam, dtype=np.float64)
    t, w2 = METHODS.get(method).targets(p, w / w.sum())  # (K', N, C), (K',)
    return aggregate.soft_vote(t, w2 / w2.sum())


def transfer_metrics(probs: np.ndarray, alpha: np.ndarray | None, y: np.ndarray,
                     p: np.ndarray, reference: np.ndarray, ceiling: float) -> dict[str, Any]:
    """run_metrics against gold y (N,) and the weak reference (N, C), plus the weak floors of
    the subset's teachers p (K, N, C) — mean, best, majority vote — and PGR on each:
    PGR = (acc − floor) / (ceiling − floor), undefined (NaN, flagged) when ceiling ≤ floor."""
    met = run_metrics(probs, y, weak_probs=reference, alpha=alpha)
    accs = [accuracy(p[k], y) for k in range(len(p))]
    floors = {"mean": float(np.mean(accs)), "best": float(np.max(accs)),
              "vote": float(np.mean(aggregate.majority_vote(p) == y))}
    met["ceiling"] = ceiling
    for name, f in floors.items():
        met[f"floor_{name}"] = f
        met[f"pgr_{name}"] = pgr(met["accuracy"], f, ceiling)
        met[f"pgr_{name}_defined"] = bool(pgr_defined(f, ceiling))
    return met
