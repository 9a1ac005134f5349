"""Many linear-probe students trained as ONE batched tensor program.

A sweep trains ~1000 students (teacher subsets × methods × ±aux × seeds) on the same frozen
features. Students sharing a seed (same minibatch order) and a loss family are stacked side by
side in one weight matrix W (D, B·C): one GEMM X_batch (m, D) @ W computes every student's logits,
and Adam — being elementwise — updates each student exactly as if it were trained alone (tested).
The head is linear, without bias. CE heads start at zero (Burns et al.); EDL heads start small,
random and seeded (``methods.registry.head_init``): relu evidence has no gradient at zero.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from w2s_core.methods.registry import (
    Family,
    MethodOptions,
    head_init,
    predictive,
    student_loss,
    weak_class_balance,
)

# Std of an EDL head's initial logits on the standardised features: small enough that every
# student starts (nearly) uniform, as a zero head would, yet nonzero on every example.
HEAD_LOGIT_STD = 1e-2
# SeedSequence key that separates the head's random stream from the minibatch order's
_HEAD_STREAM = 1


@dataclass(frozen=True)
class ProbeConfig:
    """Linear-probe training. Fixed epochs: no validation labels are used (none are gold)."""

    epochs: int = 20
    batch_size: int = 256
    lr: float = 5e-3
    weight_decay: float = 0.0  # AdamW's decoupled decay (barely regularises at these lr × steps)
    # coupled L2 penalty (l2/2)·‖w‖² per student, as in logistic regression; 0.01 on 5k
    # examples ≈ sklearn's C = 0.02, which matched the feasibility probe's floors and PGRs
    l2: float = 1e-2
    max_chunk_bytes: int = 384 * 2**20  # caps the stacked targets of one chunk (memory)


@dataclass
class StudentJob:
    """One student to train (linear probe or fine-tune): its targets (K', N, C), their weights
    (K',), its loss family, the aux confidence term's a_max (0 = off) and its seed."""

    family: Family
    targets: np.ndarray
    lam: np.ndarray
    aux_max: float
    seed: int


@dataclass
class ProbeResult:
    probs: np.ndarray  # (M, C) predicted probabilities on the eval features
    alpha: np.ndarray | None  # (M, C) Dirichlet parameters for EDL families


def standardize(train: np.ndarray, *others: np.ndarray) -> list[torch.Tensor]:
    """z-score with the training split's statistics (no labels involved, so no leak)."""
    mu = train.mean(0, keepdims=True)
    sd = train.std(0, keepdims=True) + 1e-6
    return [torch.from_numpy(((a - mu) / sd).astype(np.float32)) for a in (train, *others)]


def train_probes(x_train: np.ndarray, jobs: list[StudentJob], x_eval: np.ndarray,
                 cfg: ProbeConfig, opts: MethodOptions, *, n_threads: int | None = None,
                 on_done: Callable[[int], None] | None = None) -> list[ProbeResult]:
    """Train every job; returns results in job order. ``on_done(n)`` reports progress."""
    if n_threads:
        torch.set_num_threads(n_threads)
    xt, xe = standardize(x_train, x_eval)
    results: list[ProbeResult | None] = [None] * len(jobs)
    groups: dict[tuple[int, str], list[int]] = defaultdict(list)
    for i, job in enumerate(jobs):
        groups[(job.seed, job.family)].append(i)
    for (seed, family), idx in sorted(groups.items()):
        for chunk in _chunks(idx, jobs, cfg.max_chunk_bytes, family != "edl-softy"):
            out = _train_chunk(xt, xe, [jobs[i] for i in chunk], family, seed, cfg, opts)  # type: ignore[arg-type]
            for i, r in zip(chunk, out, strict=True):
                results[i] = r
            if on_done:
                on_done(len(chunk))
    return results  # type: ignore[return-value]


def _chunks(idx: list[int], jobs: list[StudentJob], budget: int, collapse: bool
            ) -> list[list[int]]:
    out: list[list[int]] = []
    cur: list[int] = []
    kmax = 0
    for i in idx:
        k, n, c = jobs[i].targets.shape
        k = 1 if collapse else k
        new_k = max(kmax, k)
        if cur and (len(cur) + 1) * new_k * n * c * 4 > budget:
            out.append(cur)
            cur, new_k = [], k
        cur.append(i)
        kmax = new_k
    if cur:
        out.append(cur)
    return out


def _train_chunk(xt: torch.Tensor, xe: torch.Tensor, jobs: list[StudentJob], family: Family,
                 seed: int, cfg: ProbeConfig, opts: MethodOptions) -> list[ProbeResult]:
    n, d = xt.shape
    c = jobs[0].targets.shape[-1]
    b = len(jobs)
    # The CE and expected-one-hot EDL losses (and the aux mixing) are linear in the target, so
    # Σ_k λ_k L(p^(k)) = L(Σ_k λ_k p^(k)) exactly: collapse the teachers to one target up front.
    # Soft-y EDL is not linear in y (its KL term), so it keeps every teacher.
    collapse = family != "edl-softy"
    kmax = 1 if collapse else max(j.targets.shape[0] for j in jobs)
    # pad every student to kmax "teachers"; padded teachers get weight 0
    t = torch.zeros(b, kmax, n, c)
    lam = torch.zeros(b, kmax)
    for i, j in enumerate(jobs):
        if collapse:
            t[i, 0] = torch.from_numpy(np.einsum("k,knc->nc", j.lam, j.targets).astype(np.float32))
            lam[i, 0] = 1.0
        else:
            t[i, : j.targets.shape[0]] = torch.from_numpy(j.targets.astype(np.float32))
            lam[i, : j.lam.shape[0]] = torch.from_numpy(j.lam.astype(np.float32))
    a_max = torch.tensor([j.aux_max for j in jobs], dtype=torch.float32)  # (B,)
    balance = weak_class_balance(t, lam)  # (B,) or None

    # stored as (D, B·C) so every step is one plain GEMM with no re-layout of the weights;
    # every student of the chunk shares (seed, family), so each starts as it would alone
    w = initial_head(family, d, c, seed).repeat(1, b).requires_grad_()
    opt = torch.optim.AdamW([w], lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = max(1, -(-n // cfg.batch_size))
    total = cfg.epochs * steps_per_epoch
    step = 0
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen)
        for s in range(steps_per_epoch):
            bi = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            tau = step / total
            z = _logits(xt[bi], w, c)  # (B, m, C)
            loss = student_loss(family, z, t[:, :, bi], lam, tau, opts, a_max, balance)
            loss = loss.mean(-1).sum()  # per-student mean, summed: students stay independent
            if cfg.l2:
                loss = loss + 0.5 * cfg.l2 * (w * w).sum()  # separable: each student's own ‖w‖²
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    with torch.no_grad():
        probs, alpha = predictive(family, _logits(xe, w, c), opts)
    return [ProbeResult(probs[i].double().numpy(),
                        None if alpha is None else alpha[i].double().numpy()) for i in range(b)]


def head_generator(seed: int) -> torch.Generator:
    """The generator of a job's random head: derived from the job's seed but independent of
    the minibatch order (which ``torch.Generator().manual_seed(seed)`` drives)."""
    state = np.random.SeedSequence((seed, _HEAD_STREAM)).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def initial_head(family: Family, d: int, c: int, seed: int) -> torch.Tensor:
    """One student's starting weights (D, C): zero for CE, N(0, σ²) for EDL.

    The features are z-scored, so a logit x·w has mean 0 over the training set and std ≈ σ√D;
    σ = HEAD_LOGIT_STD/√D puts it at HEAD_LOGIT_STD. Mean 0 means every class's logit is
    positive on some examples: relu evidence is never dead for a whole class at the start, and
    as a nonzero linear function of centred features it cannot become so later either.
    """
    if head_init(family) == "zeros":
        return torch.zeros(d, c)
    w = torch.randn(d, c, generator=head_generator(seed))
    return w * (HEAD_LOGIT_STD / math.sqrt(d))


def _logits(x: torch.Tensor, w: torch.Tensor, c: int) -> torch.Tensor:
    """x (m, D) @ w (D, B·C) → (B, m, C): one GEMM for every student at once."""
    return (x @ w).view(x.shape[0], -1, c).transpose(0, 1)
