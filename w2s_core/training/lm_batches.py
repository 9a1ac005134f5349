"""Generation training batches: weighted label sequences per prompt (``GenExample``), their
tokenized rows (``Rows``, one per (example, label) with λ > 0) and the padded tensors a forward
pass takes (``collate``), with or without one shared prompt per example.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from w2s_core.data.prompts import encode
from w2s_core.errors import W2SError
from w2s_core.methods import bridge
from w2s_core.models.shared_prompt import common_prefix, group, pad, shared_root


@dataclass
class LabelSeq:
    text: str
    word_logps: list[float] | None = None  # one per text.split() word; None = hard label (q = 1)


@dataclass
class GenExample:
    prompt: str
    labels: list[LabelSeq]
    weights: list[float]  # λ_k, sum 1


@dataclass
class Rows:
    """One row per (example, label) with λ > 0: token ids and what the bridge needs."""

    ids: list[list[int]] = field(default_factory=list)  # prompt + target (+ EOS)
    start: list[int] = field(default_factory=list)  # index of the first target token
    word_ids: list[list[int]] = field(default_factory=list)  # per target token, −1 = no word
    word_logp: list[list[float]] = field(default_factory=list)  # [] for a hard label
    weight: list[float] = field(default_factory=list)
    by_example: list[list[int]] = field(default_factory=list)
    truncated: dict[str, int] = field(default_factory=dict)


def flatten(tokenizer: Any, examples: Sequence[GenExample], max_length: int) -> Rows:
    """Tokenize every (prompt, label) pair once; drop λ = 0 labels (they cannot contribute)."""
    keep: list[tuple[int, LabelSeq, float]] = []
    for i, ex in enumerate(examples):
        if not ex.labels or len(ex.labels) != len(ex.weights):
            raise W2SError(f"example {i} has {len(ex.labels)} labels and {len(ex.weights)} "
                           "weights", "give each example ≥ 1 label and one λ per label")
        if min(ex.weights) < 0 or abs(sum(ex.weights) - 1) > 1e-3:
            raise W2SError(f"example {i}: weights {ex.weights} are not a distribution",
                           "pass λ_k ≥ 0 that sum to 1")
        keep += [(i, lab, w) for lab, w in zip(ex.labels, ex.weights, strict=True) if w > 0]
    enc = encode(tokenizer, [examples[i].prompt for i, _, _ in keep],
                 [lab.text for _, lab, _ in keep], max_length)
    rows = Rows(by_example=[[] for _ in examples], truncated=dict(enc.truncated))
    for r, (i, lab, w) in enumerate(keep):
        p, t = enc.prompt_ids[r], enc.target_ids[r]
        if not p:
            raise W2SError(f"example {i} has an empty prompt", "give every example a prompt")
        wids = bridge.word_spans(lab.text, enc.target_offsets[r])
        wlp: list[float] = []
        if lab.word_logps is not None:
            if len(lab.word_logps) != len(lab.text.split()):
                raise W2SError(f"example {i}: {len(lab.word_logps)} word log-probs for "
                               f"{len(lab.text.split())} words of {lab.text!r}",
                               "pass one log-prob per whitespace-split word of the label")
            # a cut target keeps only its words' log-probs (the rest would fold onto the last)
            wlp = list(lab.word_logps[: max(wids, default=-1) + 1])
        rows.ids.append(p + t)
        rows.start.append(len(p))
        rows.word_ids.append(wids)
        rows.word_logp.append(wlp)
        rows.weight.append(w)
        rows.by_example[i].append(r)
    return rows


def length_chunks(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Positions 0..len−1 sorted by length (stable), cut into runs of ``size``."""
    order = sorted(range(len(lengths)), key=lambda j: lengths[j])
    return [order[i:i + size] for i in range(0, len(order), max(1, size))]


def own_starts(rows: Rows, idx: Sequence[int]) -> list[int]:
    """Where each row's own pass begins when ``idx`` share passes: its start plus the common
    prefix (``shared_prompt.common_prefix``) of the targets of the rows with its prompt. Keyed
    by the prompt's ids, not the example: a row whose long target cut its prompt from the left
    (``encode``) has a prompt of its own."""
    ends = [rows.start[i] for i in idx]
    keys = [tuple(rows.ids[i][: rows.start[i]]) for i in idx]
    for key in dict.fromkeys(keys):
        mine = [r for r, k in enumerate(keys) if k == key]
        c = common_prefix([rows.ids[idx[r]][ends[r]:] for r in mine])
        for r in mine:
            ends[r] += c
    return ends


def _pass_lengths(rows: Rows, e: int) -> tuple[int, int]:
    """Example e's longest own pass and longest shared pass (prompt + common target prefix)
    under ``collate(shared=True)``: the lengths its rows are padded to."""
    mine = rows.by_example[e]
    if not mine:
        return 0, 0
    ends = own_starts(rows, mine)
    return (max(len(rows.ids[r]) - end for r, end in zip(mine, ends, strict=True)), max(ends))


def example_chunks(rows: Rows, items: Sequence[int], size: int,
                   by_length: bool = True) -> list[list[int]]:
    """The rows of ``items`` (example indices) in ⌈rows / ``size``⌉ groups of whole examples,
    their row counts as even as whole examples allow: a group may pass ``size`` by less than
    one example's rows, and an example with more rows than ``size`` forms a group alone.
    Filling each group to ``size`` would leave a runt: 16 examples of 3 rows at size 16 made
    groups of 15, 15, 15 and 3 rows, the last paying a whole pass's fixed cost for 3 rows.
    Examples come sorted (stable) by the length of their rows' own passes, then of their
    shared pass (``_pass_lengths``): the K rows outnumber the one prompt, so their padding
    costs more. ``by_length=False``: in the given order."""
    order = sorted(items, key=lambda e: _pass_lengths(rows, e)) if by_length else list(items)
    order = [e for e in order if rows.by_example[e]]
    total = sum(len(rows.by_example[e]) for e in order)
    groups = max(1, -(-total // max(1, size)))
    out: list[list[int]] = []
    done, k = 0, 0  # rows placed so far; groups closed so far
    for e in order:
        mine = rows.by_example[e]
        # close the open group where the k-th even cut point lies nearer before this example
        # than after it (ties keep the example: earlier groups are the larger)
        cut = (k + 1) * total / groups
        if out and k + 1 < groups and abs(done - cut) < abs(done + len(mine) - cut):
            out.append([])
            k += 1
        if not out:
            out.append([])
        out[-1] += mine
        done += len(mine)
    return out


def collate(rows: Rows, idx: Sequence[int], pad_id: int, device: torch.device,
            frozen: dict[int, torch.Tensor] | None = None, shared: bool = False,
            root: int | None = None) -> dict[str, torch.Tensor]:
    """Right-padded batch of rows; ``labels``, ``word_ids``, ``tmask`` are (R, T). The hidden
    state that predicts target token j of row r is ``state[pick[r, j]]``: ``state`` (N,) lists
    each distinct predicting state once, as a flat index into the forward pass's states, so
    the output head runs on N states, not R × T (``lm_loop.TargetLogits``). Padded target
    positions pick state 0; the losses mask them.

    Unshared: ``input_ids`` (R, L) hold prompt + target but its last token (EOS: a target
    that predicts nothing), and row r's token j is predicted at r·L + start − 1 + j (causal
    LM shift); ``tokens`` counts the rows' tokens, EOS included (throughput as if unshared).
    ``shared``: the rows of one prompt share one pass over it and over the longest common
    prefix of their targets (``shared_prompt.common_prefix``: K teachers' JSON agrees on its
    opening, often on whole slots; a DPO pair's beams on more). Each distinct extended prompt
    is in ``prompt_ids``/``prompt_mask`` (E, Lp) once, ``row_prompt`` (R,) is its row's,
    ``input_ids`` (R, Lt) hold the rest of each target, its EOS again no input (kept where
    every row would be left with none: a pass needs a token). ``b["root"]`` (a 0-d tensor left on
    the CPU: reading it must not wait for the device) is how many leading tokens all E prompts
    share (``shared_root``: the instruction), run once; ``root`` sets it instead (a batch cut
    into several collated chunks runs the instruction once for all of them: ``batch_root``).
    The states are the prompt pass's after the root (E·(Lp − root)) then the target pass's
    (R·Lt), so the K rows of a prompt pick the same state where it predicts a token of their
    common prefix: the head runs there once, not K times."""
    n_t = [len(rows.ids[i]) - rows.start[i] for i in idx]
    t_max, w_max = max(n_t), max([len(rows.word_logp[i]) for i in idx] + [1])
    b = {"pick": torch.zeros((len(idx), t_max), dtype=torch.long),
         "labels": torch.zeros((len(idx), t_max), dtype=torch.long),
         "tmask": torch.zeros((len(idx), t_max), dtype=torch.bool),
         "word_ids": torch.full((len(idx), t_max), -1, dtype=torch.long),
         "word_logp": torch.zeros((len(idx), w_max)),
         "weight": torch.tensor([rows.weight[i] for i in idx])}
    ends = own_starts(rows, idx) if shared else [rows.start[i] for i in idx]
    # a row's last token (EOS) is a target but predicts nothing: it is no input (a shared
    # chunk whose rows would all be left with an empty target pass keeps it: a pass needs one)
    stops = [len(rows.ids[i]) - 1 for i in idx]
    if shared and all(st <= e for st, e in zip(stops, ends, strict=True)):
        stops = [st + 1 for st in stops]
    if shared:
        distinct, b["row_prompt"] = group([tuple(rows.ids[i][:e])
                                           for i, e in zip(idx, ends, strict=True)])
        b["prompt_ids"], b["prompt_mask"] = pad(distinct, pad_id, left=False)
        root = shared_root(distinct) if root is None else root
        b["input_ids"], b["attention_mask"] = pad(
            [rows.ids[i][e:st] for i, e, st in zip(idx, ends, stops, strict=True)], pad_id,
            left=False)
        n_e, width = b["prompt_ids"].shape[0], b["prompt_ids"].shape[1] - root
    else:
        b["input_ids"], b["attention_mask"] = pad(
            [rows.ids[i][:st] for i, st in zip(idx, stops, strict=True)], pad_id, left=False)
    span = b["input_ids"].shape[1]
    states: dict[int, int] = {}  # flat state index → its place in ``state``
    if frozen is not None:
        b["log_q"] = torch.zeros((len(idx), t_max))
    for r, (i, n) in enumerate(zip(idx, n_t, strict=True)):
        ids, s = rows.ids[i], rows.start[i]
        at = range(s - 1, s - 1 + n)  # absolute position of the state predicting j
        if shared:  # before the row's own pass: its prompt's state, shared by its rows
            e = int(b["row_prompt"][r])
            flat = [e * width + a - root if a < ends[r] else n_e * width + r * span + a - ends[r]
                    for a in at]
        else:
            flat = [r * span + a for a in at]
        b["pick"][r, :n] = torch.tensor([states.setdefault(f, len(states)) for f in flat])
        b["labels"][r, :n] = torch.tensor(ids[s:])
        b["tmask"][r, :n] = True
        if rows.word_logp[i]:  # hard labels keep word id −1 everywhere: log q = 0, q = 1
            b["word_ids"][r, :n] = torch.tensor(rows.word_ids[i])
            b["word_logp"][r, :len(rows.word_logp[i])] = torch.tensor(rows.word_logp[i])
        if frozen is not None and i in frozen:
            b["log_q"][r, :n] = frozen[i]
    b["state"] = torch.tensor(list(states), dtype=torch.long)
    out = {k: v.to(device, non_blocking=True) for k, v in b.items()}
    out["tokens"] = torch.tensor(sum(len(rows.ids[i]) for i in idx))  # as if unshared, EOS in
    if shared:
        out["root"] = torch.tensor(root)
    return out


def batch_root(rows: Rows, chunks: Sequence[Sequence[int]]) -> int:
    """The ``root`` for collating ``chunks`` (shared, each of whole examples) as one batch: the
    leading tokens all their prompts, extended as ``collate`` extends them, share."""
    ext = {tuple(rows.ids[i][:e]) for c in chunks for i, e in zip(c, own_starts(rows, c),
                                                                      strict=True)}
    return shared_root(sorted(ext))
