"""The CLI and every bad input: one line naming the problem and the fix, exit code ≠ 0."""

from __future__ import annotations

import subprocess
import sys

import pytest

from w2s_core import cli
from w2s_core.errors import W2SError
from w2s_core.experiments.config import ExperimentConfig, demo_config, gen_demo_config
from w2s_core.experiments.config_files import load_config, load_configs

CONFIG = """
name: t
data: {name: tweets, n_weak: 100, n_transfer: 100, n_test: 100}
teachers: [tfidf-logreg, minilm-l3]
student: mpnet-base
methods: [naive, bayes]
seeds: [0]
"""


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "w2s_core.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_help_everywhere():
    for args in ([], ["demo"], ["sweep"], ["report"], ["list"], ["app"]):
        r = run_cli(*args, "--help")
        assert r.returncode == 0 and "usage: w2s" in r.stdout


def test_list_commands_name_the_registries(capsys):
    assert cli.main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "bayes" in out and "dawid-skene" in out
    assert cli.main(["list", "models"]) == 0
    assert "mpnet-2l" in capsys.readouterr().out
    assert cli.main(["list", "datasets"]) == 0
    assert "wordnet-qa" in capsys.readouterr().out


def test_load_config_roundtrip(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(CONFIG)
    cfg = load_config(p)
    assert cfg.teachers == ("tfidf-logreg", "minilm-l3") and cfg.data.n_test == 100
    q = tmp_path / "c.toml"
    q.write_text('name = "t"\nteachers = ["tfidf-logreg"]\nseeds = [1]\n[data]\nname = "tweets"\n')
    assert load_config(q).seeds == (1,)


@pytest.mark.parametrize("text, match", [
    ("teachers: []", "K = 0"),
    ("teachers: [minilm-l3, minilm-l3]", "teacher named twice: minilm-l3"),
    ("teachers: [minilm-l7]", "unknown model 'minilm-l7'"),
    ("methods: [magic]", "unknown method 'magic'.*known: bayes"),
    ("teachers: [minilm-l3, minilm-l6]\noptions: {weights: [1]}", "1 teacher weights .* 2"),
    ("teachers: [minilm-l3, minilm-l6]\noptions: {weights: [1, -2]}", "include one ≤ 0"),
    ("teachers: [minilm-l3, minilm-l6]\noptions: {weights: [1, 0]}", "include one ≤ 0"),
    ("options: {weights: bogus}", "unknown teacher weighting"),
    ("data: {name: tweets-4class}", "unknown dataset 'tweets-4class'.*use one of"),
    ("data: {name: atis-slots}", "'atis-slots' is a generation data set"),
    ("colour: blue", "unknown key.*colour.*allowed"),
    ("data: {name: tweets, splits: 3}", r"unknown key.*data.*splits"),
    ("student_mode: turbo", "unknown training mode"),
    ("name: [unclosed", "cannot parse"),
])
def test_bad_config_is_one_line_error(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(W2SError, match=match) as e:
        load_config(p)
    assert "\n" not in str(e.value) and "—" in str(e.value)


def test_bad_input_through_the_cli_exits_nonzero_with_one_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("teachers: [minilm-l3, minilm-l3]\n")
    r = run_cli("sweep", "--config", str(p), "--workspace", str(tmp_path / "ws"))
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == ["error: teacher named twice: minilm-l3 — list each teacher once (use a "
                     "truncated variant for a second copy)"]
    r = run_cli("sweep", "--config", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "not found" in r.stderr
    r = run_cli("report", "--workspace", str(tmp_path / "empty"))
    assert r.returncode == 2 and "no experiments" in r.stderr


def test_unknown_dataset_lists_known(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data: {name: imdb}\nteachers: [tfidf-logreg]\nstudent: tfidf-logreg\n")
    r = run_cli("sweep", "--config", str(p), "--workspace", str(tmp_path / "ws"))
    assert r.returncode == 2 and "unknown dataset 'imdb'" in r.stderr and "tweets" in r.stderr


def test_demo_config_matches_the_issue():
    full = demo_config()
    assert full.teachers == ("tfidf-logreg", "minilm-l3", "minilm-l6", "mpnet-2l", "mpnet-4l")
    assert full.student == "mpnet-base" and full.seeds == (0, 1, 2) and full.aux == (False, True)
    assert full.data.name == "tweets" and full.data.n_weak == 5000
    assert demo_config(quick=True).experiment_id() != full.experiment_id()
    assert ExperimentConfig().validate()


def test_a_partial_nested_mapping_keeps_the_fields_own_defaults():
    """`scratch.train: {epochs: 12}` overrides epochs only: lr, batch and max_length stay the
    scratch teachers' (2e-3, 16, 768), not LMTrainConfig()'s (1e-4, 8, 256)."""
    import dataclasses

    from w2s_core.experiments.config_files import from_dict
    from w2s_core.experiments.gen_config import GenerationConfig, ScratchConfig

    g = from_dict(GenerationConfig, {"scratch": {"hidden": 96, "train": {"epochs": 12}},
                                     "teacher_train": {"epochs": 2}})
    assert g.scratch.train == dataclasses.replace(ScratchConfig().train, epochs=12.0)
    assert (g.scratch.train.lr, g.scratch.train.max_length) == (2e-3, 768)
    assert g.scratch.hidden == 96 and g.scratch.layers == ScratchConfig().layers
    assert g.teacher_train == dataclasses.replace(GenerationConfig().teacher_train, epochs=2.0)
    assert g.teacher_train.lr == 3e-4 and g.student_train == GenerationConfig().student_train


def test_an_integer_for_a_float_setting_is_the_same_experiment(tmp_path):
    ids = []
    for epochs in ("2", "2.0"):
        p = tmp_path / f"c{epochs}.yaml"
        p.write_text(CONFIG + f"finetune: {{epochs: {epochs}}}\n")
        cfg = load_config(p)
        assert type(cfg.finetune.epochs) is float
        ids.append(cfg.experiment_id())
    assert ids[0] == ids[1]


def test_the_cpu_study_config_is_the_quick_demo_at_its_former_size():
    """configs/gen-cpu-study.yaml (README's generation findings) = the quick demo's settings with
    128/64/48 utterances, 8 utterances a step, the Bayesian methods at K = 1 too and DPO after
    bayes on 16 prompts; the same experiment hash as the quick demo had at that size."""
    import dataclasses
    from pathlib import Path

    from w2s_core.experiments.config import DataConfig

    q = gen_demo_config(quick=True)
    g = q.generation
    want = dataclasses.replace(
        q, name="gen-cpu-study", data=DataConfig("atis-slots", n_weak=128, n_transfer=64,
                                                  n_test=48), method_sizes=None,
        generation=dataclasses.replace(
            g, student_train=dataclasses.replace(g.student_train, batch_size=8),
            dpo=dataclasses.replace(g.dpo, after=("bayes",), max_prompts=16)))
    got = load_config(Path(__file__).resolve().parents[1] / "configs" / "gen-cpu-study.yaml")
    assert got == want
    assert got.experiment_id() == want.experiment_id() == "gen-cpu-study-cc4f740865a5"


def test_the_demo_slice_config_is_the_full_generation_demo_experiment():
    """configs/gen-demo-slice.yaml (README's full-demo data on CPU) writes into the full demo's
    experiment: its teachers and ceiling are the demo's, and its runs are runs the demo plans
    (one seed, no aux, methods and sizes among the demo's) or, for per_char joint, one more
    option setting of the same experiment."""
    from pathlib import Path

    demo = gen_demo_config(quick=False)
    items = load_configs(Path(__file__).resolve().parents[1] / "configs" / "gen-demo-slice.yaml")
    assert len(items) == 4
    for c in items:
        assert c.experiment_id() == demo.experiment_id()
        assert set(c.methods) <= set(demo.methods) and set(c.seeds) <= set(demo.seeds)
        assert set(c.aux) <= set(demo.aux) and set(c.sizes or ()) <= {1, 2, 3}
        assert c.generation.dpo.after == ()
    assert {c.gen_options.joint_score for c in items} == {"sum", "per_char"}


def test_run_ids_ignore_device_but_not_results():
    a = demo_config(quick=True)
    b = ExperimentConfig(**{**a.__dict__, "device": "cuda"})
    c = ExperimentConfig(**{**a.__dict__, "precision": "fp32"})
    assert a.experiment_id() == b.experiment_id() != c.experiment_id()


def test_every_config_field_is_classified_for_hashing():
    """Adding a config field must be a decision: does it change results (then it is hashed)?"""
    import dataclasses

    from w2s_core.experiments.config import NON_RESULT_FIELDS
    from w2s_core.training.finetune import FinetuneConfig

    exp_fields = {f.name for f in dataclasses.fields(ExperimentConfig)}
    in_experiment_id = set(ExperimentConfig().experiment_key())
    per_run = {"methods", "aux", "seeds", "max_subsets", "sizes", "method_sizes",
               "subset_seed", "options"}  # which runs exist, and their ids
    never_hashed = {"name", "device", "feature_batch_size"}  # name only labels the folder
    # the generation-only fields cannot change a classification result
    other_task = {"task", "generation", "gen_options"}
    assert exp_fields == in_experiment_id | per_run | never_hashed | other_task
    # generation: its own settings block replaces the classification-only ones
    gen_key = set(gen_demo_config(quick=True).experiment_key())
    gen_per_run = {"methods", "aux", "seeds", "max_subsets", "sizes", "method_sizes",
                   "subset_seed", "gen_options"}
    cls_only = {"teacher_mode", "student_mode", "probe", "finetune", "precision", "options"}
    assert exp_fields == gen_key | gen_per_run | never_hashed | cls_only
    ft_fields = {f.name for f in dataclasses.fields(FinetuneConfig)}
    assert set(NON_RESULT_FIELDS) <= ft_fields
    assert len(ft_fields) == 15, "new FinetuneConfig field: add it to NON_RESULT_FIELDS if it " \
                                 "cannot change results, then update this count"


def test_the_cli_backs_large_torch_tensors_with_huge_pages_unless_set(monkeypatch):
    """``w2s`` (and so every job the app launches) turns on PyTorch's transparent-huge-page
    allocations (fewer page faults on the large tensors training frees and re-allocates every
    step) before any command runs; a user's value wins."""
    import os

    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    assert cli.main(["list", "methods"]) == 0
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    assert cli.main(["list", "methods"]) == 0
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "0"
