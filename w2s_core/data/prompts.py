"""Slot filling as text generation: the prompt, the JSON target and their token encoding.

One prompt format serves every causal LM (teachers trained from scratch have no chat template,
and SmolLM2-Instruct learns the plain format within a few steps), so all models see the same
text and their outputs are comparable word for word.

The prompt ends with a newline and the target starts with "{": a tokenizer then never merges
the prompt's last character with the target's first, so prompt and target can be tokenized
apart (the target's character offsets are what the word bridge needs) and concatenated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from w2s_core.errors import W2SError
from w2s_core.metrics.slu import format_slots, parse_slots

__all__ = ["Encoded", "build_prompt", "encode", "ensure_pad", "format_slots", "parse_slots",
           "target_offsets"]

PromptStyle = Literal["short", "full"]

SHORT = 'Extract the slots of the sentence as a JSON dict.\nSentence: "{text}"\nJSON:\n'
FULL = ('Fill the slots of the sentence. Slot types: {types}.\nAnswer with a JSON dict of '
        'slot type to value ({{}} if none).\nSentence: "{text}"\nJSON:\n')


def build_prompt(text: str, slot_types: Sequence[str] = (), style: PromptStyle = "short") -> str:
    """The instruction plus the quoted sentence. ``full`` lists every slot type (the paper's
    prompt; ~80 types make it ~10x longer, so ``short`` is the CPU default)."""
    if style == "short":
        return SHORT.format(text=text)
    if style == "full":
        return FULL.format(types=", ".join(slot_types), text=text)
    raise W2SError(f"unknown prompt style {style!r}", "use prompt: short or prompt: full")


@dataclass
class Encoded:
    """Prompt + target token ids of a batch of examples (python lists; the trainer pads).

    ``target_ids[i]`` are the target's tokens followed by EOS; ``target_offsets[i]`` their
    character spans in ``targets[i]`` ((0, 0) for EOS, as fast tokenizers mark specials).
    ``truncated`` counts prompts cut from the left and targets cut at the right to fit
    ``max_length``: over-long inputs are shortened and counted, never an error mid-sweep.
    """

    prompt_ids: list[list[int]]
    target_ids: list[list[int]]
    target_offsets: list[list[tuple[int, int]]]
    targets: list[str]
    truncated: dict[str, int] = field(default_factory=lambda: {"prompt": 0, "target": 0})

    def __len__(self) -> int:
        return len(self.prompt_ids)


def ensure_pad(tokenizer: Any) -> None:
    """A tokenizer without a pad token pads with EOS (documented fallback): every loss and
    score masks padding explicitly, so the pad id's meaning never matters."""
    if tokenizer.eos_token_id is None:
        raise W2SError(f"tokenizer {type(tokenizer).__name__} has no EOS token, so generation "
                       "cannot stop", "give the tokenizer an eos_token (tokenizer.eos_token = ...)")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token


def target_offsets(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of ``text`` (no special tokens) and their character spans.

    Fast tokenizers return offsets directly. A slow tokenizer has none: the fallback decodes
    growing prefixes of the ids and takes each token's span as the growth of the decoded text
    (exact for tokenizers whose decode round-trips, approximate otherwise).
    """
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    spans, prev = [], 0
    for i in range(len(ids)):
        n = len(tokenizer.decode(ids[: i + 1]))
        n = min(max(n, prev), len(text))
        spans.append((prev, n))
        prev = n
    return list(ids), spans


def encode(tokenizer: Any, prompts: Sequence[str], targets: Sequence[str] | None = None,
           max_length: int = 256) -> Encoded:
    """Tokenize prompts (with the tokenizer's own special tokens, e.g. a BOS) and targets
    (without, plus EOS). ``targets=None`` encodes prompts for decoding.

    Over ``max_length``: the prompt loses tokens from the left (its end, "JSON:", must stay next
    to the target), keeping at least 8; a target still too long is cut at the right (it then has
    no EOS, and the example is counted as a truncated target).
    """
    ensure_pad(tokenizer)
    if max_length < 16:
        raise W2SError(f"max_length {max_length} is too short for a prompt and a target",
                       "use max_length ≥ 64")
    eos = tokenizer.eos_token_id
    out = Encoded([], [], [], [])
    for i, prompt in enumerate(prompts):
        p = list(tokenizer(prompt)["input_ids"])
        if targets is None:
            t, offs, text = [], [], ""
        else:
            text = targets[i]
            t, offs = target_offsets(tokenizer, text)
            t, offs = t + [eos], offs + [(0, 0)]
        over = len(p) + len(t) - max_length
        if over > 0:
            cut = min(over, max(0, len(p) - 8))
            if cut:
                p = p[cut:]
                out.truncated["prompt"] += 1
            over -= cut
            if over > 0:
                t, offs = t[: len(t) - over], offs[: len(offs) - over]
                out.truncated["target"] += 1
        out.prompt_ids.append(p)
        out.target_ids.append(t)
        out.target_offsets.append(offs)
        out.targets.append(text)
    return out
