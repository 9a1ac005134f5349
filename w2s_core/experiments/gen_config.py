"""The generation (slot filling) part of an experiment config: ``task: generation``.

``GenerationConfig`` fixes what the teachers' outputs and the students' training depend on (it
is part of the experiment id); ``GenOptions`` are the method options that may vary between
sweeps of one experiment (they enter each run's setting hash, like ``MethodOptions``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from w2s_core.errors import W2SError
from w2s_core.methods.gen_methods import JOINT_SCORES
from w2s_core.training.lm_dpo import DPOConfig
from w2s_core.training.lm_train import LMTrainConfig

if TYPE_CHECKING:  # config.py imports this module: the type only, at check time
    from w2s_core.experiments.config import ExperimentConfig

# three tokenizers, none the student's: the word bridge always runs across vocabularies.
# smollm2-4l (SmolLM2 cut to 4 layers) stays available as a teacher, but measured here it
# learnt no JSON in the quick demo's budget (SLU-F1 0.000 after 2 epochs on 128 utterances,
# 9 minutes on 2 cores), so the demo uses the cheap scratch-trained teachers.
GEN_TEACHERS = ("gpt-char", "gpt-word", "gpt-bpe")
EpsMode = float | Literal["confidence"]


@dataclass(frozen=True)
class ScratchConfig:
    """Teachers trained from scratch (``gpt-word``, ``gpt-char``): a small Llama per teacher."""

    layers: int = 2
    hidden: int = 128
    heads: int = 4
    # one token per character: sequences ~3x longer than a subword model's, hence max_length
    train: LMTrainConfig = field(default_factory=lambda: LMTrainConfig(
        epochs=30.0, lr=2e-3, batch_size=16, warmup=0.05, max_length=768))


@dataclass(frozen=True)
class DPOSettings:
    """(c)DPO after transfer (METHOD.md §3): the student's ``beams`` beams per transfer prompt,
    scored by the run's weak ensemble; chosen = best, rejected = worst. One DPO run per ε in
    ``eps`` (0 = DPO, a constant = cDPO, "confidence" = per-pair ε from the ensemble's Beta
    posterior) after each transfer run of a method in ``after`` on the FULL teacher set."""

    after: tuple[str, ...] = ("bayes",)
    eps: tuple[EpsMode, ...] = (0.0, 0.1, "confidence")
    beams: int = 10
    max_prompts: int | None = None  # cap the transfer prompts used for pairs (seeded sample)
    train: DPOConfig = field(default_factory=DPOConfig)


@dataclass(frozen=True)
class GenerationConfig:
    prompt: Literal["short", "full"] = "short"
    num_beams: int = 5  # teachers' beam search
    n_best: int = 5  # N-best kept per utterance (pooled by joint decoding)
    # None = "auto": the longest weak-split target in the model's own tokens + 25 % + 4, so a
    # character-level teacher gets room for its ~3x longer outputs; a number caps every model
    max_new_tokens: int | None = None
    eval_beams: int = 1  # students' test decoding (1 = greedy: a 5-beam search costs ~5x)
    teacher_train: LMTrainConfig = field(default_factory=lambda: LMTrainConfig(
        epochs=3.0, lr=3e-4, batch_size=16))
    student_train: LMTrainConfig = field(default_factory=lambda: LMTrainConfig(
        epochs=2.0, lr=1e-4, batch_size=8))
    scratch: ScratchConfig = field(default_factory=ScratchConfig)
    dpo: DPOSettings = field(default_factory=DPOSettings)

    def validate(self) -> None:
        if self.prompt not in ("short", "full"):
            raise W2SError(f"unknown prompt style {self.prompt!r}", "use prompt: short or full")
        if self.num_beams < 1 or not 1 <= self.n_best <= self.num_beams:
            raise W2SError(f"n_best={self.n_best} must be between 1 and num_beams="
                           f"{self.num_beams}", "e.g. num_beams: 5, n_best: 5")
        if self.max_new_tokens is not None and self.max_new_tokens < 4:
            raise W2SError(f"max_new_tokens={self.max_new_tokens} cannot hold a JSON answer",
                           "use ≥ 16, or leave it unset (auto)")
        for e in self.dpo.eps:
            if e != "confidence" and not (isinstance(e, (int, float)) and 0 <= e < 0.5):
                raise W2SError(f"DPO ε {e!r} must be a number in [0, 0.5) or 'confidence'",
                               "use 0 (DPO), 0.1 (the paper's cDPO) or confidence")
        if self.dpo.after and not self.dpo.eps:  # gen_runs.plan makes one DPO run per ε
            raise W2SError(f"generation.dpo.after {list(self.dpo.after)} with no dpo.eps plans "
                           "no DPO run", "list eps, e.g. [0, 0.1, confidence], or set "
                           "generation.dpo.after: []")
        if self.dpo.beams < 2:
            raise W2SError("DPO needs ≥ 2 student beams to pick a chosen and a rejected output",
                           "use dpo.beams: 10 (the paper)")


@dataclass(frozen=True)
class GenOptions:
    """Generation method options; saved in every generation run's config and hashed.

    lam: teacher weights λ_k — "mean" (1/K), "dynamic" (per utterance, softmax over teachers
    of their mean word log-prob), or one number per teacher (fixed). target_mode/split/
    temperature: the word bridge (METHOD.md §3). support: the restricted Dirichlet's top-k.
    joint_score: how joint decoding scores a pooled candidate (``gen_methods.joint_matrix``):
    sum (the paper's summed log-likelihood), per_char or per_token (length-normalised).
    """

    lam: str | tuple[float, ...] = "mean"
    target_mode: Literal["detached", "frozen", "live"] = "detached"
    split: Literal["softmax", "equal"] = "softmax"
    temperature: float = 1.0
    support: int = 16
    joint_score: str = "sum"
    evidence: str = "exp"
    kl_scale: float = 1e-4
    aux_max: float = 0.3
    aux_warmup: float = 0.2

    def validate(self, n_teachers: int) -> None:
        if isinstance(self.lam, str):
            if self.lam not in ("mean", "dynamic"):
                raise W2SError(f"unknown gen_options.lam {self.lam!r}",
                               "use mean, dynamic or one weight per teacher")
        elif len(self.lam) != n_teachers:
            raise W2SError(f"gen_options.lam gives {len(self.lam)} weights for {n_teachers} "
                           "teachers", "give one weight > 0 per teacher, in teachers' order")
        elif any(not x > 0 for x in self.lam):
            # a zero weight leaves that teacher's one-teacher subsets with no label at all
            raise W2SError(f"gen_options.lam {list(self.lam)} has a weight ≤ 0",
                           "give every teacher a weight > 0 (drop a teacher from teachers "
                           "to leave it out)")
        if self.target_mode not in ("detached", "frozen", "live"):
            raise W2SError(f"unknown target_mode {self.target_mode!r}",
                           "use detached, frozen or live")
        if self.split not in ("softmax", "equal"):
            raise W2SError(f"unknown split {self.split!r}", "use softmax or equal")
        if not self.temperature > 0:
            raise W2SError(f"temperature must be > 0, got {self.temperature}", "use 1.0 or 0.3")
        if self.support < 1:
            raise W2SError(f"support must be ≥ 1, got {self.support}", "use e.g. 16")
        if self.joint_score not in JOINT_SCORES:
            raise W2SError(f"unknown joint_score {self.joint_score!r}",
                           "use sum (the paper), per_char or per_token")
        if self.evidence not in ("exp", "softplus", "relu"):
            raise W2SError(f"unknown evidence {self.evidence!r}", "use exp, softplus or relu")


# ---------------------------------------------------------------- checks of a whole config
# Classification settings nothing in generation reads (gen_*.py, training/lm_*.py and the
# sweep's generation branch take every knob from ``generation`` and ``gen_options``; the sweep's
# precision is generation.student_train.precision resolved): field → the generation setting
# that does its job, or the reason there is none. A changed value would otherwise be accepted
# and silently not be the experiment the user asked for.
_TRAIN_TWIN = "set generation.student_train.{0} instead (generation.teacher_train.{0} and " \
              "generation.scratch.train.{0} for the teachers)"
_FINETUNE_FIX = {
    **{f: _TRAIN_TWIN.format(f) for f in ("lr", "epochs", "batch_size", "weight_decay",
                                          "lora_r", "lora_alpha", "lora_dropout", "grad_clip")},
    "warmup_frac": _TRAIN_TWIN.format("warmup"), "bf16": _TRAIN_TWIN.format("precision"),
    "mode": "set generation.student_train.lora: true for LoRA (full fine-tuning is the default)",
    "device": "set the top-level device instead",
}
_OPTIONS_FIX = {"evidence": "set gen_options.evidence instead",
                "kl_scale": "set gen_options.kl_scale instead",
                "aux_max": "set gen_options.aux_max instead",
                "aux_warmup": "set gen_options.aux_warmup instead",
                "weights": "set gen_options.lam instead (mean, dynamic or one weight per teacher)",
                "aux_schedule": "drop it: generation's aux weight always ramps linearly "
                                "(gen_options.aux_warmup)"}
_NO_TWIN = "drop it: generation has no such setting"


def check_config(cfg: ExperimentConfig) -> None:
    """The generation checks that need the whole experiment config, not the block alone."""
    check_dpo_planned(cfg)
    refuse_classification_settings(cfg)


def refuse_classification_settings(cfg: ExperimentConfig) -> None:
    """One line for the first classification-only setting a generation config changes."""
    bad = next(_ignored(cfg), None)
    if bad is not None:
        raise W2SError(f"{bad[0]} is a classification setting that task: generation ignores",
                       bad[1])


def _ignored(cfg: ExperimentConfig) -> Iterator[tuple[str, str]]:
    base = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(cfg)}  # the classification defaults
    for key, train, who in (("student_mode", "student_train", "student is"),
                            ("teacher_mode", "teacher_train", "teachers are")):
        mode = getattr(cfg, key)
        if mode != base[key]:
            yield f"{key}: {mode}", (f"set generation.{train}.lora: true instead" if mode == "lora"
                                     else f"drop it: a generation {who} always fine-tuned "
                                          f"(generation.{train})")
    if cfg.precision != base["precision"]:
        yield f"precision: {cfg.precision}", _TRAIN_TWIN.format("precision")
    if cfg.probe != base["probe"]:
        yield "probe", "drop it: generation students are fine-tuned causal LMs, never probes"
    for name in _changed(cfg.finetune, base["finetune"]):
        yield f"finetune.{name}", _FINETUNE_FIX.get(name, _NO_TWIN)
    for name in _changed(cfg.options, base["options"]):
        yield f"options.{name}", _OPTIONS_FIX.get(name, _NO_TWIN)
    data = type(cfg.data)()
    if cfg.data.max_length != data.max_length:
        yield "data.max_length", _TRAIN_TWIN.format("max_length")
    if cfg.data.truncation_side != data.truncation_side:
        yield "data.truncation_side", ("drop it: a generation prompt always loses tokens from "
                                       "the left, so its end stays next to the answer")


def _changed(value: Any, default: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(value)
            if getattr(value, f.name) != getattr(default, f.name)]


def check_dpo_planned(cfg: ExperimentConfig) -> None:
    """``gen_runs.plan`` puts (c)DPO runs only after a ``dpo.after`` method's run on the FULL
    teacher set without aux: a config where that run never exists would plan none, silently.

    The default ``after: [bayes]`` reads "after bayes, where bayes runs": a config (or a suite
    item, e.g. ``methods: [joint]``) without bayes is fine. A method named in ``dpo.after`` that
    is in ``methods`` must reach that run; any other ``dpo.after`` must name listed methods.
    """
    from w2s_core.catalog import gen_methods

    after, n = cfg.generation.dpo.after, len(cfg.teachers)
    off = "or set generation.dpo.after: []"
    info = {i.name: i for i in gen_methods()}
    for m in after:
        if m not in cfg.methods:
            if after != DPOSettings().after:
                raise W2SError(f"generation.dpo.after names {m}, which is not in methods, so "
                               f"no DPO run is planned", f"add {m} to methods, {off}")
            continue
        why = f"generation.dpo.after: {m} plans no DPO run: DPO follows {m}'s runs on the " \
              f"full teacher set (K = {n}) without aux,"
        if cfg.sizes is not None and n not in cfg.sizes:
            raise W2SError(f"{why} and sizes {list(cfg.sizes)} leave out K = {n}",
                           f"add {n} to sizes, {off}")
        if not info[m].applies_to(n):
            raise W2SError(f"{why} and {m} does not apply at K = {n}",
                           f"name a method that runs at K = {n} (e.g. bayes), {off}")
        if not cfg.runs_at(m, n):
            ks = list((cfg.method_sizes or {})[m])  # runs_at is only False when it lists m
            raise W2SError(f"{why} and method_sizes.{m} {ks} leaves out K = {n}",
                           f"add {n} to method_sizes.{m}, {off}")
        if all(cfg.aux):
            raise W2SError(f"{why} and aux {list(cfg.aux)} has no false",
                           f"add false to aux, {off}")
