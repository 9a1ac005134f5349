"""Paired bootstrap over test utterances for micro-F1 differences (SLU-F1, exact span F1).

Run-level intervals (``w2s_core.metrics.intervals``) resample data replicates, subsets or
seeds, so a one-seed study gets none. Two students scored on the SAME test utterances still
have one source of noise that can be stated: which utterances were drawn into the test set.
This module measures that, and only that.

Both scores are micro F1s over summed per-utterance confusion counts (``slu.py``):

    F1 = 2P R / (P + R) = 2 TP / (2 TP + FP + FN),   TP = Σ_i tp_i, FP = Σ_i fp_i, FN = Σ_i fn_i

(0 when 2 TP + FP + FN = 0, SLURP's 0/0 = 0). So one bootstrap resample draws n utterance
indices i*_1..i*_n with replacement and recomputes each run's F1 from Σ_j counts[i*_j] — never
from an average of per-utterance F1s, which is a different statistic. Paired: both runs use
the same index draw, so utterances that are hard for both cancel in the difference

    Δ*_b = F1_a(i*) − F1_b(i*),   interval = percentiles (1 − ci)/2, (1 + ci)/2 of Δ*_1..Δ*_B.

This is test-sample noise only: it says nothing about another seed, teacher subset or data
replicate, and callers must say so (``utterance_caption``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from w2s_core.errors import W2SError
from w2s_core.metrics.generation import per_utterance
from w2s_core.metrics.slu import Pairs, parse_slots, span_f1

# One block of resamples holds at most this many (resample, utterance) cells; the gathered
# counts are 3 floats per cell, so a block stays ~24 MB whatever n and B are.
MAX_CELLS = 1_000_000
COUNT_METRICS = ("slu_f1", "span_f1")


def utterance_caption(n_utterances: int, ci: float = 0.95, n_boot: int = 2000) -> str:
    """The label every printed utterance-bootstrap interval carries."""
    return (f"{100 * ci:g}% paired bootstrap over {n_utterances} test utterances, {n_boot} "
            "resamples; test-sample noise only, not seed-to-seed variation")


def utterance_counts(gold: Sequence[Pairs], texts: Sequence[str],
                     metric: str = "slu_f1") -> np.ndarray:
    """Per-utterance (tp, fp, fn) of generated ``texts`` against ``gold`` → (n, 3) float.

    ``slu_f1``: both SLURP passes (word + char distance) summed, exactly what the corpus score
    sums; ``span_f1``: exact (type, value) matches. Texts are parsed with ``parse_slots`` (an
    invalid text is an empty prediction), as ``generation_metrics`` does, so the column sums
    reproduce the run's stored score.
    """
    if metric not in COUNT_METRICS:
        raise W2SError(f"no per-utterance counts for metric {metric!r}",
                       f"pick one of {COUNT_METRICS}")
    if len(gold) != len(texts):
        raise W2SError(f"{len(gold)} gold utterances but {len(texts)} outputs",
                       "pass one output text per gold utterance")
    if metric == "slu_f1":  # the counts a run's predictions.parquet stores, made the same way
        return np.array([[u["tp"], u["fp"], u["fn"]] for u in per_utterance(gold, texts)],
                        dtype=float).reshape(len(texts), 3)
    out = np.zeros((len(texts), 3))  # (n, 3): tp, fp, fn
    for i, (g, t) in enumerate(zip(gold, texts, strict=True)):
        s = span_f1([g], [parse_slots(t)[0]])
        out[i] = s["tp"], s["fp"], s["fn"]
    return out


def micro_f1(counts: np.ndarray) -> np.ndarray:
    """F1 = 2 TP / (2 TP + FP + FN) from summed counts (..., 3) → (...); 0 where undefined.

    Equal to SLURP's 2PR/(P + R) whenever TP > 0 and 0 (as SLURP reports it) otherwise.
    """
    c = np.asarray(counts, dtype=float)
    tp, fp, fn = c[..., 0], c[..., 1], c[..., 2]
    den = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 2 * tp / np.where(den > 0, den, 1.0), 0.0)


def bootstrap_indices(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """The index draws ``resampled_f1`` makes for (n, n_boot, seed) → (n_boot, n) int64.

    Exposed so a caller (or a test) can reproduce or replace the draws; the internal path draws
    the same rows block by block from one generator, which yields the same stream.
    """
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def resampled_f1(counts: np.ndarray, n_boot: int = 2000, seed: int = 0,
                 indices: np.ndarray | None = None) -> np.ndarray:
    """Micro F1 of every system on every resample of utterances → (S, B).

    ``counts`` (S, n, 3): per-utterance (tp, fp, fn) of S systems on the same n utterances.
    Each resample b uses ONE index row for all S systems (the pairing). ``indices`` (B, n):
    given draws (then ``n_boot``/``seed`` are ignored); else ``bootstrap_indices(n, n_boot,
    seed)``, drawn in blocks of ≤ ``MAX_CELLS`` cells so memory stays bounded for large n.
    """
    c = np.asarray(counts, dtype=float)
    if c.ndim != 3 or c.shape[2] != 3 or c.shape[1] < 1:
        raise W2SError(f"counts have shape {c.shape}", "pass (systems, utterances ≥ 1, 3)")
    n = c.shape[1]
    if indices is not None:
        idx_all = np.asarray(indices)
        if idx_all.ndim != 2 or idx_all.shape[1] != n:
            raise W2SError(f"indices have shape {idx_all.shape}, counts cover {n} utterances",
                           "pass a (B, n) index matrix")
        n_boot = idx_all.shape[0]
    rng = np.random.default_rng(seed)
    block = max(1, MAX_CELLS // n)
    out = np.empty((c.shape[0], n_boot))  # (S, B)
    for start in range(0, n_boot, block):
        rows = min(block, n_boot - start)
        idx = (idx_all[start:start + rows] if indices is not None
               else rng.integers(0, n, size=(rows, n)))  # (rows, n)
        for s in range(c.shape[0]):
            # gather then sum over the resample's utterances: (rows, n, 3) → (rows, 3); the
            # same elementwise sums for every system, so identical runs give identical F1s
            out[s, start:start + rows] = micro_f1(c[s][idx].sum(axis=1))
    return out


def paired_f1_difference(counts_a: np.ndarray, counts_b: np.ndarray, *, ci: float = 0.95,
                         n_boot: int = 2000, seed: int = 0,
                         indices: np.ndarray | None = None) -> dict[str, Any]:
    """F1_a − F1_b of two runs on the same utterances, with a paired percentile bootstrap.

    ``counts_a``, ``counts_b`` (n, 3): per-utterance (tp, fp, fn), row i of both being the same
    test utterance. Returns ``mean`` (the full-sample difference), ``lo``/``hi`` (percentile
    interval of the resampled differences; NaN when n < 2), ``se`` (their std), ``f1_a``,
    ``f1_b``, ``n_utterances``, ``n_boot`` and ``interval`` (the caption). Deterministic for a
    ``seed``.
    """
    if not 0 < ci < 1:
        raise W2SError(f"confidence level ci={ci} is outside (0, 1)", "pass e.g. ci=0.95")
    a, b = np.asarray(counts_a, dtype=float), np.asarray(counts_b, dtype=float)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 3:
        raise W2SError(f"count shapes {a.shape} and {b.shape} differ or are not (n, 3)",
                       "pass both runs' per-utterance counts on the same utterances")
    n = a.shape[0]
    f1_a, f1_b = float(micro_f1(a.sum(axis=0))), float(micro_f1(b.sum(axis=0)))
    out = {"mean": f1_a - f1_b, "lo": float("nan"), "hi": float("nan"), "se": float("nan"),
           "f1_a": f1_a, "f1_b": f1_b, "n_utterances": n, "n_boot": 0,
           "interval": f"no interval ({n} test utterance{'s' if n != 1 else ''})"}
    if n < 2:  # one utterance resamples to itself: no spread to report
        return out
    f = resampled_f1(np.stack([a, b]), n_boot, seed, indices)  # (2, B)
    diff = f[0] - f[1]  # (B,)
    lo, hi = np.quantile(diff, [(1 - ci) / 2, (1 + ci) / 2])
    se = float(diff.std(ddof=1)) if diff.size > 1 else float("nan")
    out.update(lo=float(lo), hi=float(hi), se=se, n_boot=int(diff.size),
               interval=utterance_caption(n, ci, int(diff.size)))
    return out
