"""The generation (slot filling) part of an experiment config: ``task: generation``.

``GenerationConfig`` fixes what the teachers' outputs and the students' training depend on (it
is part of the experiment id); ``GenOptions`` are the method options that may vary between
sweeps of one experiment (they enter each run's setting hash, like ``MethodOptions``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from w2s_core.errors import W2SError
from w2s_core.methods.gen_methods import JOINT_SCORES
from w2s_core.training.lm_dpo import DPOConfig
from w2s_core.training.lm_train import LMTrainConfig

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
