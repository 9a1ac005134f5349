"""Ensemble methods: name → how teacher labels become training targets → which loss.

Every method turns the K teachers' soft labels p (K, N, C) and weights λ (K,) into per-"teacher"
targets (K', N, C) with weights (K',) and names a loss family; the trainers (batched linear probe
or full fine-tune) then apply the family's loss with the optional auxiliary confidence term.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from w2s_core.methods import aggregate, losses
from w2s_core.registry import Registry

Family = Literal["ce", "edl-onehot", "edl-softy"]
Targets = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class MethodOptions:
    """Options shared by all methods; saved in every run's config."""

    evidence: losses.Evidence = "exp"  # EDL evidence function g(z)
    kl_scale: float = 1.0  # EDL KL weight after annealing (λ_t = min(1, τ) · kl_scale)
    aux_max: float = 0.5  # a_max of the auxiliary confidence loss
    aux_warmup: float = 0.2  # fraction of training over which a_t rises linearly
    aux_schedule: losses.AuxSchedule = "linear"
    weights: str | tuple[float, ...] = "uniform"  # teacher weights λ_k: uniform | ds | numbers


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str
    paper: str
    family: Family
    targets: Targets
    min_k: int = 1
    max_k: int | None = None

    def applies_to(self, k: int) -> bool:
        return k >= self.min_k and (self.max_k is None or k <= self.max_k)


def _onehot(labels: np.ndarray, c: int) -> np.ndarray:
    return np.eye(c, dtype=np.float64)[labels]


def _per_teacher(p: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return p, lam


def _joint(p: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    consensus = aggregate.soft_vote(p, lam).argmax(-1)
    return _onehot(consensus, p.shape[-1])[None], np.ones(1)


def _vote(p: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _onehot(aggregate.majority_vote(p), p.shape[-1])[None], np.ones(1)


def _dawid_skene(p: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return aggregate.dawid_skene(p).posterior[None], np.ones(1)


METHODS: Registry[MethodSpec] = Registry("method")
for _spec in [
    MethodSpec("single", "one teacher's soft labels, soft cross-entropy (W2S baseline)",
               "Burns et al. 2023", "ce", _per_teacher, min_k=1, max_k=1),
    MethodSpec("naive", "Naive Multi-Weak: Σ_k λ_k CE(student, teacher k)",
               "Cui et al. 2025 (BWS)", "ce", _per_teacher, min_k=2),
    MethodSpec("joint", "Joint decoding: one consensus label argmax Σ_k λ_k p^(k)",
               "Cui et al. 2025 (BWS)", "ce", _joint),
    MethodSpec("vote", "majority vote of hard labels, ties broken by mean probability",
               "label-model baseline", "ce", _vote, min_k=2),
    MethodSpec("dawid-skene", "Dawid–Skene EM posterior (crowd-kit), no gold",
               "Dawid & Skene 1979", "ce", _dawid_skene, min_k=2),
    MethodSpec("bayes",
               "Bayesian Multi-Weak EDL, each teacher a categorical draw (Σ_c p_c L(onehot c))",
               "Cui et al. 2025 (BWS); Sensoy et al. 2018", "edl-onehot", _per_teacher),
    MethodSpec("bayes-softy", "Bayesian Multi-Weak EDL with the soft label as target y",
               "Cui et al. 2025 (BWS); Sensoy et al. 2018", "edl-softy", _per_teacher),
]:
    METHODS.register(_spec.name, _spec)


def family_loss(family: Family, z: torch.Tensor, p: torch.Tensor, lam: torch.Tensor, tau: float,
                opts: MethodOptions) -> torch.Tensor:
    """Per-example loss of a family. z (..., N, C); p (..., K, N, C); lam (..., K) → (..., N)."""
    if family == "ce":
        return losses.naive_multi_weak(z, p, lam)
    mode = "expected-onehot" if family == "edl-onehot" else "soft-y"
    return losses.bayesian_multi_weak(z, p, lam, tau, mode=mode, evidence_fn=opts.evidence,
                                      kl_scale=opts.kl_scale)


def weak_class_balance(t: torch.Tensor, lam: torch.Tensor) -> torch.Tensor | None:
    """Weak labels' share of class 1, Σ_k λ_k mean_n p^(k)_n1, for the binary aux threshold.

    t: (..., K, N, C); lam: (..., K) → (...); None unless C = 2 (multi-class hardens by argmax).
    """
    return (lam * t[..., 1].mean(-1)).sum(-1) if t.shape[-1] == 2 else None


def student_loss(family: Family, z: torch.Tensor, t: torch.Tensor, lam: torch.Tensor, tau: float,
                 opts: MethodOptions, a_max: float | torch.Tensor,
                 balance: torch.Tensor | None) -> torch.Tensor:
    """The loss every student trainer uses: the family's loss on targets mixed with the
    auxiliary confidence term, a_t = a_max · warm-up(τ) (a_max = 0: no aux; may be (...,) for
    students trained side by side). Shapes as in ``family_loss``; → (..., N)."""
    a = torch.as_tensor(a_max, dtype=z.dtype, device=z.device)
    if bool((a > 0).any()):
        # aux_weight is proportional to a_max, so one call scales every student's a_t
        a_t = a * losses.aux_weight(tau, 1.0, opts.aux_warmup, opts.aux_schedule)
        t = losses.with_aux(t, z, a_t, balance)
    return family_loss(family, z, t, lam, tau, opts)


def predictive(family: Family, z: torch.Tensor, opts: MethodOptions
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Predicted probabilities (softmax, or the Dirichlet mean α/S for EDL) and α (EDL only)."""
    if family == "ce":
        return torch.softmax(z, -1), None
    alpha = losses.evidence(z, opts.evidence) + 1.0
    return alpha / alpha.sum(-1, keepdim=True), alpha
