"""The generation protocol's building blocks (METHOD.md §1 and §3), used by the one sweep.

1. weak floors: each causal-LM teacher learns the weak split's gold JSON targets, then decodes
   an N-best list (beam search) with per-token and per-word log-probs on transfer and test;
   every teacher then scores every teacher's candidates (the pool) under teacher forcing;
2. strong ceiling: the student learns the transfer split's gold targets;
3. transfer: the student learns the teachers' outputs combined by a generation method;
4. (c)DPO after chosen transfer runs (``gen_runs``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from w2s_core.data.prompts import build_prompt, encode, format_slots
from w2s_core.data.registry import load_slot_dataset
from w2s_core.data.slots import SlotDataset, split_slots
from w2s_core.device import rows_per_pass
from w2s_core.errors import W2SError
from w2s_core.experiments.config import ExperimentConfig
from w2s_core.experiments.runspec import plain
from w2s_core.models.causal import CausalLM, load_causal, load_saved, load_tokenizer, save_causal
from w2s_core.models.decode import Candidate, nbest, score
from w2s_core.models.greedy import greedy
from w2s_core.models.registry import resolve_model
from w2s_core.models.scratch_lm import build_scratch_lm, build_tokenizer
from w2s_core.training.finetune import _bf16_on
from w2s_core.training.lm_train import _PRECISION, GenExample, LabelSeq, LossSpec, train_lm

SPLITS = ("transfer", "test")


@dataclass
class GenSplits:
    """One data replicate of a slot-filling data set (the generation ``Splits``)."""

    ds: SlotDataset
    idx: dict[str, np.ndarray]
    data_seed: int = 0
    info: dict = field(default_factory=dict)
    prompt_style: str = "short"

    def ids(self, split: str) -> list[str]:
        return [self.ds.ids[i] for i in self.idx[split]]

    def texts(self, split: str) -> list[str]:
        return [self.ds.texts[i] for i in self.idx[split]]

    def pairs(self, split: str) -> list[list[tuple[str, str]]]:
        return [list(self.ds.slots[i]) for i in self.idx[split]]

    def targets(self, split: str) -> list[str]:
        return [format_slots(p) for p in self.pairs(split)]

    def prompts(self, split: str) -> list[str]:
        return [build_prompt(t, self.ds.slot_types, self.prompt_style)
                for t in self.texts(split)]

    def gold_value(self, i: int) -> str:
        """What experiment.json's examples table stores as an example's gold."""
        return format_slots(self.ds.slots[i])


def load_replicates(cfg: ExperimentConfig) -> list[GenSplits]:
    out = []
    for seed in cfg.data.replicate_seeds():
        dcfg = dataclasses.replace(cfg.data, seed=seed, seeds=None)
        ds = load_slot_dataset(dcfg)
        idx, info = split_slots(ds, dcfg)
        out.append(GenSplits(ds, idx, seed, {**info, "data": ds.info},
                             cfg.generation.prompt))
    check_prompts_fit(cfg, out)  # the sweep's first step: before any model trains
    return out


# ---------------------------------------------------------------- prompt vs max_length
# Room a training example needs beyond the instruction at the least: a few words of sentence and
# a short JSON answer. A template leaving less can never hold an example uncut.
PROMPT_MARGIN = 32


def check_prompts_fit(cfg: ExperimentConfig, reps: list[GenSplits]) -> None:
    """Refuse a prompt template that cannot fit a model's training ``max_length``.

    ``encode`` cuts an over-long prompt from the left, so training would never see the
    instruction while test decoding (which never cuts) does: ``prompt: full`` lists every slot
    type (~530 SmolLM2 tokens, ~1,600 characters for ATIS). Only the template is checked — the
    prompt of an empty sentence + ``PROMPT_MARGIN``; an unusually long utterance stays the
    counted per-example fallback.
    """
    g = cfg.generation
    toks: dict[str, Any] = {}  # pretrained tokenizers: the same for every replicate
    for sp in reps:
        fixed = build_prompt("", sp.ds.slot_types, g.prompt)
        checks = [("student", cfg.student, "student_train", g.student_train.max_length,
                   "transfer")]
        if set(g.dpo.after) & set(cfg.methods):  # DPO trains the student on its own pairs
            checks.append(("student", cfg.student, "dpo.train", g.dpo.train.max_length,
                           "transfer"))
        for name in cfg.teachers:
            scratch = resolve_model(name).kind == "scratch"
            checks.append(("teacher", name, "scratch.train" if scratch else "teacher_train",
                           (g.scratch.train if scratch else g.teacher_train).max_length, "weak"))
        for who, name, key, max_length, split in checks:
            if key == "scratch.train":  # built from this replicate's weak split, as in training
                tok = build_tokenizer(resolve_model(name).base,  # type: ignore[arg-type]
                                      sp.prompts("weak") + sp.targets("weak"))
            else:
                if name not in toks:
                    toks[name] = load_tokenizer(name)
                tok = toks[name]
            n = len(tok(fixed)["input_ids"])
            if n + PROMPT_MARGIN <= max_length:
                continue
            lens = [len(p) + len(t) + 1 for p, t in zip(
                tok(sp.prompts(split))["input_ids"],
                tok(sp.targets(split), add_special_tokens=False)["input_ids"], strict=True)]
            longest = max(lens, default=0)
            need = math.ceil(max(longest, n + PROMPT_MARGIN) / 64) * 64  # a round number
            raise W2SError(f"{who} {name}: the {g.prompt} prompt takes {n} tokens before the "
                           f"sentence, and generation.{key}.max_length is {max_length}, so "
                           "training would cut the instruction off every prompt",
                           f"set generation.{key}.max_length: {need} (its longest {split} "
                           f"example takes {longest}), or use generation.prompt: short")


def resolved_precision(cfg: ExperimentConfig, device: str) -> str:
    """The students' precision as it resolves on this machine ("auto" differs by hardware,
    so the resolved value, not "auto", enters the run identity)."""
    import torch

    on = _bf16_on(_PRECISION[cfg.generation.student_train.precision], torch.device(device))
    return "bf16" if on else "fp32"


# ---------------------------------------------------------------- teachers
def teacher_identity(cfg: ExperimentConfig, name: str, sp: GenSplits,
                     precision: str) -> dict[str, Any]:
    """What decides a teacher's outputs (hashed into its cache's file name)."""
    g = cfg.generation
    spec = resolve_model(name)
    train = g.scratch if spec.kind == "scratch" else g.teacher_train
    return plain({"teacher": name, "task": "generation", "data_seed": sp.data_seed,
                  "data": {k: v for k, v in dataclasses.asdict(cfg.data).items()
                           if k not in ("seed", "seeds")},
                  "train": dataclasses.asdict(train), "prompt": g.prompt,
                  "num_beams": g.num_beams, "n_best": g.n_best,
                  "max_new_tokens": g.max_new_tokens, "precision": precision})


def gold_examples(sp: GenSplits, split: str) -> list[GenExample]:
    return [GenExample(p, [LabelSeq(t, None)], [1.0])
            for p, t in zip(sp.prompts(split), sp.targets(split), strict=True)]


def new_tokens_cap(cfg: ExperimentConfig, lm: CausalLM, sp: GenSplits) -> int:
    """max_new_tokens for this model: the config's number, or "auto" = the longest weak-split
    target in this model's own tokens × 1.25 + 4 (a character-level model needs ~3× more
    steps than a subword one for the same JSON)."""
    if cfg.generation.max_new_tokens is not None:
        return cfg.generation.max_new_tokens
    enc = encode(lm.tokenizer, [""] * len(sp.idx["weak"]), sp.targets("weak"), max_length=4096)
    longest = max(len(t) for t in enc.target_ids)
    return int(math.ceil(longest * 1.25)) + 4


def train_teacher(cfg: ExperimentConfig, name: str, sp: GenSplits, device: str,
                  log: Callable[[str], None] = print,
                  progress: bool = False) -> tuple[CausalLM, dict[str, Any]]:
    """A weak teacher trained on the weak split's gold targets (hard token CE)."""
    g = cfg.generation
    spec = resolve_model(name)
    seed = sp.data_seed  # teachers differ per replicate, as in classification
    if spec.kind == "scratch":
        corpus = sp.prompts("weak") + sp.targets("weak")
        lm = build_scratch_lm(spec.base, corpus, layers=g.scratch.layers,  # type: ignore[arg-type]
                              hidden=g.scratch.hidden, heads=g.scratch.heads, seed=seed,
                              name=name)
        train = g.scratch.train
    else:
        lm = load_causal(name, device)
        train = g.teacher_train
    lm.model.to(device)
    stats = train_lm(lm, gold_examples(sp, "weak"), LossSpec(kind="ce"), train, seed,
                     progress=progress, log=log, device=device)
    return lm, stats


def decode_teacher(cfg: ExperimentConfig, lm: CausalLM, sp: GenSplits, progress: bool = False,
                   stats: dict[str, dict[str, int]] | None = None
                   ) -> dict[str, list[list[Candidate]]]:
    """split → per-utterance N-best (best first by length-normalised score); ``stats`` gets
    each split's ``nbest`` counts (see ``decode_fields``)."""
    g = cfg.generation
    cap = new_tokens_cap(cfg, lm, sp)
    stats = {} if stats is None else stats
    return {s: nbest(lm, sp.prompts(s), num_beams=g.num_beams, n_best=g.n_best,
                     max_new_tokens=cap, max_length=decode_length(lm, sp, s, cap),
                     batch_size=rows_per_pass(lm.model, 16), progress=progress,
                     stats=stats.setdefault(s, {}))
            for s in SPLITS}


# what stored metrics record of one decoding (``nbest``/``greedy`` stats), so no fallback is
# silent: outputs, those that hit the token cap without EOS (count and rate), prompts cut from
# the left, outputs whose character offsets were rebuilt (``decode.score``)
DECODE_FIELDS = ("outputs", "unfinished", "unfinished_rate", "prompt_truncated",
                 "offset_fallback")
RUN_DECODE_FIELDS = DECODE_FIELDS[:4]  # a student's outputs feed no word bridge: no offsets


def decode_fields(stats: dict[str, int], prefix: str = "",
                  keep: tuple[str, ...] = DECODE_FIELDS) -> dict[str, int | float]:
    n, cut = int(stats.get("outputs", 0)), int(stats.get("unfinished", 0))
    d = {"outputs": n, "unfinished": cut, "unfinished_rate": cut / n if n else 0.0,
         "prompt_truncated": int(stats.get("truncated_prompts", 0)),
         "offset_fallback": int(stats.get("offset_fallback", 0))}
    return {prefix + k: d[k] for k in keep}


def decode_length(lm: CausalLM, sp: GenSplits, split: str, cap: int) -> int:
    """Room for the longest prompt of ``split`` plus ``cap`` new tokens: decoding never cuts a
    prompt (training's max_length may, and counts it)."""
    enc = encode(lm.tokenizer, sp.prompts(split), None, max_length=1 << 16)
    return max(len(p) for p in enc.prompt_ids) + cap + 1  # nbest keeps max_length−cap−1


# test prompts per greedy batch: finished rows leave the batch, so a large batch costs little
# more than its rows' own lengths, while each decoding step has a fixed cost (measured on 2 CPU
# cores: ~0.13 s a step for SmolLM2 whatever the rows, + ~0.01 s a row)
EVAL_BATCH = 64


def decode_test(lm: CausalLM, prompts: list[str], beams: int, cap: int, length: int,
                stats: dict[str, int]) -> tuple[list[str], list[Candidate]]:
    """A student's test outputs and its own scores of them. Greedy (``beams`` 1) drops rows at
    EOS, so a looping row no longer stalls the rest; its texts are then scored as a teacher's
    candidates are (text + EOS, teacher forcing): one forward pass, against ``cap`` steps."""
    if beams == 1:
        texts = greedy(lm, prompts, max_new_tokens=cap, max_length=length,
                       batch_size=rows_per_pass(lm.model, EVAL_BATCH), stats=stats)
        own = [c[0] for c in score(lm, prompts, [[t] for t in texts],
                                   batch_size=rows_per_pass(lm.model, 16), max_length=length + 1)]
        return texts, own
    out = nbest(lm, prompts, num_beams=beams, n_best=1, max_new_tokens=cap, max_length=length,
                batch_size=rows_per_pass(lm.model, 16), stats=stats)
    own = [c[0] if c else score(lm, [p], [[""]], max_length=length + 1)[0][0]
           for p, c in zip(prompts, out, strict=True)]
    return [c.text for c in own], own


def teacher_model_dir(root: Path, stem: str) -> Path:
    return root / "teachers" / stem


def reload_teacher(folder: Path, name: str, device: str) -> CausalLM:
    return load_saved(folder, name, device)


def store_teacher(lm: CausalLM, folder: Path) -> None:
    save_causal(lm, folder)


def score_pool(lm: CausalLM, sp: GenSplits, pooled: dict[str, list[list[str]]],
               max_length: int) -> dict[str, list[list[Candidate]]]:
    """One teacher's teacher-forced scores of every pooled candidate (joint decoding, DPO)."""
    return {s: score(lm, sp.prompts(s), pooled[s], max_length=max_length,
                     batch_size=rows_per_pass(lm.model, 16)) for s in pooled}


def score_length(lm: CausalLM, sp: GenSplits, texts: dict[str, list[list[str]]]) -> int:
    """Room for the longest prompt + candidate under this teacher's tokenizer."""
    tok = lm.tokenizer
    longest_p = max(len(p) for s in texts for p in encode(
        tok, sp.prompts(s), None, max_length=1 << 16).prompt_ids)
    longest_t = max((len(tok(t, add_special_tokens=False)["input_ids"]) for s in texts
                     for cands in texts[s] for t in cands), default=0)
    return longest_p + longest_t + 1
