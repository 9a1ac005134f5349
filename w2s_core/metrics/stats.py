"""Basic statistics shared by the metrics: the rank statistic behind every AUROC (Mann–Whitney
U), and the plain percentile bootstrap of one sample's mean.

Intervals over a sweep's runs live in ``w2s_core.metrics.intervals``: runs are not independent
draws, so those average within a unit (data replicate > teacher subset > seed) first. The plain
bootstrap here treats its values as independent and is only right when they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

_MAX_BOOT_CELLS = 2_000_000  # resample in chunks of at most this many numbers (memory bound)


def binary_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC of ``scores`` as a detector of ``labels == 1`` (Mann–Whitney U with mid-ranks).

    AUROC = (R₊ − n₊(n₊+1)/2) / (n₊ n₋), where R₊ is the sum of the (tie-averaged) ranks of
    the positives among all scores. It equals P(score₊ > score₋) + ½ P(score₊ = score₋).
    NaN when either class is absent (AUROC undefined).
    """
    s = np.asarray(scores, dtype=float).ravel()  # (N,)
    pos = np.asarray(labels).ravel().astype(bool)  # (N,)
    if s.shape != pos.shape:
        raise ValueError(f"scores {s.shape} and labels {pos.shape} differ in shape")
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)  # (N,) 1-based, ties get the average rank
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _bootstrap_means(v: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``n_boot`` means of resamples (with replacement) of ``v`` (n,) → (n_boot,)."""
    rng = np.random.default_rng(seed)
    n = v.size
    chunk = max(1, _MAX_BOOT_CELLS // n)
    out = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))  # (b, n)
        out[start:stop] = v[idx].mean(axis=1)
    return out


def mean_std_ci(
    values: Sequence[float] | np.ndarray,
    *,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Mean, sample std (ddof=1) and a percentile-bootstrap CI of the mean.

    Non-finite values (NaN, e.g. an undefined PGR, or ±inf) are left out of every statistic
    and counted in ``n_undefined``; ``n`` counts the finite values used.
    CI = [q_{(1−ci)/2}, q_{(1+ci)/2}] of the means of ``n_boot`` resamples (with replacement),
    seeded by ``seed`` (deterministic). n = 1 → lo = hi = mean and std = NaN; n = 0 → all NaN.
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    arr = np.asarray(values, dtype=float).ravel()
    finite = np.isfinite(arr)
    v = arr[finite]  # (n,)
    n, n_undef = int(v.size), int((~finite).sum())
    nan = float("nan")
    if n == 0:
        return {"mean": nan, "std": nan, "lo": nan, "hi": nan, "n": 0, "n_undefined": n_undef}
    mean = float(v.mean())
    if n == 1:
        return {"mean": mean, "std": nan, "lo": mean, "hi": mean, "n": 1, "n_undefined": n_undef}
    boots = _bootstrap_means(v, n_boot, seed)  # (n_boot,)
    lo, hi = np.quantile(boots, [(1 - ci) / 2, (1 + ci) / 2])
    return {
        "mean": mean,
        "std": float(v.std(ddof=1)),
        "lo": float(lo),
        "hi": float(hi),
        "n": n,
        "n_undefined": n_undef,
    }
