"""Where a pretrained student's logits sit against token EDL's constants (docs/METHOD_NOTES.md).

Teacher-forces the student (default: the packaged SmolLM2-135M) on N ATIS prompts with their
gold JSON targets and prints, over the target positions: logsumexp of the logits (log of the
total exp evidence Σe) against log V (the V pseudo-counts), the target's logit and how many
tokens per position exceed 20 (the evidence clamp ``losses.evidence`` applies), the vacuity
V/S, the EDL NLL against the soft cross-entropy, and the token KL to Dir(1) in float64 and in
fp32 at a few positions against ``gen_losses.KL_MAX``. Offline; 2–4 min on 2 CPU cores.

    python scripts/token_edl_scale.py [--model smollm2-135m] [--n 32]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from w2s_core.data.prompts import build_prompt, encode
from w2s_core.data.registry import load_slot_dataset
from w2s_core.data.schema import DataConfig
from w2s_core.methods import gen_losses, losses
from w2s_core.metrics.slu import format_slots
from w2s_core.models.causal import load_causal


def _q(x: torch.Tensor) -> str:
    lo, mid, hi = np.quantile(x.double().numpy(), [0.1, 0.5, 0.9])
    return f"{lo:.4g} / {mid:.4g} / {hi:.4g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=32, help="utterances (a seeded sample of ATIS)")
    args = ap.parse_args()
    ds = load_slot_dataset(DataConfig("atis-slots"))
    pick = np.random.default_rng(0).choice(len(ds.texts), args.n, replace=False)
    lm = load_causal(args.model)
    enc = encode(lm.tokenizer, [build_prompt(ds.texts[i]) for i in pick],
                 [format_slots(ds.slots[i]) for i in pick])
    rows = []
    with torch.no_grad():
        for p, t in zip(enc.prompt_ids, enc.target_ids, strict=True):
            z = lm.model(torch.tensor([p + t])).logits[0, len(p) - 1: len(p) + len(t) - 1]
            rows.append((z.float(), torch.tensor(t)))
    z = torch.cat([r[0] for r in rows])  # (positions, V)
    tgt = torch.cat([r[1] for r in rows])
    v = z.shape[-1]
    lse = z.logsumexp(-1)
    zt = z.gather(-1, tgt[:, None])[:, 0]
    y = torch.nn.functional.one_hot(tgt, v).float()
    mask = torch.ones(1, len(tgt))
    nll = gen_losses.token_edl_loss(z[None], y[None], mask, tau=1.0, kl_scale=0.0)
    ce = torch.nn.functional.cross_entropy(z, tgt)
    log_s = losses.log_alpha(z.double()).logsumexp(-1)
    print(f"{args.model}: {len(tgt)} target positions of {args.n} utterances, V = {v} "
          f"(log V = {math.log(v):.2f}); quantiles 10 / 50 / 90 %")
    print(f"  logsumexp(z) = log Σe: {_q(lse)}")
    print(f"  target logit: {_q(zt)}; share above 20: {float((zt > 20).float().mean()):.3f}")
    print(f"  tokens with z > 20 per position: {_q((z > 20).sum(-1).float())}")
    print(f"  vacuity V/S: {_q((math.log(v) - log_s).exp())}")
    print(f"  EDL NLL {float(nll):.6f} vs cross-entropy {float(ce):.6f} (mean per position)")
    few = z[:6]
    for dt in (torch.float64, torch.float32):
        kl = losses.edl_kl_each_onehot(losses.evidence(few.to(dt)) + 1.0)
        kl = kl.gather(-1, tgt[:6, None])[:, 0]
        print(f"  token KL to Dir(1), first 6 positions, {str(dt)[6:]}: "
              + ", ".join(f"{x:.3g}" for x in kl.tolist()) + f" (KL_MAX = {gen_losses.KL_MAX:g})")


if __name__ == "__main__":
    main()
