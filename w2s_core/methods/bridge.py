"""The word bridge: teacher word log-probs → student token soft labels across tokenizers.

Teachers and student tokenize the same weak label differently, so probabilities are exchanged
at the level both agree on: whitespace-split words (METHOD.md §3). A teacher's word log-prob
log P_k(word) is split over the word's student tokens with weights ω_t that sum to 1 per word,
log q_t = ω_t · log P_k(word), so Π_t q_t = P_k(word) exactly. The soft target at step t puts q_t
on the label token and spreads 1 − q_t over the rest of the vocabulary as the student would.

Shapes: ``T`` student tokens of one label, ``W`` words, ``V`` the student's vocabulary; any
leading batch dims ``...`` are allowed where a signature says so. Word id −1 marks tokens that
belong to no word (special tokens); they carry weight 0 and log q = 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import torch

from w2s_core.errors import W2SError

SplitMode = Literal["softmax", "equal"]
TargetMode = Literal["detached", "frozen", "live"]

_WORD = re.compile(r"\S+")


def word_spans(text: str, offsets: Sequence[tuple[int, int]]) -> list[int]:
    """Word index (into ``text.split()``) of every token, from the tokenizer's character offsets.

    Rules, chosen so every character of a word is owned by the word it belongs to:
    - an empty span (start == end; (0, 0) is how HF fast tokenizers mark special tokens) → −1;
    - otherwise the word that contains the token's first non-whitespace character, so a
      byte-level token such as "Ġworld" whose span includes the leading space goes to "world";
    - a token of whitespace only is attached to the NEXT word (it is that word's separator in
      sentencepiece/byte-level vocabularies); trailing whitespace, with no next word, goes to
      the last word; a text without words → −1.
    A token that spans several words goes to the first; the words it swallows then have no token
    of their own and ``token_log_targets`` folds their log-prob into that first word.
    """
    starts, ends = [], []
    for m in _WORD.finditer(text):
        starts.append(m.start())
        ends.append(m.end())
    ids: list[int] = []
    for start, end in offsets:
        if start >= end or not starts:
            ids.append(-1)
            continue
        if end > len(text) or start < 0:
            raise W2SError(f"token offsets ({start}, {end}) fall outside the {len(text)}-character "
                           "label", "pass the offsets returned for this very text "
                           "(return_offsets_mapping=True on the same string)")
        piece = text[start:end]
        stripped = len(piece) - len(piece.lstrip())
        if stripped < len(piece):  # has a non-whitespace character at start + stripped
            pos = start + stripped
            ids.append(max(i for i, s in enumerate(starts) if s <= pos))
        else:  # whitespace only: the next word begins at or after the token's end
            nxt = [i for i, s in enumerate(starts) if s >= end]
            ids.append(nxt[0] if nxt else len(starts) - 1)
    return ids


def _group_ids(word_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Flatten (..., T) word ids into one id per (row, word); −1 rows go to a dump group."""
    flat = word_ids.reshape(-1, word_ids.shape[-1]).long()  # (R, T)
    n_words = int(flat.max().item()) + 1 if flat.numel() else 0
    n_words = max(n_words, 1)
    rows = torch.arange(flat.shape[0], device=flat.device).unsqueeze(-1)
    valid = flat >= 0
    gid = torch.where(valid, rows * n_words + flat, flat.shape[0] * n_words)  # dump = last
    return gid.reshape(-1), valid.reshape(-1), flat.shape[0] * n_words + 1


def split_weights(confidence: torch.Tensor, word_ids: torch.Tensor, mode: SplitMode = "softmax",
                  temperature: float = 1.0) -> torch.Tensor:
    """Split weights ω_t over each word's student tokens.

    softmax: ω_t = exp(−m_t/T) / Σ_{t'∈word(t)} exp(−m_t'/T) — the least confident tokens get
    the largest share of the word's improbability (as T → 0 all of it goes to the least
    confident token). equal: ω_t = 1/|word(t)|. Tokens with word id −1 get ω = 0.
    confidence: (..., T) m_t = max_v P(v | s_<t); word_ids: (..., T) long → (..., T), Σ_word ω = 1.
    """
    if confidence.shape != word_ids.shape:
        raise W2SError(f"confidence {tuple(confidence.shape)} and word ids "
                       f"{tuple(word_ids.shape)} differ in shape", "pass one word id per token")
    if mode not in ("softmax", "equal"):
        raise W2SError(f"unknown split mode {mode!r}", "use 'softmax' or 'equal'")
    if mode == "softmax" and not temperature > 0:
        raise W2SError(f"split temperature must be > 0, got {temperature}",
                       "use e.g. 1.0 or 0.3 (or mode='equal')")
    gid, valid, n_groups = _group_ids(word_ids)
    if mode == "equal":
        score = torch.zeros_like(confidence.reshape(-1))
    else:
        score = -confidence.reshape(-1) / temperature  # (R·T,)
    # per-word max shift keeps exp() finite for small temperatures
    gmax = torch.full((n_groups,), float("-inf"), dtype=score.dtype, device=score.device)
    gmax = gmax.scatter_reduce(0, gid, score, reduce="amax")
    e = torch.exp(score - gmax[gid]) * valid.to(score.dtype)
    gsum = torch.zeros(n_groups, dtype=score.dtype, device=score.device).index_add(0, gid, e)
    omega = e / gsum[gid].clamp_min(torch.finfo(score.dtype).tiny)
    return omega.reshape(confidence.shape)


def token_log_targets(word_logp: torch.Tensor, word_ids: torch.Tensor,
                      omega: torch.Tensor) -> torch.Tensor:
    """log q_t = ω_t · log P_k(word(t)), so Σ_{t∈word} log q_t = log P_k(word) and Π_t q_t = P_k.

    A word with no student token of its own (swallowed by a token spanning several words, see
    ``word_spans``) has its log-prob folded into the nearest preceding word that has tokens, so
    the product over all tokens still equals the label's probability Π_words P_k(word). Pad
    ``word_logp`` with 0 for batched labels of unequal word counts (a zero folds harmlessly).
    word_logp: (..., W) ≤ 0; word_ids: (..., T); omega: (..., T) → (..., T); 0 where id = −1.
    """
    if word_ids.numel() and int(word_ids.max().item()) >= word_logp.shape[-1]:
        raise W2SError(f"a token points at word {int(word_ids.max().item())} but only "
                       f"{word_logp.shape[-1]} word log-probs were given",
                       "pass one log-prob per whitespace-split word of the label")
    if bool((word_logp > 0).any()):
        raise W2SError("word log-probabilities must be ≤ 0", "pass log P(word), not P or a score")
    w = word_logp.shape[-1]
    idx = torch.arange(w, device=word_ids.device)
    ids = word_ids.long()
    covered = ((ids.unsqueeze(-1) == idx).any(-2))  # (..., W)
    # owner(k) = the last covered word ≤ k (−1 when none precedes k)
    owner = torch.where(covered, idx, torch.full_like(idx, -1)).cummax(-1).values
    if bool(((owner < 0) & (word_logp != 0)).any()):
        raise W2SError("a word before the first student token has no token to carry its "
                       "probability", "tokenize the same label text whose words were scored")
    folded = torch.zeros_like(word_logp).scatter_add(-1, owner.clamp_min(0),
                                                      torch.where(owner >= 0, word_logp, 0.0))
    per_token = folded.gather(-1, ids.clamp_min(0))  # (..., T)
    return torch.where(ids >= 0, omega * per_token, torch.zeros_like(per_token))


def soft_targets(label_ids: torch.Tensor, log_q: torch.Tensor, student_logp: torch.Tensor,
                 mode: TargetMode = "detached") -> torch.Tensor:
    """Soft target y_t = q_t·onehot(label_t) + (1 − q_t)·p_rest, p_rest ∝ P_student(v), v ≠ label_t.

    p_rest is the student's distribution with the label token removed and renormalised, computed
    as a softmax with the label logit at −inf so it stays exact when P(label) → 1.
    Modes (the reviewers' "targets move with the student" critique, METHOD.md §3):
    - "detached" (default): the whole target is detached from the graph;
    - "frozen": also detached; the caller passes log q_t computed once with the initial student
      (and may pass that student's log-probs too) — the function cannot tell, it only detaches;
    - "live" (the paper): nothing is detached, gradients flow through q_t and p_rest.
    label_ids: (..., T) long; log_q: (..., T) ≤ 0; student_logp: (..., T, V) → (..., T, V).
    """
    if mode not in ("detached", "frozen", "live"):
        raise W2SError(f"unknown target mode {mode!r}", "use 'detached', 'frozen' or 'live'")
    if student_logp.shape[-1] < 2:
        raise W2SError("a soft target needs a vocabulary of at least 2 tokens",
                       "pass the student's full log-softmax over its vocabulary")
    if student_logp.shape[:-1] != label_ids.shape or log_q.shape != label_ids.shape:
        raise W2SError(f"shapes differ: labels {tuple(label_ids.shape)}, log q "
                       f"{tuple(log_q.shape)}, student log-probs {tuple(student_logp.shape)}",
                       "pass (..., T) labels and log q with (..., T, V) student log-probs")
    if mode != "live":
        log_q, student_logp = log_q.detach(), student_logp.detach()
    onehot = torch.zeros_like(student_logp, dtype=torch.bool).scatter_(
        -1, label_ids.long().unsqueeze(-1), True)
    rest = torch.softmax(student_logp.masked_fill(onehot, float("-inf")), dim=-1)
    q = log_q.exp().unsqueeze(-1)  # (..., T, 1)
    return q * onehot.to(rest.dtype) + (1 - q) * rest


def fixed_target_ce(state_logp: torch.Tensor, pick: torch.Tensor, label_ids: torch.Tensor,
                    log_q: torch.Tensor, values: torch.Tensor | None = None) -> torch.Tensor:
    """−Σ_v y_v log p_v for the detached / frozen soft target y = q·onehot(l) + (1 − q)·p_rest
    (``soft_targets``), without building y: with p_rest,v = p_v / (1 − p_l) for v ≠ l,

        CE = −q·log p_l − (1 − q) · Σ_{v≠l} sg(p_v)·log p_v / (1 − sg(p_l))

    (sg: no gradient, as the detached target has none), so its gradient in the logits is
    p − y, the dense loss's. The vocabulary-wide sums are numbers per state: rows that share a
    state (``lm_batches.collate``) share them, and no (positions × V) tensor is made. Where the
    label is the state's argmax, 1 − p_l and the sum over v ≠ l come from per-state sums that
    leave the argmax out (exact as p_l → 1, where 1 − exp(log p_l) cancels); elsewhere
    p_l ≤ ½ and the sum over all v less the label's term is exact enough.
    ``values`` (N, V): −Σ_v y_v x_v for another x with the same y (p_rest still from
    ``state_logp``), e.g. x = log(α/S) for token EDL's NLL, cross-entropy against the
    Dirichlet mean.
    state_logp: (N, V) log-softmax; pick, label_ids, log_q: (..., T) → (..., T).
    """
    x = state_logp if values is None else values
    sg = state_logp.detach()
    top = sg.argmax(-1, keepdim=True)  # (N, 1)
    w = sg.exp().scatter(-1, top, 0.0)  # sg(p_v), the argmax left out
    off_top = (w * x).sum(-1)  # Σ_{v≠top} sg(p_v) x_v, (N,)
    p_top, x_top = sg.gather(-1, top).squeeze(-1).exp(), x.gather(-1, top).squeeze(-1)
    total = off_top + p_top * x_top  # Σ_v sg(p_v) x_v
    lp_l = sg[pick, label_ids]  # log p_l, (..., T), no gradient: it only weighs
    x_l = x[pick, label_ids]
    is_top = label_ids == top.squeeze(-1)[pick]
    rest_sum = torch.where(is_top, off_top[pick], total[pick] - lp_l.exp() * x_l)
    rest_mass = torch.where(is_top, w.sum(-1)[pick], -torch.expm1(lp_l))
    q = log_q.detach().exp()
    return -q * x_l - (1 - q) * rest_sum / rest_mass.clamp_min(torch.finfo(sg.dtype).tiny)
