"""Ensemble methods: name → how teacher labels become training targets → which loss.

Every method turns the K teachers' soft labels p (K, N, C) and weights λ (K,) into per-"teacher"
targets (K', N, C) with weights (K',) and names a loss family; the trainers (batched linear probe
or full fine-tune) then apply the family's loss with the optional auxiliary confidence term.
Each method's name, description, paper, family and K range live in ``w2s_core.catalog`` (the
torch-free source the dashboard reads); this module attaches the target functions and losses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from w2s_core import catalog
from w2s_core.catalog import Family, MethodInfo
from w2s_core.methods import aggregate, losses
from w2s_core.registry import Registry, from_catalog

__all__ = ["Family", "MethodOptions", "MethodSpec", "METHODS", "family_loss", "head_init",
           "log_predictive", "predictive", "student_loss", "weak_class_balance"]

Targets = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
HeadInit = Literal["zeros", "random"]


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
class MethodSpec(MethodInfo):
    """The catalog's description of a method plus how it turns teacher labels into targets."""

    targets: Targets = field(kw_only=True)


def _per_teacher(p: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return p, lam


def _joint(p: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    consensus = aggregate.soft_vote(p, lam).argmax(-1)
    return aggregate.onehot(consensus, p.shape[-1])[None], np.ones(1)


def _vote(p: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return aggregate.onehot(aggregate.majority_vote(p), p.shape[-1])[None], np.ones(1)


def _dawid_skene(p: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return aggregate.dawid_skene(p).posterior[None], np.ones(1)


_TARGETS: dict[str, Targets] = {
    "single": _per_teacher,
    "naive": _per_teacher,
    "joint": _joint,
    "vote": _vote,
    "dawid-skene": _dawid_skene,
    "bayes": _per_teacher,
    "bayes-softy": _per_teacher,
}


METHODS: Registry[MethodSpec] = from_catalog("method", catalog.methods(), _TARGETS, "targets",
                                              MethodSpec)


def head_init(family: Family) -> HeadInit:
    """How a student's linear head starts: "zeros" for CE (Burns et al.: no initial opinion),
    "random" (small, seeded) for EDL.

    An EDL head at exactly zero is a saddle for relu evidence: relu'(0) = 0, so no gradient
    ever reaches it, α stays 1 and every prediction is class 0. A small random head has
    logits of both signs, so every evidence function gets a gradient from the first step.
    """
    return "zeros" if family == "ce" else "random"


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
        # harden what the student predicts (softmax or α/S), not its raw logits: for EDL the
        # logit margin z1 − z0 does not order examples by the Dirichlet mean
        with torch.no_grad():
            t = losses.with_aux(t, log_predictive(family, z, opts), a_t, balance)
    return family_loss(family, z, t, lam, tau, opts)


def predictive(family: Family, z: torch.Tensor, opts: MethodOptions
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Predicted probabilities (softmax, or the Dirichlet mean α/S for EDL) and α (EDL only)."""
    if family == "ce":
        return torch.softmax(z, -1), None
    log_a = losses.log_alpha(z, opts.evidence)
    # α/S = softmax(log α): exact where α itself would overflow; α read out in float64
    return torch.softmax(log_a, -1), log_a.double().exp()


def log_predictive(family: Family, z: torch.Tensor, opts: MethodOptions) -> torch.Tensor:
    """log of ``predictive``'s probabilities, computed without forming them: near-certain
    predictions keep their order (α/S rounds to 1.0 in fp32 long before log α − log S does)."""
    if family == "ce":
        return torch.log_softmax(z, -1)
    return losses.log_dirichlet_mean(z, opts.evidence)
