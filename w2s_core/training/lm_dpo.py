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

from w2s_core.device import pick_device, rows_per_pass
from w2s_core.errors import W2SError
from w2s_core.methods import gen_losses
from w2s_core.models.causal import CausalLM
from w2s_core.training.finetune import _bf16_on
from w2s_core.training.lm_train import (
    _PRECISION,
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
              *, reference: torch.Tensor | None = None, progress: bool = False,
              device: str = "auto") -> dict[str, Any]:
    """DPO (ε = 0) or cDPO (ε > 0, a scalar or one ε per pair) on ``lm`` in place.

    L = mean over pairs of −(1−ε) log σ(h) − ε log σ(−h), h = β[(π_w − r_w) − (π_l − r_l)].
    ``reference``: the (n, 2) log-probs ``pair_table`` gave for the initial ``lm``, when several
    DPO runs (one per ε) start from the same weights and pairs: they are then computed once.
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
    rows = pair_rows(lm, prompts, chosen, rejected, cfg)
    pad = lm.tokenizer.pad_token_id
    if reference is not None and tuple(reference.shape) != (n, 2):
        raise W2SError(f"reference log-probs of shape {tuple(reference.shape)} for {n} pairs",
                       "pass pair_table(...) of the same pairs, shape (n, 2)")
    # the initial policy's (chosen, rejected) log-probs
    ref = torch.zeros(n, 2) if reference is None else reference.float().cpu()

    def initial(fwd: Forward) -> None:
        ref.copy_(_table(fwd, rows, n, cfg.batch_size, pad))

    def batch_loss(fwd: Forward, items: list[int], tau: float) -> torch.Tensor:
        pi = pair_logps(fwd, rows, items, pad)
        r = ref[items].to(pi.device)
        return gen_losses.dpo_loss(pi[:, 0], pi[:, 1], r[:, 0], r[:, 1], cfg.beta,
                                   e[items].to(pi.device)).mean()

    stats = run_loop(lm, cfg, seed, n, batch_loss,
                     before=initial if reference is None else None, progress=progress,
                     desc=f"DPO {lm.name}", device=device)
    stats["truncated"] = rows.truncated
    stats["margin_start"] = float((ref[:, 0] - ref[:, 1]).mean())
    end = _table(Forward(TargetLogits(lm.model), lm.device, stats["precision"] == "bf16"),
                 rows, n, cfg.batch_size, pad)
    stats["margin_end"] = float((end[:, 0] - end[:, 1]).mean())
    return stats


def pair_rows(lm: CausalLM, prompts: Sequence[str], chosen: Sequence[str],
              rejected: Sequence[str], cfg: DPOConfig) -> Rows:
    """Rows (chosen, rejected) per pair, tokenized once."""
    pairs = [GenExample(p, [LabelSeq(c), LabelSeq(r)], [0.5, 0.5])
             for p, c, r in zip(prompts, chosen, rejected, strict=True)]
    return flatten(lm.tokenizer, pairs, cfg.max_length)


def pair_table(lm: CausalLM, prompts: Sequence[str], chosen: Sequence[str],
               rejected: Sequence[str], cfg: DPOConfig, device: str = "auto") -> torch.Tensor:
    """(n, 2) target log-probs of (chosen, rejected) under ``lm`` as it is now, no grad, in the
    precision ``train_dpo`` would use: the reference that DPO runs from these weights share."""
    dev = pick_device(device)
    lm.model.to(dev)
    fwd = Forward(TargetLogits(lm.model), dev, _bf16_on(_PRECISION[cfg.precision], dev))
    return _table(fwd, pair_rows(lm, prompts, chosen, rejected, cfg), len(prompts),
                  cfg.batch_size, lm.tokenizer.pad_token_id)


def pair_logps(fwd: Forward, rows: Rows, items: Sequence[int], pad: int) -> torch.Tensor:
    """(len(items), 2) target log-probs of (chosen, rejected), one forward over both (their
    prompt once when the model can share it)."""
    idx = [rows.by_example[i][0] for i in items] + [rows.by_example[i][1] for i in items]
    b = collate(rows, idx, pad, fwd.device, shared=fwd.shares)
    lp = gen_losses.sequence_logprob(fwd.states(b), b["labels"], b["tmask"],
                                     b["pick"])  # (2B,)
    return lp.view(2, len(items)).T


def _table(fwd: Forward, rows: Rows, n: int, batch: int, pad: int) -> torch.Tensor:
    """(n, 2) log-probs of every pair under ``fwd``'s model, in eval mode with no grad, ``batch``
    pairs a pass on a CPU (more on a GPU: ``device.rows_per_pass``)."""
    batch = rows_per_pass(fwd.net, batch)
    net = fwd.net
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            return torch.cat([pair_logps(fwd, rows, range(s, min(n, s + batch)), pad).float()
                              .cpu() for s in range(0, n, batch)])
    finally:
        net.train(was)
