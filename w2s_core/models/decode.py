"""N-best decoding and exact teacher-forced scoring of slot-filling targets.

``nbest`` runs batched beam search (HF ``generate``) only to *propose* candidate texts; every
candidate is then re-tokenized with ``prompts.encode`` and scored by ``score`` with one
teacher-forced forward pass. The reported log-probs are therefore those of the canonical
tokenization the trainer uses (not the beam's own path), per token and per word, so a teacher's
scores and a student's training targets refer to the same token sequence.

Padding: ``generate`` needs LEFT padding (new tokens are appended at the right); ``score`` pads
on the RIGHT, which leaves every real token at its unpadded position, so a batched score equals
the one-by-one score up to float rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from w2s_core.data.prompts import encode, ensure_pad
from w2s_core.device import autocast_bf16
from w2s_core.errors import W2SError
from w2s_core.methods.bridge import word_spans
from w2s_core.models.causal import CausalLM, cache_kwarg
from w2s_core.models.shared_prompt import pad as _pad
from w2s_core.models.shared_prompt import shares_prompts, target_logps

__all__ = ["Candidate", "nbest", "score", "word_logps"]


@dataclass
class Candidate:
    """One scored target text of one prompt.

    ``token_*`` and ``offsets`` describe the text's own tokens (EOS excluded); ``eos_logp`` is
    the EOS log-prob (0.0 when the target was cut at ``max_length`` and has no EOS).
    logp = Σ token_logps + eos_logp; norm = logp / (len(token_ids) + 1) — the +1 counts EOS
    (only when it was scored), the length-normalised key candidates are ranked by.
    """

    text: str
    logp: float
    norm: float
    token_ids: list[int]
    token_logps: list[float]
    offsets: list[tuple[int, int]]
    word_logps: list[float]
    eos_logp: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (offsets become 2-lists)."""
        d = asdict(self)
        d["offsets"] = [list(o) for o in self.offsets]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        return cls(text=d["text"], logp=float(d["logp"]), norm=float(d["norm"]),
                   token_ids=[int(i) for i in d["token_ids"]],
                   token_logps=[float(x) for x in d["token_logps"]],
                   offsets=[(int(a), int(b)) for a, b in d["offsets"]],
                   word_logps=[float(x) for x in d["word_logps"]], eos_logp=float(d["eos_logp"]))


def word_logps(text: str, offsets: Sequence[tuple[int, int]],
               token_logps: Sequence[float]) -> list[float]:
    """log P(word) = Σ of its tokens' log-probs, one value per ``text.split()`` word.

    Tokens are assigned to words by ``bridge.word_spans``. A token it marks −1 (empty span:
    zero-width or special pieces) is folded into the word of the NEXT token that has one — as
    ``word_spans`` does for whitespace separators — and, with none after it, into the previous
    word. A word no token starts in (swallowed by a multi-word token, or cut off by
    truncation) gets 0, as in ``bridge.token_log_targets``. Hence Σ word_logps = Σ token_logps
    whenever the text has a word; a text with no word ("" or whitespace) gives [] (a "" target's
    whole probability is its EOS log-prob, which is never part of a word).
    """
    n_words = len(text.split())
    if not n_words:
        return []
    ids = word_spans(text, offsets)
    nxt = -1
    for i in reversed(range(len(ids))):  # −1 → next token's word
        if ids[i] >= 0:
            nxt = ids[i]
        else:
            ids[i] = nxt
    prev = n_words - 1  # trailing −1 (no word after it) → previous token's word
    for i in range(len(ids)):
        if ids[i] < 0:
            ids[i] = prev
        prev = ids[i]
    out = [0.0] * n_words
    for w, lp in zip(ids, token_logps, strict=True):
        out[w] += float(lp)
    return out


def _decoded_spans(tokenizer: Any, ids: Sequence[int], text: str) -> list[tuple[int, int]]:
    """Character spans from decoding growing prefixes of ``ids`` (the same fallback rule as
    ``prompts.target_offsets`` for slow tokenizers, applied to ids we already have): token i
    spans the growth of the decoded text, clamped to ``text``."""
    spans, prev = [], 0
    for i in range(len(ids)):
        n = min(max(len(tokenizer.decode(list(ids[: i + 1]))), prev), len(text))
        spans.append((prev, n))
        prev = n
    return spans


def _usable(text: str, offsets: Sequence[tuple[int, int]]) -> bool:
    """Offsets are unusable when they fall outside the text or, for a text with words, every
    token has an empty span (a tokenizer that returns no offsets gives all (0, 0))."""
    if any(s < 0 or e > len(text) or s > e for s, e in offsets):
        return False
    return not (offsets and text.split() and all(s == e for s, e in offsets))


def _count(stats: dict[str, int] | None, key: str, n: int) -> None:
    if stats is not None:
        stats[key] = stats.get(key, 0) + int(n)


@contextlib.contextmanager
def _eval(model: Any) -> Iterator[None]:
    """Eval mode (no dropout) for scoring/decoding, restoring the caller's mode afterwards."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def score(lm: CausalLM, prompts: Sequence[str], texts: Sequence[Sequence[str]], *,
          batch_size: int = 16, max_length: int = 256, bf16: bool = False,
          stats: dict[str, int] | None = None) -> list[list[Candidate]]:
    """Teacher-forced log-probs of the given candidate ``texts[i]`` of each ``prompts[i]``.

    Each (prompt, text) pair is encoded by ``prompts.encode`` (prompt + text + EOS, truncated
    to ``max_length`` there) and scored with one forward pass per ``batch_size`` sequences,
    without gradients, in fp32 unless ``bf16`` (autocast; faster, scores then rounded).
    ``stats`` (optional) accumulates ``truncated_prompts`` / ``truncated_targets``: pairs whose
    prompt lost tokens at the left / whose target was cut (no EOS; words beyond the cut get 0).
    Offsets a tokenizer cannot give are rebuilt by decoding growing id prefixes (see
    ``_decoded_spans``) and counted as ``offset_fallback``. Returns candidates in the order of
    ``texts[i]``.
    """
    out, rebuilt = _score(lm, prompts, texts, batch_size, max_length, bf16, stats)
    _count(stats, "offset_fallback", sum(map(sum, rebuilt)))
    return out


def _score(lm: CausalLM, prompts: Sequence[str], texts: Sequence[Sequence[str]],
           batch_size: int, max_length: int, bf16: bool, stats: dict[str, int] | None
           ) -> tuple[list[list[Candidate]], list[list[bool]]]:
    """``score``'s candidates and, for each, whether its offsets were rebuilt: per candidate, so
    ``nbest`` can count the fallback over the candidates it returns, not all it scored."""
    if len(prompts) != len(texts):
        raise W2SError(f"{len(prompts)} prompts but {len(texts)} candidate lists",
                       "pass one list of texts per prompt")
    tok, model = lm.tokenizer, lm.model
    ensure_pad(tok)
    flat_p = [prompts[i] for i, ts in enumerate(texts) for _ in ts]
    flat_t = [t for ts in texts for t in ts]
    enc = encode(tok, flat_p, flat_t, max_length)
    _count(stats, "truncated_prompts", enc.truncated["prompt"])
    _count(stats, "truncated_targets", enc.truncated["target"])
    # longest prompts first, an utterance's candidates side by side: they share one prompt
    # pass (``shared_prompt_states``) when they land in one batch; similar lengths share a
    # batch (less padding), and a too-large batch fails on the first one, not after minutes
    owner = [i for i, ts in enumerate(texts) for _ in ts]
    order = sorted(range(len(enc)), key=lambda k: (-len(enc.prompt_ids[k]), owner[k],
                                                   -len(enc.target_ids[k])))
    logps: list[list[float]] = [[] for _ in range(len(enc))]
    device = lm.device
    with _eval(model), torch.no_grad(), autocast_bf16(device, bf16):
        for b in range(0, len(order), max(1, batch_size)):
            idx = order[b: b + max(1, batch_size)]
            rows = target_logps(model, [enc.prompt_ids[k] for k in idx],
                                [enc.target_ids[k] for k in idx], tok.pad_token_id, device)
            for k, r in zip(idx, rows, strict=True):
                logps[k] = r
    eos = tok.eos_token_id
    flat: list[Candidate] = []
    rebuilt: list[bool] = []
    for k in range(len(enc)):
        ids, offs, lps, text = enc.target_ids[k], enc.target_offsets[k], logps[k], flat_t[k]
        has_eos = bool(ids) and ids[-1] == eos and tuple(offs[-1]) == (0, 0)
        n = len(ids) - int(has_eos)
        t_ids, t_offs, t_lps = list(ids[:n]), [tuple(o) for o in offs[:n]], lps[:n]
        rebuilt.append(not _usable(text, t_offs))
        if rebuilt[-1]:
            t_offs = _decoded_spans(tok, t_ids, text)
        eos_lp = float(lps[-1]) if has_eos else 0.0
        logp = float(sum(t_lps)) + eos_lp
        flat.append(Candidate(text=text, logp=logp, norm=logp / max(n + int(has_eos), 1),
                              token_ids=t_ids, token_logps=[float(x) for x in t_lps],
                              offsets=t_offs, word_logps=word_logps(text, t_offs, t_lps),
                              eos_logp=eos_lp))
    out, flags, k = [], [], 0
    for ts in texts:
        out.append(flat[k: k + len(ts)])
        flags.append(rebuilt[k: k + len(ts)])
        k += len(ts)
    return out, flags


def _room(max_length: int, max_new_tokens: int) -> int:
    """Prompt tokens left for generation: prompt + output + EOS must fit ``max_length``."""
    if max_new_tokens < 1:
        raise W2SError(f"max_new_tokens={max_new_tokens} must be ≥ 1", "use e.g. 64")
    room = max_length - max_new_tokens - 1
    if room < 16:
        raise W2SError(f"max_length {max_length} leaves {room} prompt tokens after "
                       f"{max_new_tokens} new tokens", "raise max_length or lower max_new_tokens")
    return room


def _prefilled(model: Any, ids: torch.Tensor, mask: torch.Tensor,
               num_beams: int) -> dict[str, Any]:
    """A KV cache of each left-padded prompt but its last token, run ONCE and then copied to
    its ``num_beams`` beams: ``generate`` repeats every prompt num_beams times before its first
    forward, so without this each prompt is computed num_beams times (−28 % of beam-search time
    on SmolLM2, 5 beams). ``generate`` then runs only the uncached last token; positions come
    from the same mask cumsum it uses, so the beams are those of the plain call. Returns the
    ``generate`` keyword to pass, or {} where the model takes no cache or there is no prefix.
    """
    if num_beams < 2 or ids.shape[1] < 2 or not shares_prompts(model):
        return {}
    from transformers import DynamicCache

    dec = model.get_decoder()  # the prefix needs no logits: the decoder alone fills the cache
    cache = DynamicCache(config=model.config)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    dec(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1],
        use_cache=True, **{cache_kwarg(dec): cache})
    cache.batch_repeat_interleave(num_beams)  # (B·num_beams, ...), beams of a prompt adjacent
    return {cache_kwarg(model): cache}


def nbest(lm: CausalLM, prompts: Sequence[str], *, num_beams: int = 5, n_best: int = 5,
          max_new_tokens: int = 64, batch_size: int = 16, max_length: int = 256,
          bf16: bool = False, progress: bool = False,
          stats: dict[str, int] | None = None) -> list[list[Candidate]]:
    """Up to ``n_best`` distinct candidates per prompt, best first by ``norm``.

    Beam search (``num_beams`` beams, all returned; ``num_beams=1`` is greedy) over
    ``batch_size`` left-padded prompts at a time, each prompt computed once for all its beams
    (``_prefilled``), proposes texts (new tokens up to the first EOS,
    decoded with special tokens skipped); duplicates are dropped keeping the first, and the rest
    are rescored exactly by ``score`` (``batch_size`` sequences per forward) and sorted.
    Prompts are cut from the left to ``max_length − max_new_tokens − 1`` tokens for generation so
    that prompt, output and EOS fit ``max_length``. ``stats`` accumulates ``truncated_prompts``
    (prompts cut for generation), ``truncated_targets`` (candidates cut while scoring, of all
    distinct beams) and, over the candidates returned: ``outputs`` (their number),
    ``unfinished`` (whose every beam hit ``max_new_tokens`` without EOS) and
    ``offset_fallback`` (whose offsets were rebuilt, see ``score``).
    """
    if num_beams < 1 or n_best < 1 or max_new_tokens < 1:
        raise W2SError(f"num_beams={num_beams}, n_best={n_best}, max_new_tokens="
                       f"{max_new_tokens} must all be ≥ 1", "use e.g. num_beams=5, n_best=5")
    tok, model = lm.tokenizer, lm.model
    ensure_pad(tok)
    room = _room(max_length, max_new_tokens)
    enc = encode(tok, prompts, None, room)
    _count(stats, "truncated_prompts", enc.truncated["prompt"])
    eos, pad = tok.eos_token_id, tok.pad_token_id
    gen: dict[str, Any] = dict(max_new_tokens=max_new_tokens, num_beams=num_beams,
                               num_return_sequences=num_beams, do_sample=False,
                               eos_token_id=eos, pad_token_id=pad)
    if num_beams > 1:
        gen.update(early_stopping=True, length_penalty=1.0)
    order = sorted(range(len(enc)), key=lambda i: -len(enc.prompt_ids[i]))
    starts = list(range(0, len(order), max(1, batch_size)))
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="n-best", unit="batch")
    texts: list[list[str]] = [[] for _ in range(len(enc))]
    # text → True while every beam that gave it ran out: a text some beam ended is an answer
    cut: list[dict[str, bool]] = [{} for _ in range(len(enc))]
    device = lm.device
    with _eval(model), torch.no_grad(), autocast_bf16(device, bf16):
        for b in starts:
            idx = order[b: b + max(1, batch_size)]
            ids, mask = _pad([enc.prompt_ids[i] for i in idx], pad, left=True)
            ids, mask = ids.to(device), mask.to(device)
            out = model.generate(input_ids=ids, attention_mask=mask, **gen,
                                 **_prefilled(model, ids, mask, num_beams))
            for r, seq in enumerate(out[:, ids.shape[1]:].tolist()):
                i, ran_out = idx[r // num_beams], eos not in seq
                seq = seq if ran_out else seq[: seq.index(eos)]
                text = tok.decode(seq, skip_special_tokens=True)
                if text not in texts[i]:
                    texts[i].append(text)
                cut[i][text] = cut[i].get(text, True) and ran_out
    inner: dict[str, int] = {}
    scored, rebuilt = _score(lm, prompts, texts, batch_size, max_length, bf16, inner)
    _count(stats, "truncated_targets", inner.get("truncated_targets", 0))
    ranked: list[list[Candidate]] = []
    for i, (cands, flags) in enumerate(zip(scored, rebuilt, strict=True)):
        best = sorted(range(len(cands)), key=lambda j: -cands[j].norm)[:n_best]
        ranked.append([cands[j] for j in best])
        _count(stats, "outputs", len(best))
        _count(stats, "unfinished", sum(cut[i][cands[j].text] for j in best))
        _count(stats, "offset_fallback", sum(flags[j] for j in best))
    return ranked
