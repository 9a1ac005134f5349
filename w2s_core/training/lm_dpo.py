"""(Conservative) DPO of a causal LM on chosen/rejected target pairs (METHOD.md §3).

The reference policy is the student itself before DPO: its sequence log-probs of every chosen
and rejected target are computed once, with no gradient, and cached, so no second model is held
in memory. Sequence log-probs cover the target tokens and EOS only (not the prompt), as in
``gen_losses.sequence_logprob``. The loop, precision and LoRA handling are ``lm_train.run_loop``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from w2s_core.errors import W2SError
from w2s_core.methods import gen_losses
from w2s_core.models.causal import CausalLM
from w2s_core.training.lm_train import (
    Forward,
    GenExample,
    LabelSeq,
    Rows,
    TargetLogits,
    collate,
    flatten,
    run_loop,
)


@dataclass(frozen=True)
class DPOConfig:
    """``batch_size`` pairs per micro-batch; β = 5 and lr = 5e-7 are the paper's settings."""

    beta: float = 5.0
    lr: float = 5e-7
    epochs: float = 3.0
    batch_size: int = 4
    max_length: int = 256
    precision: str = "auto"
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    grad_accum: int = 1
    weight_decay: float = 0.0
    warmup: float = 0.1
    grad_clip: float = 1.0


def train_dpo(lm: CausalLM, prompts: Sequence[str], chosen: Sequence[str],
              rejected: Sequence[str], eps: float | Sequence[float], cfg: DPOConfig, seed: int,
              *, progress: bool = False, device: str = "auto") -> dict[str, Any]:
    """DPO (ε = 0) or cDPO (ε > 0, a scalar or one ε per pair) on ``lm`` in place.

    L = mean over pairs of −(1−ε) log σ(h) − ε log σ(−h), h = β[(π_w − r_w) − (π_l − r_l)].
    Returns lm_train's run stats plus ``truncated`` and ``margin_start``/``margin_end``: the mean
    policy log-prob margin π_w − π_l over all pairs before and after training.
    """
    n = len(prompts)
    if not n or len(chosen) != n or len(rejected) != n:
        raise W2SError(f"DPO needs equally many prompts ({n}), chosen ({len(chosen)}) and "
                       f"rejected ({len(rejected)}) targets", "pass one chosen and one rejected "
                       "target per prompt, at least one pair")
    e = torch.as_tensor(eps, dtype=torch.float32)
    e = e.expand(n).clone() if e.ndim == 0 else e
    if e.shape != (n,):
        raise W2SError(f"{e.numel()} ε values for {n} pairs", "pass one ε or one per pair")
    if bool(((e < 0) | (e > 1)).any()):
        raise W2SError("DPO label-smoothing ε must lie in [0, 1]",
                       "use 0 for DPO, e.g. 0.1 for cDPO, or a per-pair ε in [0, 1]")
    pairs = [GenExample(p, [LabelSeq(c), LabelSeq(r)], [0.5, 0.5])
             for p, c, r in zip(prompts, chosen, rejected, strict=True)]
    rows = flatten(lm.tokenizer, pairs, cfg.max_length)  # rows (chosen, rejected) per pair
    pad = lm.tokenizer.pad_token_id
    ref = torch.zeros(n, 2)  # the initial policy's (chosen, rejected) log-probs

    def reference(fwd: Forward) -> None:
        for s in range(0, n, cfg.batch_size):
            items = list(range(s, min(n, s + cfg.batch_size)))
            ref[items] = pair_logps(fwd, rows, items, pad).float().cpu()

    def batch_loss(fwd: Forward, items: list[int], tau: float) -> torch.Tensor:
        pi = pair_logps(fwd, rows, items, pad)
        r = ref[items].to(pi.device)
        return gen_losses.dpo_loss(pi[:, 0], pi[:, 1], r[:, 0], r[:, 1], cfg.beta,
                                   e[items].to(pi.device)).mean()

    stats = run_loop(lm, cfg, seed, n, batch_loss, before=reference, progress=progress,
                     desc=f"DPO {lm.name}", device=device)
    stats["truncated"] = rows.truncated
    stats["margin_start"] = float((ref[:, 0] - ref[:, 1]).mean())
    stats["margin_end"] = _margin(lm, rows, n, cfg, stats["precision"] == "bf16")
    return stats


def pair_logps(fwd: Forward, rows: Rows, items: Sequence[int], pad: int) -> torch.Tensor:
    """(len(items), 2) target log-probs of (chosen, rejected), one forward over both."""
    idx = [rows.by_example[i][0] for i in items] + [rows.by_example[i][1] for i in items]
    b = collate(rows, idx, pad, fwd.device)
    lp = gen_losses.sequence_logprob(fwd(b), b["labels"], b["tmask"])  # (2B,)
    return lp.view(2, len(items)).T


def _margin(lm: CausalLM, rows: Rows, n: int, cfg: DPOConfig, bf16: bool) -> float:
    """Mean π_w − π_l of the trained model over all pairs (no grad, the run's precision)."""
    fwd = Forward(TargetLogits(lm.model), lm.device, bf16)
    with torch.no_grad():
        pi = torch.cat([pair_logps(fwd, rows, range(s, min(n, s + cfg.batch_size)),
                                   lm.tokenizer.pad_token_id)
                        for s in range(0, n, cfg.batch_size)])
    return float((pi[:, 0] - pi[:, 1]).mean())
