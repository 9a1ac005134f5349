"""What a student was trained toward, token by token — stored with each run for the report and
the dashboard (docs/STORAGE.md, "Generation").

For the same weighted label sequences the trainer takes (``GenExample``), one record per
(example, label with λ > 0), at each of the label's student tokens t:

- ``q``: the bridged target probability of the label token, q_t = exp(ω_t log P_k(word(t)))
  (1 for a hard label) — Π_{t∈word} q_t = P_k(word);
- the top-k of the full target distribution y_t = q_t·onehot + (1 − q_t)·p_rest, with the aux
  term at its end-of-training weight (τ = 1): what the loss pulls the student toward;
- ``conf`` / ``correct``: the student's max token probability and whether its argmax is the label
  token — on gold labels this is the token-level calibration read-out;
- for EDL losses the token Dirichlet α_t = g(z_t) + 1 (restricted support: the target's top-k +
  "other"): total evidence Σ_c (α_c − 1) and vacuity C / S, S = Σ_c α_c.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from w2s_core.methods import gen_losses, losses
from w2s_core.models.causal import CausalLM
from w2s_core.training.lm_loop import Forward, TargetLogits
from w2s_core.training.lm_train import (
    GenExample,
    LossSpec,
    collate,
    example_chunks,
    flatten,
    token_log_q,
    token_targets,
)


def token_readouts(lm: CausalLM, examples: Sequence[GenExample], loss: LossSpec, *,
                   max_length: int, batch_size: int = 8, top_k: int = 5,
                   fixed_q: Sequence[Sequence[float]] | None = None) -> list[dict[str, Any]]:
    """One dict per (example, kept label): example (index), label (index into its labels),
    weight, tokens (decoded pieces), token_ids, word_ids, q, topk_tokens, topk_probs (T × k),
    conf, correct, evidence, vacuity (empty lists unless ``loss.kind == "edl"``). The model is
    read as it is now (no training, no grad); put it in the state the caller means.
    ``fixed_q``: per record (in output order) the q to use instead of the bridge's — the
    ``frozen`` target mode, whose q came from the initial student."""
    rows = flatten(lm.tokenizer, examples, max_length)
    kept = [[j for j, w in enumerate(ex.weights) if w > 0] for ex in examples]
    where = {r: (e, kept[e][n]) for e, rs in enumerate(rows.by_example) for n, r in enumerate(rs)}
    device = next(lm.model.parameters()).device
    was_training = lm.model.training
    fwd = Forward(TargetLogits(lm.model).eval(), device, autocast=False)
    piece = _pieces(lm.tokenizer)
    out: list[dict[str, Any]] = []
    shared = fwd.shares  # K rows share their prompt, all rows the instruction
    groups = example_chunks(rows, range(len(examples)), 2 * batch_size, by_length=False) \
        if shared else [list(range(s, min(s + batch_size, len(rows.ids))))
                        for s in range(0, len(rows.ids), batch_size)]
    try:
        with torch.no_grad():
            for idx in groups:  # rows in order: records follow the rows
                b = collate(rows, idx, lm.tokenizer.pad_token_id, device, shared=shared)
                if fixed_q is not None:
                    b["log_q"] = torch.zeros_like(b["labels"], dtype=torch.float)
                    for r, i in enumerate(idx):
                        q = torch.tensor(fixed_q[i]).clamp_min(1e-30)
                        b["log_q"][r, :len(q)] = q.log()
                out += _batch(fwd(b), b, idx, rows, loss, top_k, piece, where)
    finally:
        lm.model.train(was_training)
    return out


def _batch(z: torch.Tensor, b: dict[str, torch.Tensor], idx: list[int], rows: Any,
           loss: LossSpec, top_k: int, piece: Any, where: dict[int, tuple[int, int]]
           ) -> list[dict[str, Any]]:
    logp = F.log_softmax(z, -1)  # (R, T, V)
    # hard labels carry word id −1 everywhere, so their log q is 0 (q = 1) in every kind
    log_q = b["log_q"] if "log_q" in b else token_log_q(logp, b, loss)
    y = token_targets(z, logp, b["labels"], log_q, loss, 1.0)  # (R, T, V)
    top = y.topk(min(top_k, y.shape[-1]), dim=-1)
    conf, pred = logp.max(-1)  # (R, T)
    ev = vac = None
    if loss.kind == "edl":
        zc = z if loss.support is None else gen_losses.restrict(z, y, loss.support)[0]
        # log S in float64 from the exact log α: S reaches e^40 at an LM's logits
        log_s = losses.log_alpha(zc.double(), loss.evidence).logsumexp(-1)  # type: ignore[arg-type]
        c = zc.shape[-1]
        ev, vac = log_s.exp() - c, (math.log(c) - log_s).exp()
    recs = []
    for r, i in enumerate(idx):
        n = len(rows.ids[i]) - rows.start[i]
        ids = rows.ids[i][rows.start[i]:]
        e, j = where[i]
        recs.append({
            "example": e, "label": j, "weight": float(rows.weight[i]),
            "tokens": [piece(t) for t in ids], "token_ids": ids,
            "word_ids": list(rows.word_ids[i]),
            "q": log_q[r, :n].exp().tolist(),
            "topk_tokens": [[piece(t) for t in row] for row in top.indices[r, :n].tolist()],
            "topk_probs": top.values[r, :n].tolist(),
            "conf": conf[r, :n].exp().tolist(),
            "correct": (pred[r, :n] == b["labels"][r, :n]).tolist(),
            "evidence": ev[r, :n].tolist() if ev is not None else [],
            "vacuity": vac[r, :n].tolist() if vac is not None else []})
    return recs


def _pieces(tokenizer: Any) -> Any:
    """id → its text as the tokenizer decodes it alone (byte-level 'Ġ' markers resolved)."""
    cache: dict[int, str] = {}

    def piece(t: int) -> str:
        if t not in cache:
            cache[t] = tokenizer.decode([t])
        return cache[t]
    return piece
