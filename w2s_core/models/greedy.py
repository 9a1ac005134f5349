"""Greedy decoding that drops finished rows: a student's test-set answers, unscored.

Why not ``generate``: it keeps every row of a batch in the forward pass until the last row
stops, so on a CPU a batch costs (rows × the longest output). A student that has not learnt to
stop loops to the token cap and makes every other row in its batch pay for it. Dropping rows at
EOS makes each row cost its own length. ``benchmarks/bench_decode.py --greedy`` measures both.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from w2s_core.data.prompts import encode, ensure_pad
from w2s_core.device import autocast_bf16
from w2s_core.models.causal import CausalLM, cache_kwarg
from w2s_core.models.decode import _count, _eval, _pad, _room

__all__ = ["greedy"]


def _greedy_batch(model: Any, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int,
                  eos: int) -> list[list[int]]:
    """Greedy decoding of one left-padded batch that drops each row from the batch (and its KV
    cache) as soon as it emits EOS, so a row costs its own length, not the batch's longest
    (HF ``generate`` keeps computing finished rows until the last one stops).

    Positions follow ``generate``'s rule for left padding (cumulative mask − 1), so the tokens
    equal ``generate(do_sample=False)``'s up to float ties. Returns new tokens per row, EOS
    included when emitted. ids, mask: (B, L) → B lists.
    """
    from transformers import DynamicCache

    params = inspect.signature(model.forward).parameters
    cache_kw = cache_kwarg(model)
    # only the last position's logits: a (B, L, V) prefill over a 49k vocabulary is wasted
    last = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    dev = ids.device
    out: list[list[int]] = [[] for _ in range(ids.shape[0])]
    alive = torch.arange(ids.shape[0], device=dev)  # batch row → original row
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)  # the config: sliding-window layers (Gemma 3)
    step_ids, step_pos = ids, pos
    for _ in range(max_new_tokens):
        logits = model(input_ids=step_ids, attention_mask=mask, position_ids=step_pos,
                       use_cache=True, **last, **{cache_kw: cache}).logits
        nxt = logits[:, -1].argmax(-1)  # (B,)
        for r, t in zip(alive.tolist(), nxt.tolist(), strict=True):
            out[r].append(t)
        keep = (nxt != eos).nonzero().squeeze(-1)
        if keep.numel() == 0:
            break
        if keep.numel() < len(alive):  # finished rows leave the batch and the cache
            cache.batch_select_indices(keep)
            alive, nxt, mask = alive[keep], nxt[keep], mask[keep]
            step_pos = step_pos[keep]
        step_ids = nxt.unsqueeze(-1)
        step_pos = step_pos[:, -1:] + 1
        mask = torch.cat([mask, mask.new_ones((len(alive), 1))], 1)
    return out


def greedy(lm: CausalLM, prompts: Sequence[str], *, max_new_tokens: int = 64,
           batch_size: int = 16, max_length: int = 256, bf16: bool = False,
           stats: dict[str, int] | None = None) -> list[str]:
    """Each prompt's greedy output text (new tokens up to the first EOS, special tokens
    skipped), unscored: what a student's test decoding needs. Prompts are cut from the left
    to ``max_length − max_new_tokens − 1`` tokens as in ``nbest``; ``stats`` counts
    ``truncated_prompts``, ``outputs`` (one per prompt) and ``unfinished`` (outputs that hit
    ``max_new_tokens`` without EOS)."""
    tok, model = lm.tokenizer, lm.model
    ensure_pad(tok)
    room = _room(max_length, max_new_tokens)
    enc = encode(tok, prompts, None, room)
    _count(stats, "truncated_prompts", enc.truncated["prompt"])
    order = sorted(range(len(enc)), key=lambda i: -len(enc.prompt_ids[i]))
    texts = [""] * len(enc)
    unfinished, eos = 0, tok.eos_token_id
    with _eval(model), torch.no_grad(), autocast_bf16(lm.device, bf16):
        for b in range(0, len(order), max(1, batch_size)):
            idx = order[b: b + max(1, batch_size)]
            ids, mask = _pad([enc.prompt_ids[i] for i in idx], tok.pad_token_id, left=True)
            rows = _greedy_batch(model, ids.to(lm.device), mask.to(lm.device),
                                 max_new_tokens, eos)
            for i, seq in zip(idx, rows, strict=True):
                if eos in seq:
                    seq = seq[: seq.index(eos)]
                else:
                    unfinished += 1
                texts[i] = tok.decode(seq, skip_special_tokens=True)
    _count(stats, "outputs", len(texts))
    _count(stats, "unfinished", unfinished)
    return texts
