"""Generation configs that would silently not be the experiment asked for are refused, in one
line naming the problem and the fix: classification-only settings (nothing in generation reads
them), a ``dpo.after`` that plans no DPO run, and a prompt template that cannot fit a model's
training ``max_length`` (training would cut the instruction off, test decoding would not)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from w2s_core.data.prompts import build_prompt, format_slots
from w2s_core.data.registry import load_slot_dataset
from w2s_core.data.schema import DataConfig
from w2s_core.errors import W2SError
from w2s_core.experiments import gen_protocol as gp
from w2s_core.experiments.config import ExperimentConfig, demo_config
from w2s_core.experiments.config_files import load_config, load_configs
from w2s_core.experiments.gen_config import DPOSettings, GenerationConfig
from w2s_core.experiments.gen_runs import GenerationRuns
from w2s_core.methods.registry import MethodOptions
from w2s_core.training.finetune import FinetuneConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _one_line(err: pytest.ExceptionInfo[W2SError]) -> str:
    msg = str(err.value)
    assert "\n" not in msg and " — " in msg  # the problem, then the fix
    return msg


# ---------------------------------------------------------------- classification-only settings
@pytest.mark.parametrize(("yaml", "key", "fix"), [
    ("student_mode: lora", "student_mode: lora", "generation.student_train.lora: true"),
    ("student_mode: full", "student_mode: full", "drop it"),
    ("teacher_mode: lora", "teacher_mode: lora", "generation.teacher_train.lora: true"),
    ("teacher_mode: full", "teacher_mode: full", "drop it"),
    ("precision: fp32", "precision: fp32", "generation.student_train.precision"),
    ("options: {kl_scale: 0.5}", "options.kl_scale", "gen_options.kl_scale"),
    ("options: {evidence: softplus}", "options.evidence", "gen_options.evidence"),
    ("options: {weights: ds}", "options.weights", "gen_options.lam"),
    ("finetune: {lr: 0.5}", "finetune.lr", "generation.student_train.lr"),
    ("finetune: {warmup_frac: 0.2}", "finetune.warmup_frac", "generation.student_train.warmup"),
    ("finetune: {mode: lora}", "finetune.mode", "generation.student_train.lora: true"),
    ("probe: {epochs: 3}", "probe", "drop it"),
    ("data: {max_length: 512}", "data.max_length", "generation.student_train.max_length"),
    ("data: {truncation_side: left}", "data.truncation_side", "drop it"),
])
def test_a_classification_only_setting_in_a_generation_yaml_is_refused(tmp_path, yaml, key,
                                                                       fix):
    p = tmp_path / "g.yaml"
    p.write_text(f"task: generation\nseeds: [0]\n{yaml}\n")
    with pytest.raises(W2SError) as err:
        load_config(p)
    msg = _one_line(err)
    assert msg.startswith(f"{key} is a classification setting that task: generation ignores")
    assert fix in msg.split(" — ", 1)[1]
    # the same setting is what a classification config is for: still accepted there
    q = tmp_path / "c.yaml"
    q.write_text(f"seeds: [0]\nteachers: [minilm-l3]\n{yaml}\n")
    assert load_config(q).task == "classification"


def test_classification_defaults_written_out_in_a_generation_yaml_are_fine(tmp_path):
    p = tmp_path / "g.yaml"
    p.write_text("task: generation\nseeds: [0]\nstudent_mode: probe\nprecision: auto\n"
                 "options: {kl_scale: 1.0}\ndata: {max_length: 128, truncation_side: auto}\n")
    assert load_config(p).task == "generation"


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"finetune": FinetuneConfig(gradient_checkpointing=True)}, "finetune.gradient_checkpointing"),
    ({"options": MethodOptions(aux_schedule="legacy")}, "options.aux_schedule"),
    ({"finetune": FinetuneConfig(epochs=3.0, lr=0.5)}, "finetune.lr"),  # one line, first found
])
def test_settings_without_a_generation_twin_say_so(kwargs: dict, key: str):
    with pytest.raises(W2SError, match=re.escape(key) + " is a classification setting"):
        ExperimentConfig(task="generation", **kwargs).validate()


def test_every_shipped_generation_config_still_loads():
    files = sorted(CONFIGS.glob("gen-*.yaml"))
    assert len(files) >= 5  # the glob found the shipped configs: this test is not vacuous
    for f in files:
        assert all(c.task == "generation" for c in load_configs(f)), f.name
    for quick in (False, True):
        assert demo_config(quick, "generation").validate().task == "generation"


# ---------------------------------------------------------------- DPO planned away
def _dpo_runs(cfg: ExperimentConfig) -> int:
    """DPO runs ``gen_runs.plan`` makes for ``cfg``, validation bypassed (a bare sweep)."""
    sw = SimpleNamespace(cfg=cfg, exp=SimpleNamespace(id="e"), meta={}, precision="fp32",
                         record_settings=lambda *_a: None)
    runs = GenerationRuns(sw, SimpleNamespace(data_seed=0, pairs=lambda _s: []), None,
                          "cpu")  # type: ignore[arg-type]
    return sum(len(kids) for _, kids in runs.plan())


def _dpo(**kw: Any) -> GenerationConfig:
    return GenerationConfig(dpo=DPOSettings(**kw))


@pytest.mark.parametrize(("kwargs", "words", "planned"), [
    ({"aux": (True,)}, r"bayes's runs on the full teacher set \(K = 3\) without aux, and aux "
                       r"\[True\] has no false — add false to aux", 0),
    ({"sizes": (1, 2)}, r"sizes \[1, 2\] leave out K = 3 — add 3 to sizes", 0),
    ({"methods": ("bayes",), "generation": _dpo(after=("naive-soft",))},
     r"dpo.after names naive-soft, which is not in methods.*add naive-soft to methods", 0),
    ({"method_sizes": {"bayes": (1,)}}, r"method_sizes.bayes \[1\] leaves out K = 3", 0),
    ({"generation": _dpo(after=("single-hard",))}, "single-hard does not apply at K = 3", 0),
    ({"generation": _dpo(eps=())}, "no dpo.eps plans no DPO run", 0),
    # one method of two planned away: bayes's DPO runs (3 seeds × 3 ε) hide the gap
    ({"methods": ("bayes", "joint"), "generation": _dpo(after=("bayes", "naive-soft"))},
     "naive-soft, which is not in methods", 9),
])
def test_a_dpo_after_that_plans_no_dpo_run_is_refused(kwargs: dict, words: str, planned: int):
    cfg = ExperimentConfig(task="generation", **kwargs)
    with pytest.raises(W2SError, match=words) as err:
        cfg.validate()
    assert "generation.dpo.after: []" in _one_line(err)  # the other way out, always named
    assert _dpo_runs(cfg) == planned  # what validation guards against: runs planned away


@pytest.mark.parametrize("kwargs", [
    {},  # bayes at K = 3, ± aux
    {"aux": (True, False), "sizes": (1, 3), "method_sizes": {"bayes": (3,)}},
    {"methods": ("naive-soft", "bayes"), "generation": _dpo(after=("naive-soft", "bayes"))},
])
def test_a_dpo_after_that_reaches_its_run_plans_dpo(kwargs: dict):
    cfg = ExperimentConfig(task="generation", **kwargs).validate()
    after = cfg.generation.dpo.after
    assert _dpo_runs(cfg) == len(after) * len(cfg.seeds) * len(cfg.generation.dpo.eps)


def test_the_default_dpo_after_is_only_where_bayes_runs():
    """A config (or a suite item) without bayes keeps the default ``after: [bayes]`` and plans
    no DPO, as configs/gen-target-modes.yaml does; switching DPO off always passes."""
    cfg = ExperimentConfig(task="generation", methods=("joint",)).validate()
    assert cfg.generation.dpo.after == DPOSettings().after and _dpo_runs(cfg) == 0
    off = ExperimentConfig(task="generation", aux=(True,), generation=_dpo(after=()))
    assert off.validate() and _dpo_runs(off) == 0


def test_a_suite_item_that_plans_dpo_away_is_refused(tmp_path):
    p = tmp_path / "suite.yaml"
    p.write_text("task: generation\nseeds: [0]\nexperiments:\n  - {methods: [joint]}\n"
                 "  - {methods: [bayes], aux: [true]}\n")
    with pytest.raises(W2SError, match="aux"):
        load_configs(p)
    p.write_text("task: generation\nseeds: [0]\nexperiments:\n  - {methods: [joint]}\n"
                 "  - {methods: [bayes], aux: [false, true]}\n")
    assert len(load_configs(p)) == 2


# ---------------------------------------------------------------- prompt vs max_length
@pytest.fixture(scope="module")
def atis() -> Any:
    return load_slot_dataset(DataConfig("atis-slots"))


def test_the_full_prompt_lists_every_slot_type_of_the_inventory(atis):
    listed = re.search(r"Slot types: (.*)\.\n", build_prompt("x", atis.slot_types, "full"))
    assert listed is not None
    names = listed.group(1).split(", ")
    assert names == list(atis.slot_types) and len(set(names)) == len(names)
    # independent of the inventory's own list: every slot type a gold answer uses is named
    assert {t for pairs in atis.slots for t, _ in pairs} <= set(names)
    assert "Slot types: city, date.\n" in build_prompt("x", ("city", "date"), "full")
    assert "fromloc" not in build_prompt("x", atis.slot_types, "short")


@pytest.fixture(scope="module")
def student(tmp_path_factory, atis) -> str:
    """A 1-layer word-level causal LM saved to a folder: a pretrained model by its path."""
    from w2s_core.models.causal import save_causal
    from w2s_core.models.scratch_lm import build_scratch_lm

    corpus = [build_prompt(t, atis.slot_types, "full") for t in atis.texts[:50]] + \
        [format_slots(p) for p in atis.slots[:50]]
    folder = tmp_path_factory.mktemp("student") / "lm"
    save_causal(build_scratch_lm("word", corpus, layers=1, hidden=16, heads=2), folder)
    return str(folder)


def _gen(student: str, prompt: str = "full", teachers: tuple[str, ...] = ("gpt-char",),
         methods: tuple[str, ...] = ("single-hard",), **lengths: int) -> ExperimentConfig:
    """A tiny generation config; ``lengths``: max_length per training block (student_train,
    teacher_train, scratch, dpo), each 4096 unless given."""
    g = GenerationConfig(prompt=prompt)  # type: ignore[arg-type]
    at = {k: lengths.get(k, 4096) for k in ("student_train", "teacher_train", "scratch", "dpo")}
    g = dataclasses.replace(
        g, student_train=dataclasses.replace(g.student_train, max_length=at["student_train"]),
        teacher_train=dataclasses.replace(g.teacher_train, max_length=at["teacher_train"]),
        scratch=dataclasses.replace(g.scratch, train=dataclasses.replace(
            g.scratch.train, max_length=at["scratch"])),
        dpo=dataclasses.replace(g.dpo, train=dataclasses.replace(g.dpo.train,
                                                                 max_length=at["dpo"])))
    return ExperimentConfig(task="generation", data=DataConfig(
        "atis-slots", n_weak=24, n_transfer=12, n_test=8), teachers=teachers, student=student,
        methods=methods, seeds=(0,), aux=(False,), generation=g).validate()


def _tokens(folder: str, text: str) -> int:
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(folder)(text)["input_ids"])


def test_a_student_too_short_for_the_full_prompt_is_refused_with_a_length_that_works(
        student, atis):
    n = _tokens(student, build_prompt("", atis.slot_types, "full"))
    assert n > 256  # the premise: the full prompt alone overflows the default student length
    with pytest.raises(W2SError) as err:
        gp.load_replicates(_gen(student, student_train=256))
    msg = _one_line(err)
    assert msg.startswith(f"student {student}: the full prompt takes {n} tokens")
    assert "generation.student_train.max_length is 256" in msg
    fix = re.search(r"set generation\.student_train\.max_length: (\d+)", msg)
    assert fix is not None and int(fix.group(1)) % 64 == 0
    gp.load_replicates(_gen(student, student_train=int(fix.group(1))))  # the named fix works


def test_the_char_teacher_too_short_for_the_full_prompt_is_refused(student, atis):
    chars = len(build_prompt("", atis.slot_types, "full"))  # one token per character, no BOS
    for room, fits in ((chars + gp.PROMPT_MARGIN, True), (chars + gp.PROMPT_MARGIN - 1, False),
                       (768, False)):
        cfg = _gen(student, scratch=room)
        if fits:
            gp.load_replicates(cfg)
            continue
        with pytest.raises(W2SError) as err:
            gp.load_replicates(cfg)
        msg = _one_line(err)
        assert msg.startswith(f"teacher gpt-char: the full prompt takes {chars} tokens")
        assert f"generation.scratch.train.max_length is {room}" in msg
        assert "set generation.scratch.train.max_length: " in msg


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"teachers": "student", "teacher_train": 256}, "teacher_train"),  # a pretrained teacher
    ({"methods": ("bayes",), "dpo": 256}, "dpo.train"),  # DPO trains the student too
])
def test_each_training_max_length_is_checked(student, kwargs: dict, key: str):
    if kwargs.get("teachers") == "student":
        kwargs = {**kwargs, "teachers": (student,)}
    with pytest.raises(W2SError, match=rf"generation\.{key}\.max_length is 256.*set generation"
                                       rf"\.{key}\.max_length: \d+"):
        gp.load_replicates(_gen(student, **kwargs))


def test_the_full_prompt_with_room_for_it_and_the_short_one_by_default_pass(student):
    reps = gp.load_replicates(_gen(student, teachers=("gpt-char", "gpt-word", "gpt-bpe"),
                                   methods=("bayes",)))
    assert reps[0].prompt_style == "full"
    d = GenerationConfig()
    short = _gen(student, prompt="short", teachers=("gpt-char", "gpt-word", "gpt-bpe"),
                 methods=("bayes",), student_train=d.student_train.max_length,
                 scratch=d.scratch.train.max_length, dpo=d.dpo.train.max_length)
    assert gp.load_replicates(short)[0].prompt_style == "short"


def test_the_sweep_refuses_the_prompt_before_any_teacher_trains(student, tmp_path,
                                                               monkeypatch):
    from w2s_core.experiments.sweep import Sweep

    def never(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("a teacher trained before the prompt was checked")

    monkeypatch.setattr(gp, "train_teacher", never)
    with pytest.raises(W2SError, match="max_length"):
        Sweep(_gen(student, student_train=256), tmp_path, progress=False,
              log=lambda _m: None).run()
