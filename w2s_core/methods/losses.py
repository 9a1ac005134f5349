"""Loss functions of the Bayesian WeakS-to-Strong paper, as pure torch functions.

Shapes: any leading batch dims ``...`` (e.g. many students trained at once), ``N`` examples,
``C`` classes, ``K`` teachers. Logits ``z`` are ``(..., N, C)``; per-teacher soft labels
``p`` are ``(..., K, N, C)``; teacher weights ``lam`` are ``(..., K)`` summing to 1.
Every function returns a per-example loss ``(..., N)`` unless it says otherwise, so the
caller decides how to average (per-student means in the batched trainer).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

Evidence = Literal["exp", "softplus", "relu"]


def soft_cross_entropy(z: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Single weak (W2S baseline): L = −Σ_c p_c log softmax(z)_c.

    z: (..., N, C) logits; p: (..., N, C) soft target → (..., N).
    """
    return -(p * F.log_softmax(z, dim=-1)).sum(-1)


def naive_multi_weak(z: torch.Tensor, p: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Naive Multi-Weak: L = Σ_k λ_k CE(softmax(z), p^(k)).

    Kept in the per-teacher form (generation needs it); for classification it equals the CE
    against the λ-averaged label because CE is linear in its target.
    z: (..., N, C); p: (..., K, N, C); lam: (..., K) → (..., N).
    """
    per_teacher = soft_cross_entropy(z.unsqueeze(-3), p)  # (..., K, N)
    return (lam.unsqueeze(-1) * per_teacher).sum(-2)


def evidence(z: torch.Tensor, kind: Evidence = "exp", clamp: float = 20.0) -> torch.Tensor:
    """Non-negative evidence e = g(z). exp is clamped at e^20 so α stays finite in fp32: this α
    feeds only the KL term (lnΓ(α) of α = e^40 keeps no precision in fp32); the NLL and the
    read-outs use the exact ``log_alpha``.

    relu has no gradient where z ≤ 0: the trainers start EDL heads random (not zero) and keep
    every class's logits centred, so no class is ever ≤ 0 on every example (``head_init``).
    """
    if kind == "exp":
        return torch.exp(z.clamp(max=clamp))
    if kind == "softplus":
        return F.softplus(z)
    if kind == "relu":
        return F.relu(z)
    raise ValueError(f"unknown evidence function {kind!r}")


def log_alpha(z: torch.Tensor, kind: Evidence = "exp") -> torch.Tensor:
    """log α = log(g(z) + 1), exact at any logit and without a clamp: for exp evidence
    log(e^z + 1) = softplus(z). The NLL and every read-out use this, not ``evidence`` + 1.

    Why: a pretrained LM's logits sit far above the e^20 clamp (SmolLM2-135M on ATIS targets,
    scripts/token_edl_scale.py: the target's logit is above 20 at 98.5 % of positions, and a
    median of ~2,100 tokens per position are).
    Clamped, all those tokens get the same evidence and no gradient, so the NLL cannot raise
    the target above its rivals; in log space the NLL stays exact and its gradient is CE's
    when Σe ≫ C. z: (..., C) → (..., C).
    """
    if kind == "exp":
        return F.softplus(z)
    if kind == "softplus":
        return torch.log1p(F.softplus(z))
    if kind == "relu":
        return torch.log1p(F.relu(z))
    raise ValueError(f"unknown evidence function {kind!r}")


def log_dirichlet_mean(z: torch.Tensor, kind: Evidence = "exp") -> torch.Tensor:
    """log(α/S) = log_softmax(log α): the log of EDL's predictive, exact where α overflows.
    EDL's NLL is the cross-entropy against it. z: (..., C) → (..., C)."""
    return torch.log_softmax(log_alpha(z, kind), -1)


def edl_nll_log(log_a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``edl_nll`` from log α: Σ_c y_c (logsumexp_j log α_j − log α_c), finite for any α.

    log_a: (..., N, C); y: (..., N, C) → (..., N).
    """
    return (y * (torch.logsumexp(log_a, -1, keepdim=True) - log_a)).sum(-1)


def edl_nll(alpha: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """EDL NLL (Sensoy et al. 2018, type-II ML): L = Σ_c y_c (log S − log α_c), S = Σ_c α_c.

    Equals CE(y, α/S): cross-entropy against the Dirichlet mean.
    alpha: (..., N, C) > 0; y: (..., N, C) → (..., N).
    """
    return edl_nll_log(torch.log(alpha), y)  # one formula: the log-space form


def kl_dirichlet_uniform(alpha: torch.Tensor) -> torch.Tensor:
    """KL(Dir(α) ‖ Dir(1)) = lnΓ(Σα) − Σ lnΓ(α_c) − lnΓ(C) + Σ (α_c − 1)(ψ(α_c) − ψ(Σα)).

    alpha: (..., N, C) → (..., N).
    """
    c = alpha.shape[-1]
    s = alpha.sum(-1)
    return (torch.lgamma(s) - torch.lgamma(alpha).sum(-1) - math.lgamma(c)
            + ((alpha - 1) * (torch.digamma(alpha) - torch.digamma(s).unsqueeze(-1))).sum(-1))


def kl_uniform_lower_bound(log_a: torch.Tensor) -> torch.Tensor:
    """A lower bound on KL(Dir(α̃) ‖ Dir(1)) for every α̃ with 1 ≤ α̃ ≤ α and
    Σα̃ ≥ S − max α + 1 — the KL terms of both EDL targets (α with one entry set to 1, or
    y + (1 − y)α) — from C reductions instead of C lnΓ/ψ evaluations:

    KL(Dir(α) ‖ Dir(1)) = (C − ½) ln S − ½ Σ ln α_c − lnΓ(C)
                          + r(S) − Σ r(α_c) + Σ g(α_c) − d(S)(S − C)
    with, for x ≥ 1, r(x) = lnΓ(x) − (x − ½) ln x + x ∈ [½ ln 2π, 1] (Stirling),
    d(x) = ψ(x) − ln x ∈ (−1/(2x) − 1/(12x²), 0), so g(x) = (x − 1) d(x) ∈ (−½, 0]; hence
    KL ≥ (C − ½) ln(S − max α + 1) − ½ Σ ln α_c − lnΓ(C) − 1.5·C + ½ ln 2π.
    At S itself it is within 0.582·C + 1 nats of the KL: enough to decide a clamp far above
    that (an LM's token KL is ~10x its vocabulary size).
    log_a: (..., C) log α ≥ 0 → (...), float64 (sums accumulated in float64; an fp32
    logsumexp errs by ~10⁻⁷ relative, ~0.005 nats once multiplied by a 49k vocabulary).
    """
    c = log_a.shape[-1]
    top = log_a.argmax(-1, keepdim=True)
    log_rest = log_a.scatter(-1, top, 0.0).logsumexp(-1).double()  # log(S − max α + 1)
    return ((c - 0.5) * log_rest - 0.5 * log_a.sum(-1, dtype=torch.float64) - math.lgamma(c)
            - 1.5 * c + 0.5 * math.log(2 * math.pi))


def edl_kl(alpha: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """KL regulariser with the target's evidence removed: α̃ = y + (1 − y) ⊙ α, KL(Dir(α̃)‖Dir(1))."""
    return kl_dirichlet_uniform(y + (1 - y) * alpha)


def edl_kl_each_onehot(alpha: torch.Tensor) -> torch.Tensor:
    """edl_kl(α, onehot(c)) for every class c at once, in O(C) instead of O(C²).

    With α̃ = α except α̃_c = 1: S̃_c = S − α_c + 1, and the c-th terms of the KL vanish, so
    KL_c = lnΓ(S̃_c) − (Σ_j lnΓ(α_j) − lnΓ(α_c)) − lnΓ(C)
           + (Σ_j (α_j − 1)ψ(α_j) − (α_c − 1)ψ(α_c)) − ψ(S̃_c)(S − C − (α_c − 1)).
    alpha: (..., N, C) → (..., N, C).
    """
    c = alpha.shape[-1]
    s = alpha.sum(-1, keepdim=True)
    s_c = s - alpha + 1
    lg = torch.lgamma(alpha)
    am1_psi = (alpha - 1) * torch.digamma(alpha)
    return (torch.lgamma(s_c) - (lg.sum(-1, keepdim=True) - lg) - math.lgamma(c)
            + (am1_psi.sum(-1, keepdim=True) - am1_psi)
            - torch.digamma(s_c) * (s - c - (alpha - 1)))


def kl_anneal(tau: float, scale: float = 1.0) -> float:
    """λ_t = min(1, τ) · scale, τ = step / total_steps."""
    return min(1.0, max(0.0, tau)) * scale


def bayesian_multi_weak(z: torch.Tensor, p: torch.Tensor, lam: torch.Tensor, tau: float, *,
                        mode: Literal["expected-onehot", "soft-y"] = "expected-onehot",
                        evidence_fn: Evidence = "exp", kl_scale: float = 1.0) -> torch.Tensor:
    """Bayesian Multi-Weak (EDL) loss.

    expected-onehot: L = Σ_k λ_k Σ_c p^(k)_c · L_EDL(α, onehot(c)) — each teacher reports a
    categorical draw weighted by its confidence. soft-y: L = Σ_k λ_k L_EDL(α, p^(k)).
    L_EDL(α, y) = L_nll(α, y) + λ_t KL(Dir(α̃) ‖ Dir(1)), α = g(z) + 1. The NLL parts of the
    two modes coincide (L_nll is linear in y); only the KL part differs.
    z: (..., N, C); p: (..., K, N, C); lam: (..., K) → (..., N).
    """
    nll = edl_nll_log(log_alpha(z, evidence_fn).unsqueeze(-3), p)  # (..., K, N)
    w = kl_anneal(tau, kl_scale)
    alpha = evidence(z, evidence_fn) + 1.0  # (..., N, C), clamped: for the KL only
    if w == 0.0:
        reg = torch.zeros_like(nll)
    elif mode == "soft-y":
        reg = edl_kl(alpha.unsqueeze(-3), p)
    elif mode == "expected-onehot":
        reg = (p * edl_kl_each_onehot(alpha).unsqueeze(-3)).sum(-1)  # (..., K, N)
    else:
        raise ValueError(f"unknown EDL target mode {mode!r}")
    return (lam.unsqueeze(-1) * (nll + w * reg)).sum(-2)


AuxSchedule = Literal["linear", "legacy"]


def aux_weight(tau: float, a_max: float, warmup: float = 0.2,
               schedule: AuxSchedule = "linear") -> float:
    """Auxiliary-confidence coefficient a_t.

    linear (default): rises linearly from 0 to a_max over the first ``warmup`` fraction, then
    stays at a_max. legacy: the original code's ramp, which used the raw step fraction and so
    climbs 0 → warmup·a_max and then jumps to a_max once τ ≥ warmup (kept only to reproduce it).
    """
    tau = min(1.0, max(0.0, tau))
    if warmup <= 0 or tau >= warmup:
        return a_max
    if schedule == "linear":
        return a_max * tau / warmup
    if schedule == "legacy":
        return a_max * tau
    raise ValueError(f"unknown aux schedule {schedule!r}")


def harden(log_p: torch.Tensor, class_balance: torch.Tensor | None = None) -> torch.Tensor:
    """The student's own hardened prediction h, detached, from its log predictive probabilities.

    ``log_p`` must order the classes and the examples as the method's predictive distribution
    does: log softmax(z) for cross-entropy, log(α/S) for EDL (``methods.registry.log_predictive``).
    Raw EDL logits do NOT: α_c = g(z_c) + 1, so P(1) = α1/(α0 + α1) is not a function of z1 − z0.
    Any per-example shift of ``log_p`` is harmless (CE logits work as they are).
    Multi-class: one-hot argmax. Binary with ``class_balance`` (...) = weak labels' share of
    class 1: threshold P(1) at the batch quantile that reproduces that share (Burns et al.).
    log_p: (..., N, C) → (..., N, C).
    """
    lp = log_p.detach()
    c = lp.shape[-1]
    if c == 2 and class_balance is not None:
        # rank by the log-odds log P(1) − log P(0): monotone in P(1), and unlike P(1) itself it
        # does not round to a tie among near-certain examples
        margin = lp[..., 1] - lp[..., 0]  # (..., N)
        q = (1.0 - class_balance).clamp(0.0, 1.0).to(margin.dtype)  # (...)
        # per-student quantile (torch.quantile takes one q for all rows): linear interpolation
        srt = margin.sort(-1).values  # (..., N)
        pos_f = q * (margin.shape[-1] - 1)  # (...)
        lo = pos_f.floor().long().unsqueeze(-1)
        hi = pos_f.ceil().long().unsqueeze(-1)
        frac = (pos_f - pos_f.floor()).unsqueeze(-1)
        thr = srt.gather(-1, lo) * (1 - frac) + srt.gather(-1, hi) * frac  # (..., 1)
        pos = (margin > thr).to(lp.dtype)
        return torch.stack([1 - pos, pos], dim=-1)
    return F.one_hot(lp.argmax(-1), c).to(lp.dtype)


def with_aux(p: torch.Tensor, log_q: torch.Tensor, a_t: float | torch.Tensor,
             class_balance: torch.Tensor | None = None) -> torch.Tensor:
    """target ← (1 − a_t)·target + a_t·h for every teacher's target, h = ``harden(log_q)``.

    p: (..., K, N, C); log_q: (..., N, C) the student's log predictive probabilities (see
    ``harden``); a_t scalar or (...) → (..., K, N, C).
    """
    h = harden(log_q, class_balance).unsqueeze(-3)  # (..., 1, N, C)
    a = torch.as_tensor(a_t, dtype=p.dtype, device=p.device)
    a = a.reshape(a.shape + (1, 1, 1))
    return (1 - a) * p + a * h
