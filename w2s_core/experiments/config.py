"""One typed config per experiment; run configs derived from it are hashed into run ids."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from w2s_core.catalog import Task, gen_methods
from w2s_core.data.schema import DataConfig
from w2s_core.errors import W2SError
from w2s_core.experiments.gen_config import GEN_TEACHERS, GenerationConfig, GenOptions, check_config
from w2s_core.experiments.runspec import config_hash, plain
from w2s_core.methods.registry import METHODS, MethodOptions
from w2s_core.models.registry import resolve_model
from w2s_core.training.finetune import FinetuneConfig
from w2s_core.training.probe import ProbeConfig

Mode = Literal["probe", "full", "lora"]
DEMO_TEACHERS = ("tfidf-logreg", "minilm-l3", "minilm-l6", "mpnet-2l", "mpnet-4l")


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines an experiment. ``device`` and ``feature_batch_size`` cannot change
    results and are left out of every hash."""

    name: str = "experiment"
    task: Task = "classification"
    data: DataConfig = field(default_factory=DataConfig)
    teachers: tuple[str, ...] = DEMO_TEACHERS
    student: str = "mpnet-base"
    teacher_mode: Mode = "probe"
    student_mode: Mode = "probe"
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    precision: str = "auto"  # feature extraction: auto (bf16 where fast) | fp32
    methods: tuple[str, ...] = tuple(METHODS.names())
    aux: tuple[bool, ...] = (False, True)
    seeds: tuple[int, ...] = (0, 1, 2)
    max_subsets: int | None = None  # sample this many teacher subsets (seeded) when K is large
    sizes: tuple[int, ...] | None = None  # subset sizes K to run (None = 1..len(teachers))
    # per method, the sizes K it runs at (a method not named runs at every K it applies to),
    # e.g. {bayes: [3]}: no Bayesian single-teacher runs, where a budget has no room for them
    method_sizes: dict[str, tuple[int, ...]] | None = None
    subset_seed: int = 0
    options: MethodOptions = field(default_factory=MethodOptions)
    device: str = "auto"
    feature_batch_size: int = 64
    # task: generation (slot filling): its fixed settings and its per-sweep method options
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    gen_options: GenOptions = field(default_factory=GenOptions)

    def __post_init__(self) -> None:
        """A generation experiment that leaves teachers, student, methods or data unset gets
        the generation defaults, not the classification ones (set before any id is taken)."""
        if self.method_sizes is not None:  # YAML gives lists: one value, one form, one hash
            object.__setattr__(self, "method_sizes", {
                str(m): tuple(k) if isinstance(k, (list, tuple)) else k
                for m, k in dict(self.method_sizes).items()})
        if self.task != "generation":
            return
        defaults = ExperimentConfig.__dataclass_fields__
        swap = {"teachers": (DEMO_TEACHERS, GEN_TEACHERS), "student": ("mpnet-base",
                                                                       "smollm2-135m"),
                "methods": (defaults["methods"].default, GEN_METHOD_NAMES)}
        for key, (cls_default, gen_default) in swap.items():
            if getattr(self, key) == cls_default:
                object.__setattr__(self, key, gen_default)
        if self.data.name == DataConfig.name:
            object.__setattr__(self, "data", dataclasses.replace(self.data, name="atis-slots"))

    # ------------------------------------------------------------ validation
    def validate(self) -> ExperimentConfig:
        if self.task not in ("classification", "generation"):
            raise W2SError(f"unknown task {self.task!r}", "use classification or generation")
        if self.task == "generation":
            return self._validate_generation()
        if not self.teachers:
            raise W2SError("no teachers given (K = 0)", "list at least one teacher model")
        dup = sorted({t for t in self.teachers if self.teachers.count(t) > 1})
        if dup:
            raise W2SError(f"teacher named twice: {', '.join(dup)}",
                           "list each teacher once (use a truncated variant for a second copy)")
        from w2s_core.catalog import datasets

        task_of = {d.name: d.task for d in datasets()}
        if task_of.get(self.data.name, "classification") != "classification":
            raise W2SError(f"'{self.data.name}' is a {task_of[self.data.name]} data set",
                           "set task: generation, or pick a classification data set")
        if self.data.name not in task_of:  # caught here, not after the teachers trained
            known = [n for n, t in task_of.items() if t == "classification"]
            raise W2SError(f"unknown dataset {self.data.name!r}", f"use one of {', '.join(known)}")
        given = self.given_teachers()
        if given and self.data.name != "file":
            raise W2SError(f"data.weak_labels needs the 'file' dataset, not '{self.data.name}'",
                           "set data.name: file and data.path to your CSV/JSONL")
        for name in (*[t for t in self.teachers if t not in given], self.student):
            resolve_model(name)
        if self.student in given:
            raise W2SError(f"'{self.student}' is a given weak-label column, not a model",
                           "pick a model as the student")
        seeds = self.data.replicate_seeds()
        if len(set(seeds)) != len(seeds):
            raise W2SError(f"data.seeds repeats a seed: {list(seeds)}", "list each seed once")
        for m in self.methods:
            METHODS.get(m)
        if not self.methods:
            raise W2SError("no methods given", f"pick from {', '.join(METHODS.names())}")
        if not self.seeds:
            raise W2SError("no seeds given", "give at least one seed, e.g. seeds: [0]")
        self._validate_sizes()
        for mode in (self.teacher_mode, self.student_mode):
            if mode not in ("probe", "full", "lora"):
                raise W2SError(f"unknown training mode '{mode}'", "use probe, full or lora")
        if self.student_mode != "probe" and resolve_model(self.student).kind == "tfidf":
            raise W2SError("tfidf-logreg cannot be fine-tuned", "use student_mode: probe")
        w = self.options.weights
        if not isinstance(w, str) and len(w) != len(self.teachers):
            raise W2SError(f"{len(w)} teacher weights given for {len(self.teachers)} teachers",
                           "give one weight per teacher, in the order of `teachers`")
        if not isinstance(w, str) and any(not x > 0 for x in w):
            # a zero weight leaves that teacher's one-teacher subsets with no label at all
            raise W2SError(f"teacher weights {list(w)} include one ≤ 0",
                           "give every teacher a weight > 0 (drop a teacher from teachers to "
                           "leave it out)")
        if isinstance(w, str) and w not in ("uniform", "ds"):
            raise W2SError(f"unknown teacher weighting '{w}'", "use uniform, ds or a list")
        if self.options.evidence not in ("exp", "softplus", "relu"):
            raise W2SError(f"unknown evidence function '{self.options.evidence}'",
                           "use exp, softplus or relu")
        return self

    def _validate_sizes(self) -> None:
        n = len(self.teachers)
        bad = [k for k in self.sizes or () if not 1 <= k <= n]
        if self.sizes is not None and (bad or not self.sizes or
                                       len(set(self.sizes)) != len(self.sizes)):
            raise W2SError(f"sizes {list(self.sizes)} must be distinct teacher counts in 1..{n}",
                           f"e.g. sizes: [1, {n}], or leave it unset for every K")
        ks = set(self.sizes or range(1, n + 1))
        from w2s_core.catalog import gen_methods, methods

        info = {i.name: i for i in (gen_methods() if self.task == "generation" else methods())}
        for m, want in (self.method_sizes or {}).items():
            if m not in self.methods:
                raise W2SError(f"method_sizes names {m!r}, which is not in methods",
                               f"use one of {', '.join(self.methods)}")
            if not isinstance(want, tuple) or not want or not all(
                    isinstance(k, int) and k in ks for k in want):
                raise W2SError(f"method_sizes.{m} = {want!r} must list sizes K run by this "
                               f"experiment ({sorted(ks)})", f"e.g. method_sizes: {{{m}: "
                               f"[{max(ks)}]}}")
            bad = [k for k in want if not info[m].applies_to(k)]
            if bad:  # a K where the method is not defined would silently run nothing
                ok = [k for k in sorted(ks) if info[m].applies_to(k)]
                raise W2SError(f"method_sizes.{m} lists K = {bad}, where {m} does not apply",
                               f"use K in {ok}" if ok else f"drop {m} from methods")

    def runs_at(self, method: str, k: int) -> bool:
        """Whether ``method`` runs on subsets of ``k`` teachers under ``method_sizes`` (its own
        applicability, e.g. single-* only at K = 1, is the method registry's rule)."""
        return self.method_sizes is None or k in self.method_sizes.get(method, (k,))

    def _validate_generation(self) -> ExperimentConfig:
        from w2s_core.catalog import datasets

        if not self.teachers:
            raise W2SError("no teachers given (K = 0)", "list at least one causal LM teacher")
        dup = sorted({t for t in self.teachers if self.teachers.count(t) > 1})
        if dup:
            raise W2SError(f"teacher named twice: {', '.join(dup)}", "list each teacher once")
        task_of = {d.name: d.task for d in datasets()}
        if self.data.name not in task_of:
            gen = [n for n, t in task_of.items() if t == "generation"]
            raise W2SError(f"unknown dataset {self.data.name!r}",
                           f"use one of {', '.join(gen)} with task: generation")
        if task_of[self.data.name] != "generation":
            raise W2SError(f"'{self.data.name}' is a classification data set",
                           "use atis-slots, slurp or slots-file with task: generation")
        if self.data.weak_labels:
            raise W2SError("given weak labels are for classification only",
                           "drop data.weak_labels, or set task: classification")
        for name in self.teachers:
            if resolve_model(name).kind in ("encoder", "tfidf") and name in _registry_names():
                raise W2SError(f"'{name}' is not a causal LM", f"use e.g. {', '.join(GEN_TEACHERS)}"
                               " or an HF causal LM id/path")
        student = resolve_model(self.student)
        if self.student in _registry_names() and student.kind != "causal":
            raise W2SError(f"student '{self.student}' is not a pretrained causal LM",
                           "use smollm2-135m or an HF causal LM id/path")
        names = set(GEN_METHOD_NAMES)
        bad = [m for m in self.methods if m not in names]
        if bad or not self.methods:
            raise W2SError(f"unknown generation method(s): {', '.join(bad) or '(none)'}",
                           f"pick from {', '.join(GEN_METHOD_NAMES)}")
        if not self.seeds:
            raise W2SError("no seeds given", "give at least one seed, e.g. seeds: [0]")
        self._validate_sizes()
        seeds = self.data.replicate_seeds()
        if len(set(seeds)) != len(seeds):
            raise W2SError(f"data.seeds repeats a seed: {list(seeds)}", "list each seed once")
        for m in self.generation.dpo.after:
            if m not in names:
                raise W2SError(f"generation.dpo.after names unknown method {m!r}",
                               f"pick from {', '.join(GEN_METHOD_NAMES)}")
        check_config(self)
        self.generation.validate()
        self.gen_options.validate(len(self.teachers))
        return self

    def given_teachers(self) -> tuple[str, ...]:
        """Teachers that are the user's own weak-label columns (no model, no training)."""
        return tuple(t for t in self.teachers if t in self.data.given_teachers())

    # ------------------------------------------------------------ identity
    def to_dict(self) -> dict[str, Any]:
        return plain(dataclasses.asdict(self))

    def experiment_key(self) -> dict[str, Any]:
        """What determines the teachers' labels and the student's features. The data seeds are
        not part of it: each seed is a replicate inside the experiment (its runs carry
        ``data_seed``), so adding replicates extends the same experiment."""
        d = self.to_dict()
        if self.task == "generation":
            # dpo settings only enter the DPO runs' own specs; the rest fixes teachers/students
            gen = {k: v for k, v in d["generation"].items() if k != "dpo"}
            out = {"task": "generation", "data": d["data"], "teachers": d["teachers"],
                   "student": d["student"], "generation": gen}
            out["data"] = {k: v for k, v in out["data"].items() if k not in ("seed", "seeds")}
            return out
        keep = ("data", "teachers", "student", "teacher_mode", "student_mode", "probe",
                "finetune", "precision")
        out = {k: d[k] for k in keep}
        out["data"] = {k: v for k, v in out["data"].items() if k not in ("seed", "seeds")}
        out["finetune"] = result_fields(out["finetune"])
        return out

    def experiment_id(self) -> str:
        return f"{_slug(self.name)}-{config_hash(self.experiment_key())}"


GEN_METHOD_NAMES = tuple(m.name for m in gen_methods())


def _registry_names() -> set[str]:
    from w2s_core.models.registry import MODELS

    return set(MODELS.names())


# FinetuneConfig fields that cannot change results: never part of a hash
NON_RESULT_FIELDS = ("device", "progress", "eval_batch_size", "gradient_checkpointing")


def result_fields(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in NON_RESULT_FIELDS}


def _slug(name: str) -> str:
    s = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name.strip().lower())
    return s.strip("-") or "experiment"


def demo_config(quick: bool = False, task: str = "classification") -> ExperimentConfig:
    """The embedded default experiment: tweets, five teachers, MPNet-base student; or, for
    ``task="generation"``, ATIS slot filling with three causal-LM teachers of three tokenizers
    and the SmolLM2-135M student."""
    if task == "generation":
        return gen_demo_config(quick)
    if quick:
        return ExperimentConfig(name="demo-quick",
                                data=DataConfig("tweets", n_weak=1000, n_transfer=1000,
                                                n_test=1000),
                                seeds=(0, 1))
    return ExperimentConfig(name="demo")


def gen_demo_config(quick: bool = False) -> ExperimentConfig:
    """ATIS slot filling; teachers gpt-char, gpt-word and gpt-bpe (trained from scratch, three
    tokenizers); student SmolLM2-135M. quick: a smoke run of the whole pipeline sized for 15 min
    on a 2-core CPU without bf16 units — 128/24/16 utterances, 3 beams, one seed, no aux; every
    method once: the single-teacher methods at K = 1, the multi-teacher and Bayesian ones at
    K = 3; the student 6 steps of 4 utterances per run; (c)DPO with each ε after bayes (the
    paper's protocol) on 8 prompts for one epoch. Its SLU-F1 values are a smoke test, not evidence:
    ``configs/gen-cpu-study.yaml`` is the larger CPU study (128/64/48)."""
    if not quick:
        return ExperimentConfig(name="gen-demo", task="generation",
                                data=DataConfig("atis-slots", n_weak=500, n_transfer=500,
                                                n_test=300), seeds=(0, 1, 2))
    g = GenerationConfig()
    scratch = dataclasses.replace(g.scratch, hidden=96, train=dataclasses.replace(
        g.scratch.train, epochs=12.0))
    gen = dataclasses.replace(
        g, num_beams=3, n_best=3, scratch=scratch,
        teacher_train=dataclasses.replace(g.teacher_train, epochs=2.0),
        student_train=dataclasses.replace(g.student_train, epochs=1.0, lr=3e-4, batch_size=4),
        dpo=dataclasses.replace(g.dpo, max_prompts=8, beams=4,
                                train=dataclasses.replace(g.dpo.train, epochs=1.0)))
    return ExperimentConfig(name="gen-demo-quick", task="generation",
                            data=DataConfig("atis-slots", n_weak=128, n_transfer=24,
                                            n_test=16),
                            seeds=(0,), aux=(False,), max_subsets=1, sizes=(1, 3),
                            method_sizes={"bayes": (3,), "bayes-restricted": (3,)},
                            generation=gen)
