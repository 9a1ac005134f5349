"""Generation losses of the Bayesian WeakS-to-Strong paper (METHOD.md §3), as pure torch functions.

Shapes: any leading batch dims ``...``, ``B`` sequences, ``T`` target positions, ``V`` the
student's vocabulary. Token losses return one value per sequence (averaged over its unmasked
positions); the caller combines sequences with the teacher weights λ_k and averages the batch.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from w2s_core.errors import W2SError
from w2s_core.methods import losses

KLTarget = Literal["expected-onehot", "soft-y"]
# The token KL's clamp, nats per position: at the default kl_scale 1e-4 the regulariser adds at
# most 1 nat, the NLL's order, so it can shape a small model's Dirichlet without swamping the
# NLL. At a pretrained LM's logits the KL is ~5·10^5, so the clamp holds and the KL term has no
# gradient: there token EDL trains on its NLL alone (the authors' code clamped the KL too).
KL_MAX = 1e4


def restrict(z: torch.Tensor, target: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and y over the target's top-k tokens plus one "other" bucket: (..., T, k+1) each.

    z_other = logsumexp(z_rest), so with exp evidence g(z_other) = Σ_rest exp(z_j) is exactly
    the summed evidence of the remaining tokens — the Dirichlet aggregation property (merging
    categories adds their evidence) but with ONE +1 pseudo-count instead of V − k, which is the
    point: 50k pseudo-counts would swamp the signal. For softplus/relu the same logsumexp is a
    smooth max of the remaining logits (the bucket is as confident as its most confident
    member). y_other = 1 − Σ_top y, the target's remaining mass.
    """
    v = z.shape[-1]
    if not 1 <= k < v:
        raise W2SError(f"restricted support k={k} must be between 1 and V−1={v - 1}",
                       "use a small k such as 16, or support=None for the full vocabulary")
    top = target.topk(k, dim=-1).indices  # (..., T, k)
    z_top = z.gather(-1, top)
    rest = torch.ones_like(z, dtype=torch.bool).scatter_(-1, top, False)
    z_other = z.masked_fill(~rest, float("-inf")).logsumexp(-1, keepdim=True)  # (..., T, 1)
    y_top = target.gather(-1, top)
    y_other = (1.0 - y_top.sum(-1, keepdim=True)).clamp_min(0.0)
    return torch.cat([z_top, z_other], -1), torch.cat([y_top, y_other], -1)


def token_edl_loss(z: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, tau: float, *,
                   evidence: losses.Evidence = "exp", kl_scale: float = 1e-4,
                   support: int | None = None,
                   kl_target: KLTarget = "expected-onehot") -> torch.Tensor:
    """Bayesian EDL over the token Dirichlet, one value per sequence.

    L = (1/|mask|) Σ_t mask_t [L_nll(α_t, y_t) + λ_τ KL_t], α_t = g(z_t) + 1,
    L_nll(α, y) = Σ_v y_v (log S − log α_v), λ_τ = min(1, τ)·kl_scale. KL_t, as in
    classification: "expected-onehot" = Σ_v y_v KL(Dir(α̃^(v)) ‖ Dir(1)) with the label's evidence
    removed; "soft-y" = KL(Dir(y + (1 − y)α) ‖ Dir(1)). The default kl_scale is small because the
    KL over a whole vocabulary is orders larger than over a few classes.
    support=k: the restricted-support Dirichlet over the target's top-k tokens + "other" (see
    ``restrict``). A sequence with no unmasked position scores 0. The NLL is exact at any logit
    (log space); the KL reads evidence clamped at e^20 (``losses.evidence``), is computed in
    float64 and is clamped at ``KL_MAX`` per position.
    z: (..., T, V) logits; target: (..., T, V) soft targets; mask: (..., T) → (...).
    """
    if z.shape != target.shape or z.shape[:-1] != mask.shape:
        raise W2SError(f"shapes differ: logits {tuple(z.shape)}, target {tuple(target.shape)}, "
                       f"mask {tuple(mask.shape)}", "pass (..., T, V) logits and targets with a "
                       "(..., T) mask")
    zc, y = (z, target) if support is None else restrict(z, target, support)
    # the NLL in log space (exact at an LM's logits of 20-40); the KL on clamped evidence
    per_tok = losses.edl_nll_log(losses.log_alpha(zc, evidence), y)  # (..., T)
    w = losses.kl_anneal(tau, kl_scale)
    if w != 0.0:
        per_tok = per_tok + w * _token_kl(zc, y, mask, evidence, kl_target).to(per_tok.dtype)
    m = mask.to(per_tok.dtype)
    return (per_tok * m).sum(-1) / m.sum(-1).clamp_min(1.0)


def _token_kl(zc: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, evidence: losses.Evidence,
              kl_target: KLTarget) -> torch.Tensor:
    """min(KL_t, KL_MAX) per position (0 where masked), KL_t on clamped evidence: (..., T).

    Exact in float64: at an LM's logits thousands of tokens hold α ≈ e^20 and fp32's lnΓ terms
    cancel to noise of ±10^7 nats around a true KL of ~5·10^5 (scripts/token_edl_scale.py).
    Positions whose ``kl_uniform_lower_bound`` already exceeds KL_MAX (1 % margin for rounding)
    take KL_MAX, a constant, without the float64 pass: at an LM's logits that is every position,
    and the float64 KL over the vocabulary costs ~10x the NLL.
    """
    if kl_target not in ("expected-onehot", "soft-y"):
        raise W2SError(f"unknown KL target {kl_target!r}", "use 'expected-onehot' or 'soft-y'")
    ysum = y.sum(-1).double()
    exact = mask.bool() & ~((_kl_bound(zc, evidence) * ysum.clamp(max=1.0) >= 1.01 * KL_MAX)
                            & (ysum <= 1.0 + 1e-6))
    reg = torch.where(mask.bool(), KL_MAX, 0.0).double()
    if bool(exact.any()):
        # (P, C): only the positions to compute, clamped evidence
        a, yd = losses.evidence(zc[exact].double(), evidence) + 1.0, y[exact].double()
        kl = ((yd * losses.edl_kl_each_onehot(a)).sum(-1) if kl_target == "expected-onehot"
              else losses.edl_kl(a, yd))
        reg = reg.masked_scatter(exact, kl.clamp(max=KL_MAX))
    return reg


def _kl_bound(zc: torch.Tensor, evidence: losses.Evidence) -> torch.Tensor:
    """``losses.kl_uniform_lower_bound`` of the clamped evidence the token KL reads, without
    gradient: a lower bound on each position's KL for any target y ≥ 0 with Σy = 1, so where it
    reaches 1.01·KL_MAX the clamped KL is the constant KL_MAX (1 % margin for rounding).
    zc: (..., C) logits → (...) float64."""
    with torch.no_grad():
        return losses.kl_uniform_lower_bound(torch.log1p(losses.evidence(zc, evidence)))


def kl_at_clamp(zc: torch.Tensor, evidence: losses.Evidence) -> torch.Tensor:
    """Where the token KL of every target y with Σy = 1 is provably clamped at KL_MAX (so it
    adds KL_MAX·λ_τ and no gradient): zc (..., C) → (...) bool."""
    return _kl_bound(zc, evidence) >= 1.01 * KL_MAX


def dpo_loss(pi_w: torch.Tensor, pi_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor,
             beta: float, eps: float | torch.Tensor = 0.0) -> torch.Tensor:
    """(Conservative) DPO: h = β[(π_w − r_w) − (π_l − r_l)], L = −(1−ε) log σ(h) − ε log σ(−h).

    ε = 0 is DPO (Rafailov et al. 2023); ε > 0 is cDPO, which treats each preference as flipped
    with probability ε so an over-confident pair cannot drive h to infinity (the loss has its
    minimum at σ(h) = 1 − ε). ε may be a (B,) tensor: a per-pair ε from the ensemble's confidence.
    logsigmoid keeps both terms finite for large |h|.
    pi_*, ref_*: (B,) sequence log-probs of chosen (w) / rejected (l) under policy and reference
    → (B,).
    """
    if not beta > 0:
        raise W2SError(f"DPO β must be > 0, got {beta}", "use the paper's β = 5 or another β > 0")
    e = torch.as_tensor(eps, dtype=pi_w.dtype, device=pi_w.device)
    if bool(((e < 0) | (e > 1)).any()):
        raise W2SError("DPO label-smoothing ε must lie in [0, 1]",
                       "use 0 for DPO, the paper's 0.1 for cDPO, or a per-pair ε in [0, 1]")
    h = beta * ((pi_w - ref_w) - (pi_l - ref_l))
    return -(1 - e) * F.logsigmoid(h) - e * F.logsigmoid(-h)


def sequence_logprob(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                     pick: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_t mask_t log softmax(logits_t)[labels_t]: a sequence's log-prob, the DPO inputs.

    Convention: ALIGNED, logits[:, t] is the distribution that predicts labels[:, t]; no shift is
    done here. From a causal LM over input_ids pass ``logits[:, :-1]``, ``input_ids[:, 1:]`` and
    the mask of target (not prompt, not pad) tokens shifted the same way. Masked labels may hold
    any value (e.g. −100): they are never gathered.
    logits: (B, T, V); labels: (B, T) long; mask: (B, T) → (B,).
    ``pick`` (B, T): logits are (N, V), one row per distinct predicting state, and position
    (b, t) reads row pick[b, t] (``lm_batches.collate``): the log-softmax runs on N states.
    """
    if labels.shape != mask.shape:
        raise W2SError(f"shapes differ: labels {tuple(labels.shape)}, mask {tuple(mask.shape)}",
                       "pass (B, T) labels and mask of the same shape")
    keep = mask.bool()
    safe = torch.where(keep, labels.long(), torch.zeros_like(labels, dtype=torch.long))
    tok = token_logprob(logits, safe, pick)
    return (tok * keep.to(tok.dtype)).sum(-1)


def token_logprob(logits: torch.Tensor, labels: torch.Tensor,
                  pick: torch.Tensor | None = None) -> torch.Tensor:
    """log softmax(logits)[label] at every position, fp32: (B, T). labels: (B, T) valid ids.
    Aligned (B, T, V) logits, or with ``pick`` (B, T) state logits (N, V) as in
    ``sequence_logprob``: two rows that share a prefix then share its log-softmax."""
    ok = (logits.shape[:-1] == labels.shape if pick is None
          else logits.ndim == 2 and pick.shape == labels.shape)
    if not ok:
        got = "" if pick is None else f", pick {tuple(pick.shape)}"
        raise W2SError(f"shapes differ: logits {tuple(logits.shape)}, labels "
                       f"{tuple(labels.shape)}{got}", "pass aligned (B, T, V) logits with "
                       "(B, T) labels, or (N, V) state logits with (B, T) labels and pick")
    # half-precision log-softmax over a large vocabulary loses the small log-probs: upcast
    lp = F.log_softmax(logits.float() if logits.dtype in (torch.float16, torch.bfloat16)
                       else logits, -1)
    if pick is None:
        return lp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    # (B·T reads; their backward scatters into an (N, V) zero gradient, not a (B, T, V) one)
    return lp[pick, labels]
