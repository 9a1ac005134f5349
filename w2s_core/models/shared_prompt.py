"""One pass over a prompt for all of its targets: the prompt's KV cache copied to each target row.

Used wherever several sequences continue the same prompt: a student's K label sequences in
training and read-outs (``training.lm_loop.TargetLogits``) and the N candidates of an utterance
when they are scored under teacher forcing (``models.decode.score``). For E distinct prompts and
R rows this computes E prompts instead of R. The trainers' batches extend each prompt by the
common prefix of its rows' targets (``common_prefix``, ``training.lm_batches.collate``), so
the tokens on which K teachers agree also run once. The prompts of a batch share their own
common prefix, the instruction before the quoted sentence (``shared_root``): it runs once for
the whole batch, then the rest of each prompt, then each row's target.
"""

from __future__ import annotations

import inspect
from collections.abc import Hashable, Sequence
from typing import Any

import torch
from torch import nn

from w2s_core.errors import W2SError
from w2s_core.models.causal import cache_kwarg

__all__ = ["RootKV", "common_prefix", "group", "head", "pad", "prompt_target_states", "root_cache",
           "shared_prompt_states", "shared_root", "shares_prompts", "target_logps"]


def shares_prompts(model: nn.Module) -> bool:
    """Whether the decoder takes a KV cache and position ids (the shared-prompt path)."""
    params = inspect.signature(model.get_decoder().forward).parameters
    return "position_ids" in params and cache_kwarg(model.get_decoder()) in params


def group(keys: Sequence[Hashable]) -> tuple[list[Hashable], torch.Tensor]:
    """The distinct keys in order of first use and, per row, the index of its key: (R,)."""
    distinct = {k: j for j, k in enumerate(dict.fromkeys(keys))}
    return list(distinct), torch.tensor([distinct[k] for k in keys], dtype=torch.long)


def common_prefix(targets: Sequence[Sequence[int]]) -> int:
    """How many leading tokens the targets of one prompt can move into that prompt's shared
    pass: their longest common prefix, leaving every target ≥ 1 token of its own (so each row
    still has a target pass; identical targets share all but their last token)."""
    n = min(len(t) for t in targets) - 1
    c = 0
    while c < n and all(t[c] == targets[0][c] for t in targets):
        c += 1
    return max(c, 0)


def shared_root(prompts: Sequence[Sequence[int]]) -> int:
    """How many leading tokens the distinct prompts of one batch can run once for all of them
    (``prompt_target_states``' ``root``): their common prefix, each keeping ≥ 1 token; 0 for a
    single prompt, which gains nothing from a pass of its own."""
    return common_prefix(prompts) if len(prompts) > 1 else 0


RootKV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values): (1, heads, root, d)


def root_cache(model: nn.Module, ids: torch.Tensor) -> RootKV:
    """Per layer, the keys and values of ``ids`` (1, root): the tokens every prompt of a batch
    begins with (``shared_root``), run once and handed to each of the batch's passes
    (``prompt_target_states(root_kv=...)``). Under autograd, gradients reach this pass through
    every use of its keys and values."""
    from transformers import DynamicCache

    dec = model.get_decoder()
    cache = DynamicCache(config=model.config)
    dec(input_ids=ids, use_cache=True, **{cache_kwarg(dec): cache})
    return [(layer.keys, layer.values) for layer in cache.layers]


def prompt_target_states(model: nn.Module, target_ids: torch.Tensor,
                         target_mask: torch.Tensor, prompt_ids: torch.Tensor,
                         prompt_mask: torch.Tensor, row_prompt: torch.Tensor, root: int = 0,
                         root_kv: RootKV | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder hidden states of each distinct prompt after its first ``root`` tokens,
    (E, Lp − root, H), and of each row's target after its prompt's KV cache, (R, Lt, H).

    prompt_ids/mask: (E, Lp) right-padded; target_ids/mask: (R, Lt) right-padded; row_prompt:
    (R,) the prompt of each row. Right-padded prompts leave a masked gap between a short prompt
    and its target (explicit position ids keep RoPE positions contiguous); left padding would
    give pad queries nothing to attend to, NaN under SDPA. ``root`` > 0: the first ``root``
    tokens, the same in every prompt (``shared_root``), run once and their cache is copied to
    the E prompts; ``root_kv`` (``root_cache`` of those tokens) when an earlier pass of the same
    batch ran them already. Under autograd, gradients reach the earlier passes through the
    cached keys and values.
    """
    from transformers import DynamicCache

    dec = model.get_decoder()
    kw = cache_kwarg(dec)
    cache = DynamicCache(config=model.config)
    e = prompt_ids.shape[0]
    if root > 0:
        for layer, (k, v) in enumerate(root_kv or root_cache(model, prompt_ids[:1, :root])):
            cache.update(k.expand(e, -1, -1, -1), v.expand(e, -1, -1, -1), layer)
    # both passes' tokens in one embedding lookup: a tied embedding's backward fills a dense
    # vocabulary × H gradient (113 MB for SmolLM2) per lookup, and the head adds another
    rest = prompt_ids[:, root:]
    x = model.get_input_embeddings()(torch.cat([rest.flatten(), target_ids.flatten()]))
    xp, xt = x.split([rest.numel(), target_ids.numel()])
    # the root's columns of prompt_mask are ones: every prompt is longer than the root
    steps = torch.arange(root, prompt_ids.shape[1], device=prompt_ids.device)
    hp = dec(inputs_embeds=xp.view(*rest.shape, -1), attention_mask=prompt_mask, use_cache=True,
             position_ids=steps.expand(e, -1), **{kw: cache}).last_hidden_state  # (E, Lp − root, H)
    n_p = prompt_mask.sum(-1)  # (E,)
    cache.batch_select_indices(row_prompt)  # (R, ...): indexing keeps the autograd graph
    steps = torch.arange(target_ids.shape[1], device=target_ids.device)
    ht = dec(inputs_embeds=xt.view(*target_ids.shape, -1), use_cache=True, **{kw: cache},
             attention_mask=torch.cat([prompt_mask[row_prompt], target_mask], 1),
             position_ids=n_p[row_prompt, None] + steps).last_hidden_state  # (R, Lt, H)
    return hp, ht


def shared_prompt_states(model: nn.Module, target_ids: torch.Tensor, target_mask: torch.Tensor,
                         prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                         row_prompt: torch.Tensor, root: int = 0) -> torch.Tensor:
    """Decoder hidden states (R, 1 + Lt, H) of each row's target after its prompt
    (``prompt_target_states``). State 0 of row r is its prompt's last, so state j predicts
    target token j (the unshared path reads it at prompt length − 1 + j)."""
    hp, ht = prompt_target_states(model, target_ids, target_mask, prompt_ids, prompt_mask,
                                  row_prompt, root)
    last = hp[torch.arange(hp.shape[0], device=hp.device),
              prompt_mask.sum(-1) - 1 - root]  # (E, H)
    return torch.cat([last[row_prompt, None], ht], 1)


def head(model: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """The output head on hidden states (..., H) → logits (..., V), with a Gemma-2 style final
    soft-capping where the model has one (its own forward applies it after the head)."""
    z = model.get_output_embeddings()(h)
    cap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(z / cap) * cap if cap else z


def pad(rows: Sequence[Sequence[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, ...]:
    """(B, L) ids and attention mask of ragged rows, padded on the left or the right."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, sl] = torch.tensor(list(r), dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


def target_logps(model: Any, prompts: Sequence[list[int]], targets: Sequence[list[int]],
                 pad_id: int, device: torch.device) -> list[list[float]]:
    """log P(target_j | prompt, target_<j) per target token, for one batch of rows.

    With a decoder that takes a KV cache and position ids, each distinct prompt runs once
    (``_shared_target_logps``). Otherwise one right-padded pass over prompt + target: logits at
    position i predict token i + 1, so target token j (at len(p) + j) is read at len(p) + j − 1,
    and only positions from the shortest prompt's end are projected to the vocabulary
    (``logits_to_keep``): (B, L, V) logits for the prompts would be wasted memory.
    """
    if any(len(p) == 0 for p in prompts):
        raise W2SError("a prompt encodes to no tokens, so its first target token has no "
                       "context", "pass a non-empty prompt (build_prompt always gives one)")
    if shares_prompts(model) and max(len(t) for t in targets) > 0:
        return _shared_target_logps(model, prompts, targets, pad_id, device)
    ids, mask = pad([p + t for p, t in zip(prompts, targets, strict=True)], pad_id, left=False)
    lo = min(len(p) for p in prompts) - 1
    kwargs: dict[str, Any] = {}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        kwargs["logits_to_keep"] = ids.shape[1] - lo
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs).logits
    logits = logits[:, -(ids.shape[1] - lo):]  # (B, L − lo, V), position lo first
    t_max = max(max(len(t) for t in targets), 1)
    pos = torch.zeros((len(prompts), t_max), dtype=torch.long)
    tgt = torch.zeros((len(prompts), t_max), dtype=torch.long)
    for i, (p, t) in enumerate(zip(prompts, targets, strict=True)):
        pos[i, : len(t)] = torch.arange(len(p) - 1 - lo, len(p) - 1 - lo + len(t))
        tgt[i, : len(t)] = torch.tensor(t, dtype=torch.long)
    pos = pos.to(logits.device)
    sel = logits.gather(1, pos.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))  # (B, T, V)
    return _read(sel, tgt, targets)


def _shared_target_logps(model: Any, prompts: Sequence[list[int]],
                         targets: Sequence[list[int]], pad_id: int,
                         device: torch.device) -> list[list[float]]:
    """``target_logps`` with each distinct prompt of the batch run once
    (``shared_prompt_states``): the N candidates of an utterance cost one prompt, not N."""
    distinct, row = group([tuple(p) for p in prompts])
    p_ids, p_mask = pad(distinct, pad_id, left=False)  # (E, Lp)
    t_ids, t_mask = pad([t or [pad_id] for t in targets], pad_id, left=False)  # (R, Lt)
    t_mask[[i for i, t in enumerate(targets) if not t]] = 0  # an empty target reads nothing
    h = shared_prompt_states(model, t_ids.to(device), t_mask.to(device), p_ids.to(device),
                             p_mask.to(device), row.to(device),
                             shared_root(distinct))  # (R, 1 + Lt, H)
    # state j predicts target token j: the last state (after the last token) is not read, nor
    # are padding's, so the head (a 49k-vocabulary matmul for SmolLM2) runs on real ones only
    keep = t_mask.bool().to(h.device)  # (R, Lt)
    z = head(model, h[:, :-1][keep]).float()  # (M, V), row by row
    lp = z.log_softmax(-1).gather(-1, t_ids.to(h.device)[keep].unsqueeze(-1)).squeeze(-1)
    flat, at, out = lp.cpu().tolist(), 0, []
    for t in targets:
        out.append(flat[at:at + len(t)])
        at += len(t)
    return out


def _read(logits: torch.Tensor, tgt: torch.Tensor,
          targets: Sequence[list[int]]) -> list[list[float]]:
    """logits (R, T, V) at the positions predicting tgt (R, T) → each row's target log-probs
    (fp32 log-softmax), cut to its own length."""
    lp = logits.float().log_softmax(-1).gather(-1, tgt.to(logits.device).unsqueeze(-1))
    rows = lp.squeeze(-1).cpu().tolist()  # (R, T)
    return [rows[i][: len(t)] for i, t in enumerate(targets)]
