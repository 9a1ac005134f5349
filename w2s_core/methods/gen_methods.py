"""Generation ensemble methods as pure functions over teacher outputs (METHOD.md §3).

Teachers' outputs arrive as per-utterance candidate lists with scores; these functions decide
the weights λ, the joint-decoded target, and the DPO pairs. No model is run here: scores under
teacher forcing are computed once by the experiment layer and passed in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from w2s_core.errors import W2SError


def teacher_weights(mode: str | Sequence[float], mean_word_logp: np.ndarray) -> np.ndarray:
    """λ (N, K) per utterance and teacher, rows summing to 1.

    mean: 1/K. fixed (a list): the given weights, normalised. dynamic: λ_k(x) =
    softmax_k(s_k(x)), s_k = teacher k's mean word log-prob of its own top-1 output on x (its
    self-confidence; the paper's "dynamic" weighting).
    mean_word_logp: (N, K) → (N, K).
    """
    n, k = mean_word_logp.shape
    if isinstance(mode, str):
        if mode == "mean":
            return np.full((n, k), 1.0 / k)
        if mode == "dynamic":
            s = mean_word_logp - mean_word_logp.max(1, keepdims=True)
            e = np.exp(s)
            return e / e.sum(1, keepdims=True)
        raise W2SError(f"unknown λ mode {mode!r}", "use mean, dynamic or one weight per teacher")
    w = np.asarray(mode, dtype=np.float64)
    if w.shape != (k,) or (w < 0).any() or w.sum() <= 0:
        raise W2SError(f"{len(w)} fixed weights for {k} teachers (or none positive)",
                       "give one weight ≥ 0 per teacher of the subset")
    return np.broadcast_to(w / w.sum(), (n, k)).copy()


def joint_pick(scores: np.ndarray, lam: np.ndarray) -> int:
    """Joint decoding: the pooled candidate c* = argmax_c Σ_k λ_k s_k(c), s_k(c) = Σ_t log
    P_k(c_t | x, c_<t) (teacher forcing, EOS included); the first on ties.
    scores: (K, C) log-likelihoods of C pooled candidates under each teacher; lam: (K,) → index.
    """
    if scores.ndim != 2 or scores.shape[1] == 0:
        raise W2SError("joint decoding needs a (K, C) score matrix with C ≥ 1 candidates",
                       "pool at least one candidate per utterance")
    if scores.shape[0] != len(lam):
        raise W2SError(f"{scores.shape[0]} teachers scored but {len(lam)} weights given",
                       "give one λ per teacher")
    total = np.asarray(lam, dtype=np.float64) @ scores  # (C,)
    return int(np.argmax(total))


JOINT_SCORES = ("sum", "per_char", "per_token")


def joint_matrix(mode: str, logp: np.ndarray, norm: np.ndarray,
                 texts: Sequence[str]) -> np.ndarray:
    """The (K, C) teacher scores joint decoding ranks pooled candidates by.

    sum: s_k(c) = log P_k(c | x), EOS included (METHOD.md §3; favours short candidates, down
    to "" whose whole score is one EOS log-prob). per_char: s_k(c) / (|c| + 1), |c| in
    characters (+1 for EOS) — a length normalisation that is the same for every teacher
    whatever its tokenizer, so the λ-weighted sum still compares like with like. per_token:
    each teacher's own s_k(c) / (its token count + 1), the teachers' beam-search key; a
    character-level teacher's per-token scores live on a different scale than a subword one's.
    logp, norm: (K, C); texts: C candidate strings → (K, C).
    """
    if mode == "sum":
        return np.asarray(logp, dtype=np.float64)
    if mode == "per_char":
        chars = np.array([len(t) + 1 for t in texts], dtype=np.float64)  # (C,)
        return np.asarray(logp, dtype=np.float64) / chars
    if mode == "per_token":
        return np.asarray(norm, dtype=np.float64)
    raise W2SError(f"unknown joint score {mode!r}", "use sum, per_char or per_token")


def pool(nbests: Sequence[Sequence[str]]) -> list[str]:
    """Pooled, deduplicated candidates of several teachers (first appearance kept)."""
    return list(dict.fromkeys(t for nb in nbests for t in nb))


def dpo_pair(ensemble: np.ndarray) -> tuple[int, int] | None:
    """chosen = the candidate the ensemble scores best, rejected = worst; None when all tie
    (no preference to learn). ensemble: (C,) λ-weighted length-normalised log-likelihoods —
    normalised because raw sums would always reject the longest beam."""
    if len(ensemble) < 2 or float(np.max(ensemble) - np.min(ensemble)) == 0.0:
        return None
    return int(np.argmax(ensemble)), int(np.argmin(ensemble))


def pair_eps(s_w: np.ndarray, s_l: np.ndarray, lam: np.ndarray) -> float:
    """Per-pair ε from the ensemble's confidence that chosen ≻ rejected (beyond the paper).

    Each teacher is one vote in a Beta–Bernoulli model of "the preference is right": with
    n_w = K·Σ_k λ_k [s_k(w) > s_k(l)] and n_l likewise (a tie gives half a vote to each),
    the posterior Beta(1 + n_w, 1 + n_l) has mean flip probability ε = (1 + n_l)/(2 + K).
    Unanimous teachers give ε = 1/(K+2) (cDPO-like smoothing that shrinks with K); a split
    ensemble gives ε → 1/2 (the pair teaches nothing). ε is capped at 1/2: the pair's order
    comes from the λ-weighted *scores* (``dpo_pair``), and when the votes dispute it (one
    confident teacher outweighing the others) the ensemble is unsure, not sure of the reverse
    — ε > 1/2 would train the policy toward the rejected beam.
    s_w, s_l: (K,) teacher scores of chosen and rejected; lam: (K,) → ε in (0, 1/2].
    """
    lam = np.asarray(lam, dtype=np.float64) / np.sum(lam)
    k = len(lam)
    vote_l = np.where(s_l > s_w, 1.0, np.where(s_l == s_w, 0.5, 0.0))
    n_l = k * float(lam @ vote_l)
    return min((1.0 + n_l) / (2.0 + k), 0.5)
