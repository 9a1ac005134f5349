"""The sweep end to end on tiny models and a small local dataset: store format, resume after
interruption, determinism, cached-teacher re-use, corrupt files, and the report."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from w2s_core import api
from w2s_core.data.schema import DataConfig
from w2s_core.experiments import protocol, store
from w2s_core.experiments.config import ExperimentConfig
from w2s_core.experiments.subsets import subsets
from w2s_core.training.probe import ProbeConfig

POS = ["good", "great", "wonderful", "happy", "excellent", "amazing", "fantastic", "loved"]
NEG = ["bad", "terrible", "awful", "sad", "horrible", "hated", "late", "died"]


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(360):
        label = i % 2
        words = list(rng.choice(POS if label else NEG, 3)) + list(rng.choice(POS + NEG, 2))
        rng.shuffle(words)
        rows.append({"text": f"the movie was {' '.join(words)} {i}", "label": label})
    path = tmp_path_factory.mktemp("data") / "small.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def cfg(small_csv, tiny_encoder_dir, fresh_cache):
    return ExperimentConfig(
        name="tiny", data=DataConfig("file", path=str(small_csv), n_weak=120, n_transfer=120,
                                     n_test=120),
        teachers=("tfidf-logreg", str(tiny_encoder_dir)), student=str(tiny_encoder_dir),
        methods=("single", "naive", "vote", "bayes"), aux=(False, True), seeds=(0, 1),
        probe=ProbeConfig(epochs=3, batch_size=64), device="cpu")


def expected_runs(c: ExperimentConfig) -> int:
    # K=1 subsets: single, bayes; K=2: naive, vote, bayes; × aux × seeds; + one ceiling per seed
    n_single = 2 * 2
    n_pair = 1 * 3
    return (n_single + n_pair) * len(c.aux) * len(c.seeds) + len(c.seeds)


def test_subset_enumeration_and_sampling():
    t = ("a", "b", "c", "d", "e")
    assert len(subsets(t, None, 0)) == 31
    s = subsets(t, 12, 0)
    assert len({len(x) for x in s}) == 5 and len(s) <= 16
    assert s == subsets(t, 12, 0)  # seeded


def test_subset_sizes_keep_only_those_k_from_the_same_draw():
    t = ("a", "b", "c", "d", "e")
    assert subsets(t, None, 0, (1, 5)) == [("a",), ("b",), ("c",), ("d",), ("e",), t]
    # the sample for a K does not depend on which other K are kept
    s = subsets(t, 12, 0)
    assert subsets(t, 12, 0, (2, 4)) == [x for x in s if len(x) in (2, 4)]


@pytest.mark.parametrize("task", ["classification", "generation"])
@pytest.mark.parametrize("sizes", [(0,), (1, 9), (2, 2), ()])
def test_bad_subset_sizes_are_refused_at_validation(task, sizes):
    from w2s_core.errors import W2SError
    from w2s_core.experiments.config import ExperimentConfig

    with pytest.raises(W2SError, match="sizes"):
        ExperimentConfig(task=task, sizes=sizes).validate()


def test_sweep_writes_the_documented_store(cfg, tmp_path):
    exp_id = api.run_experiment(cfg, tmp_path, progress=False)
    exp = store.experiment_dir(tmp_path, exp_id)
    meta = json.loads(exp.meta.read_text())
    assert meta["status"] == "done" and meta["splits"]["sizes"]["weak"] == 120
    ex = pd.read_parquet(exp.examples)
    assert set(ex["split"]) == {"weak", "transfer", "test"} and ex["example_id"].is_unique
    runs, warns = api.runs(exp_id, tmp_path)
    assert not warns and len(runs) == expected_runs(cfg)
    tr = runs[runs.kind == "transfer"]
    # PGR follows its definition from the stored floors and ceiling
    r = tr.iloc[0]
    if r["pgr_mean_defined"]:
        assert r["pgr_mean"] == pytest.approx(
            (r["accuracy"] - r["floor_mean"]) / (r["ceiling"] - r["floor_mean"]))
    else:
        assert pd.isna(r["pgr_mean"])
    bayes = tr[tr.method == "bayes"].iloc[0]
    preds = api.run_predictions(exp_id, bayes["run_id"], tmp_path)
    assert {"alpha_0", "alpha_1", "p_0", "p_1"} <= set(preds.columns)
    alpha = preds[["alpha_0", "alpha_1"]].to_numpy()
    assert np.allclose(preds[["p_0", "p_1"]].to_numpy(), alpha / alpha.sum(1, keepdims=True),
                       atol=1e-5)
    cfgs = [json.loads((exp.run_dir(i) / "config.json").read_text()) for i in runs.run_id]
    assert all(c["validation_labels"] == "none" for c in cfgs)
    teachers = api.teacher_predictions(exp_id, tmp_path)
    assert list(teachers) == list(cfg.teachers)
    rep = api.report(exp_id, tmp_path)
    assert rep["n_runs"] == len(runs) and rep["recovery"]


def test_same_config_and_seed_give_identical_metrics(cfg, tmp_path):
    a = api.run_experiment(cfg, tmp_path / "a", progress=False)
    b = api.run_experiment(cfg, tmp_path / "b", progress=False)
    ra = api.runs(a, tmp_path / "a")[0].sort_values("run_id").reset_index(drop=True)
    rb = api.runs(b, tmp_path / "b")[0].sort_values("run_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(ra.drop(columns="train_seconds"),
                                  rb.drop(columns="train_seconds"))


def test_interrupted_sweep_resumes_without_recomputing(cfg, tmp_path, monkeypatch):
    real = protocol.train_students
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # Ctrl-C after the ceilings were saved
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(protocol, "train_students", flaky)
    with pytest.raises(KeyboardInterrupt):
        api.run_experiment(cfg, tmp_path, progress=False)
    exp = next(store.iter_experiments(tmp_path))
    assert json.loads(exp.meta.read_text())["status"] == "interrupted"
    saved = {d.name for d in (exp.root / "runs").iterdir() if (d / "metrics.json").exists()}
    assert len(saved) == len(cfg.seeds)  # the ceilings, intact
    before = {n: (exp.run_dir(n) / "metrics.json").stat().st_mtime_ns for n in saved}
    n_trained = []
    monkeypatch.setattr(protocol, "train_students",
                        lambda c, jobs, *a, **k: n_trained.append(len(jobs)) or real(c, jobs, *a,
                                                                                     **k))
    api.run_experiment(cfg, tmp_path, progress=False)
    assert sum(n_trained) == expected_runs(cfg) - len(saved)  # nothing recomputed
    assert all((exp.run_dir(n) / "metrics.json").stat().st_mtime_ns == t
               for n, t in before.items())
    assert json.loads(exp.meta.read_text())["status"] == "done"


def test_cached_teachers_are_reused_and_corrupt_ones_recomputed(cfg, tmp_path, monkeypatch):
    exp_id = api.run_experiment(cfg, tmp_path, progress=False)
    exp = store.experiment_dir(tmp_path, exp_id)
    trained = []
    real = protocol.train_teacher
    monkeypatch.setattr(protocol, "train_teacher",
                        lambda c, name, *a: trained.append(name) or real(c, name, *a))
    more = ExperimentConfig(**{**cfg.__dict__, "methods": cfg.methods + ("joint",)})
    assert more.experiment_id() == exp_id  # adding a method re-uses the experiment
    api.run_experiment(more, tmp_path, progress=False)
    assert trained == []
    path = exp.teacher_preds(store.teacher_files(store.read_json(exp.meta))["tfidf-logreg"])
    path.write_bytes(path.read_bytes()[:100])  # truncate the parquet file
    api.run_experiment(more, tmp_path, progress=False)
    assert trained == ["tfidf-logreg"]


def test_corrupt_run_is_reported_and_others_still_load(cfg, tmp_path):
    exp_id = api.run_experiment(cfg, tmp_path, progress=False)
    exp = store.experiment_dir(tmp_path, exp_id)
    runs, _ = api.runs(exp_id, tmp_path)
    bad = runs.run_id.iloc[3]
    (exp.run_dir(bad) / "metrics.json").write_text("{not json")
    exp.run_index.unlink()
    runs2, warns = api.runs(exp_id, tmp_path)
    assert len(runs2) == len(runs) - 1 and len(warns) == 1 and bad in warns[0]


def test_disk_full_mid_sweep_is_one_line_and_resumable(cfg, tmp_path, monkeypatch):
    import errno

    from w2s_core.errors import W2SError

    real = store.write_parquet
    calls = {"n": 0}

    def full_disk(path, df):
        calls["n"] += 1
        if "runs" in str(path) and calls["n"] > 8:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, df)

    monkeypatch.setattr(store, "write_parquet", full_disk)
    with pytest.raises(W2SError, match="disk full.*rerun the same command") as e:
        api.run_experiment(cfg, tmp_path, progress=False)
    assert "\n" not in str(e.value)
    exp = next(store.iter_experiments(tmp_path))
    runs, warns = api.runs(exp.id, tmp_path)
    assert not warns and 0 < len(runs) < expected_runs(cfg)  # finished runs intact
    assert not list(exp.root.rglob("*.tmp"))  # no half-written files left behind
    monkeypatch.setattr(store, "write_parquet", real)
    api.run_experiment(cfg, tmp_path, progress=False)
    assert len(api.runs(exp.id, tmp_path)[0]) == expected_runs(cfg)


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_finetune_student_modes_run_through_the_sweep(cfg, tmp_path, mode):
    from w2s_core.training.finetune import FinetuneConfig

    ft = ExperimentConfig(**{**cfg.__dict__, "student_mode": mode, "methods": ("naive", "bayes"),
                             "aux": (True,), "seeds": (0,),
                             "finetune": FinetuneConfig(epochs=1, batch_size=32, lr=1e-3,
                                                        progress=False)})
    exp_id = api.run_experiment(ft, tmp_path, progress=False)
    runs, _ = api.runs(exp_id, tmp_path)
    # ceiling + K=1: bayes ×2 subsets, K=2: naive + bayes
    assert len(runs) == 1 + 2 + 2
    assert runs["accuracy"].between(0, 1).all()
    cfgs = json.loads((store.experiment_dir(tmp_path, exp_id).run_dir(runs.run_id[0])
                       / "config.json").read_text())
    assert cfgs["train"]["student_mode"] == mode and "device" not in cfgs["train"]


def test_only_rank_zero_writes_under_a_distributed_launcher(cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")  # what torchrun / accelerate launch set on a second process
    trained = []
    real = protocol.train_students
    monkeypatch.setattr(protocol, "train_students",
                        lambda c, jobs, *a, **k: trained.append(len(jobs)) or real(c, jobs, *a,
                                                                                     **k))
    api.run_experiment(cfg, tmp_path, progress=False)
    assert sum(trained) == expected_runs(cfg)  # it trains in lockstep with rank 0 ...
    assert not (tmp_path / "experiments").exists()  # ... but leaves the workspace to rank 0


def test_changed_data_under_the_same_path_is_refused(cfg, small_csv, tmp_path):
    from w2s_core.errors import W2SError

    api.run_experiment(cfg, tmp_path, progress=False)
    changed = tmp_path / "changed.csv"
    df = pd.read_csv(small_csv)
    df.loc[0, "text"] = "a different first example"
    df.to_csv(changed, index=False)
    moved = ExperimentConfig(**{**cfg.__dict__, "data": DataConfig(
        "file", path=str(changed), n_weak=120, n_transfer=120, n_test=120)})
    exp = next(store.iter_experiments(tmp_path))
    # same experiment folder as if the file had been edited in place
    import shutil
    shutil.copytree(exp.root, tmp_path / "experiments" / moved.experiment_id())
    with pytest.raises(W2SError, match="data of experiment .* changed.*new `name`"):
        api.run_experiment(moved, tmp_path, progress=False)


@pytest.mark.parametrize("task", ["classification", "generation"])
@pytest.mark.parametrize(("ms", "words"), [({"nope": (1,)}, "not in methods"),
                                           ({"bayes": (4,)}, "must list sizes"),
                                           ({"bayes": ()}, "must list sizes"),
                                           ({"bayes": (1,)}, "must list sizes")])
def test_bad_method_sizes_are_refused_at_validation(task, ms, words):
    """Unknown method, a K beyond the teachers, none, or a K outside ``sizes`` (here [2, 3])."""
    from w2s_core.errors import W2SError

    with pytest.raises(W2SError, match=words):
        ExperimentConfig(task=task, sizes=(2, 3), method_sizes=ms).validate()


@pytest.mark.parametrize(("task", "single"), [("classification", "single"),
                                             ("generation", "single-hard")])
def test_method_sizes_at_a_k_where_the_method_does_not_apply_is_refused(task, single):
    from w2s_core.errors import W2SError

    with pytest.raises(W2SError, match=rf"method_sizes.{single} lists K = \[3\].*K in \[1\]"):
        ExperimentConfig(task=task, method_sizes={single: (3,)}).validate()


def test_method_sizes_from_yaml_lists_is_the_same_config(tmp_path):
    from w2s_core.experiments.config_files import load_config

    p = tmp_path / "c.yaml"
    p.write_text("teachers: [tfidf-logreg, minilm-l3]\nmethods: [single, naive, bayes]\n"
                 "method_sizes: {bayes: [2]}\n")
    got = load_config(p)
    assert got == ExperimentConfig(teachers=("tfidf-logreg", "minilm-l3"),
                                   methods=("single", "naive", "bayes"),
                                   method_sizes={"bayes": (2,)})
    assert got.runs_at("bayes", 2) and not got.runs_at("bayes", 1) and got.runs_at("naive", 2)


def test_method_sizes_runs_a_method_only_at_those_teacher_counts(cfg, tmp_path):
    """``method_sizes: {bayes: [2]}`` on the tiny classification sweep: bayes only on the pair,
    the other methods where they apply (single at K = 1; naive and vote at K = 2)."""
    c = dataclasses.replace(cfg, aux=(False,), seeds=(0,), method_sizes={"bayes": (2,)})
    exp_id = api.run_experiment(c, tmp_path, progress=False)
    runs, _ = api.runs(exp_id, tmp_path)
    tr = runs[runs.kind == "transfer"]
    got = sorted(zip(tr["method"], tr["k"], strict=True))
    assert got == [("bayes", 2), ("naive", 2), ("single", 1), ("single", 1), ("vote", 2)]


def test_sizes_runs_only_those_teacher_counts(cfg, tmp_path):
    """``sizes: [2]`` on the tiny classification sweep: only the K=2 subset's runs (naive,
    vote, bayes) and the ceilings; every run's K is 2."""
    c = dataclasses.replace(cfg, sizes=(2,), aux=(False,), seeds=(0,))
    exp_id = api.run_experiment(c, tmp_path, progress=False)
    runs, _ = api.runs(exp_id, tmp_path)
    tr = runs[runs.kind == "transfer"]
    assert set(tr["k"]) == {2} and sorted(tr["method"]) == ["bayes", "naive", "vote"]
    assert (runs.kind == "ceiling").sum() == 1
