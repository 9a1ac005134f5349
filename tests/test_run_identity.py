"""Run identity (RunSpec), option sets kept apart, teacher caches inside the workspace, data
replicates, provenance, the weak-label reference of CDR/CAR, and your own weak labels through
the whole sweep — each against an independent expectation."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_sweep import NEG, POS, small_csv

from w2s_core import api, catalog
from w2s_core.data.schema import DataConfig
from w2s_core.experiments import store, tables
from w2s_core.experiments.config import ExperimentConfig
from w2s_core.experiments.runspec import RunSpec, setting_labels
from w2s_core.methods.aggregate import majority_vote
from w2s_core.methods.registry import MethodOptions
from w2s_core.training.probe import ProbeConfig

ROOT = Path(__file__).resolve().parents[1]
__all__ = ["small_csv"]  # the shared fixture, imported so pytest registers it here


def _spec(**kw) -> RunSpec:
    base = dict(experiment_id="e-1", kind="transfer", method="bayes", subset=("a", "b"),
                aux=False, seed=0, data_seed=0, train={"student": "s", "precision": "bf16"},
                options={"kl_scale": 1.0, "evidence": "exp"})
    return RunSpec(**{**base, **kw})


def test_runspec_id_changes_with_every_identity_field_and_setting_ignores_pooled_ones():
    s = _spec()
    assert s.run_id == _spec().run_id and len(s.run_id) == 12
    changed = [_spec(options={"kl_scale": 0.1, "evidence": "exp"}), _spec(method="naive"),
               _spec(subset=("a",)), _spec(aux=True), _spec(seed=1), _spec(data_seed=1),
               _spec(train={"student": "s", "precision": "fp32"}), _spec(experiment_id="e-2")]
    assert len({c.run_id for c in changed} | {s.run_id}) == len(changed) + 1
    # pooled over (subset, seed, data seed) and grouped by (method, aux, K): same setting
    for same in (_spec(subset=("a",)), _spec(seed=3), _spec(data_seed=2), _spec(method="naive"),
                 _spec(aux=True)):
        assert same.setting == s.setting
    assert _spec(options={"kl_scale": 0.1, "evidence": "exp"}).setting != s.setting
    assert _spec(train={"student": "s", "precision": "fp32"}).setting != s.setting
    assert RunSpec.from_dict(s.stored_config(**{"lambda": [0.5, 0.5]})) == s
    row = s.index_row()
    assert row["subset"] == "a+b" and row["k"] == 2 and row["opt_kl_scale"] == 1.0
    with pytest.raises(ValueError):
        RunSpec("e", "ceiling", "ceiling", (), False, 0, 0, {}, options={"kl_scale": 1})


def test_setting_labels_name_only_what_differs():
    a = {"train": {"p": "bf16"}, "options": {"kl_scale": 1.0, "evidence": "exp"}}
    b = {"train": {"p": "bf16"}, "options": {"kl_scale": 0.1, "evidence": "exp"}}
    assert setting_labels({"x": a, "y": b}) == {"x": "kl_scale=1", "y": "kl_scale=0.1"}
    assert setting_labels({"x": a}) == {"x": "as configured"}


def test_setting_contrasts_pair_settings_that_differ_in_exactly_one_option():
    """frozen − detached etc. on runs matched on data, subset, seed and aux, per (method, aux,
    K); the library default is the reference; settings two options apart are not paired."""
    from scipy import stats

    opts = {"A": ("detached", 1.0), "B": ("frozen", 1.0), "C": ("live", 1.0),
            "D": ("frozen", 0.3)}
    known = {s: {"train": {"lr": 1e-3}, "options": {"target_mode": m, "temperature": t}}
             for s, (m, t) in opts.items()}
    rng = np.random.default_rng(0)
    rows = []
    for s in "ABCD":
        for seed in range(3):
            for method, subset, k in (("naive-soft", "x+y", 2), ("single-soft", "x", 1)):
                rows.append({"kind": "transfer", "setting": s, "method": method, "k": k,
                             "subset": subset, "seed": seed, "data_seed": 0, "aux": False,
                             "slu_f1": float(rng.uniform())})
    rows.append({**rows[-1], "seed": 7, "setting": "C"})  # no partner in A or B: not paired
    runs = pd.DataFrame(rows)
    defaults = {"options": {"target_mode": "detached", "temperature": 1.0}}
    out = tables.setting_contrasts(runs, known, defaults, "slu_f1")
    assert sorted(set(out["label"])) == sorted([
        "target_mode=frozen − target_mode=detached", "target_mode=live − target_mode=detached",
        "target_mode=live − target_mode=frozen",  # neither is the default: sorted order
        "temperature=0.3 − temperature=1"])  # D against B only: D is two options from A, C
    assert len(out) == 4 * 2  # per method (K kept apart), never pooled
    v = runs.set_index(["setting", "method", "seed"])["slu_f1"]
    for _, row in out.iterrows():
        diff = np.array([v[(row["a"], row["method"], s)] - v[(row["b"], row["method"], s)]
                         for s in range(3)])
        half = stats.t.ppf(0.975, 2) * diff.std(ddof=1) / np.sqrt(3)
        assert row["pairs"] == 3 and row["n"] == 3 and row["unit"] == "seed"
        assert row["mean"] == pytest.approx(diff.mean())
        assert (row["lo"], row["hi"]) == pytest.approx((diff.mean() - half, diff.mean() + half))
    assert tables.setting_contrasts(runs, {"A": known["A"]}, defaults, "slu_f1").empty
    # without recorded defaults (an older experiment) the value that sorts first is b
    old = tables.setting_contrasts(runs, known, None, "slu_f1")
    assert "temperature=1 − temperature=0.3" in set(old["label"])


@pytest.fixture
def cfg(small_csv, tiny_encoder_dir, fresh_cache, torch_single_thread):
    return ExperimentConfig(
        name="ident", data=DataConfig("file", path=str(small_csv), n_weak=100, n_transfer=100,
                                      n_test=100),
        teachers=("tfidf-logreg", str(tiny_encoder_dir)), student=str(tiny_encoder_dir),
        methods=("naive", "vote", "bayes"), aux=(False, True), seeds=(0, 1),
        probe=ProbeConfig(epochs=2, batch_size=50), device="cpu")


def test_option_sets_are_kept_apart_in_store_report_and_comparisons(cfg, tmp_path):
    """Bug: runs with different options landed in one experiment, were averaged together and
    compare_methods crashed on a non-unique index; experiment.json kept only the last config."""
    a = api.run_experiment(cfg, tmp_path, progress=False)
    other = dataclasses.replace(cfg, options=MethodOptions(kl_scale=0.1))
    assert api.run_experiment(other, tmp_path, progress=False) == a  # same teachers/features
    runs, warns = api.runs(a, tmp_path)
    assert not warns
    tr = runs[runs.kind == "transfer"]
    assert tr.groupby("setting")["opt_kl_scale"].nunique().eq(1).all()
    assert sorted(tr["opt_kl_scale"].unique()) == [0.1, 1.0]
    assert runs[runs.kind == "ceiling"]["run_id"].nunique() == len(cfg.seeds)  # shared
    meta = api.experiment(a, tmp_path)
    assert len(meta["configs"]) == 2 and len(meta["settings"]) == 3  # 2 option sets + ceiling
    rec = tables.recovery_table(runs)
    per_setting = tr.groupby(["setting", "method", "aux", "k"]).size()
    assert len(rec) == len(per_setting)  # one row per setting, never pooled
    for _, row in rec.iterrows():  # each row's n counts only its own setting's runs
        own = tr[(tr.setting == row.setting) & (tr.method == row.method) & (tr.aux == row.aux)
                 & (tr.k == row.k)]
        assert row["n"] + row["n_undefined"] == len(own)
    rep = api.report(a, tmp_path)
    assert set(rep["settings"]) == set(tr["setting"])
    labels = {v["label"] for v in rep["settings"].values()}
    assert labels == {"kl_scale=1", "kl_scale=0.1"}
    comp = pd.DataFrame(rep["comparisons"])
    bn = comp[(comp.a == "bayes") & (comp.b == "naive") & (comp.metric == "pgr_mean")]
    assert len(bn) == 4  # 2 settings × aux off/on: never pooled over either
    assert set(map(tuple, bn[["setting", "aux"]].to_numpy())) == {
        (s, x) for s in tr.setting.unique() for x in (False, True)}
    # one option apart: kl_scale 0.1 − the default 1, paired on subset and seed per method/aux
    assert meta["option_defaults"]["options"]["kl_scale"] == 1.0
    con = pd.DataFrame(rep["contrasts"])
    assert set(con["label"]) == {"kl_scale=0.1 − kl_scale=1"}
    side = tr.pivot_table(index=["method", "aux", "k", "subset", "seed"],
                          columns="opt_kl_scale", values="accuracy", aggfunc="first")
    want = (side[0.1] - side[1.0]).groupby(["method", "aux", "k"]).mean()
    acc = con[con.metric == "accuracy"].set_index(["method", "aux", "k"])["mean"]
    assert len(want) >= 4 and len(acc) == len(want)  # methods × aux, each paired
    assert np.allclose(acc.loc[want.index], want)
    out = subprocess.run([sys.executable, "-m", "w2s_core.cli", "report", "--workspace",
                          str(tmp_path)], capture_output=True, text=True, cwd=ROOT, check=True)
    assert "option setting" in out.stdout and "kl_scale=0.1" in out.stdout
    assert "Intervals:" in out.stdout
    assert "one option changed, all else equal" in out.stdout
    assert "kl_scale=0.1 − kl_scale=1" in out.stdout


def test_bayes_minus_naive_is_reported_per_aux_setting_from_matched_pairs(cfg, tmp_path):
    """Bug: the report's "bayes − naive" line pooled aux on and off."""
    exp_id = api.run_experiment(cfg, tmp_path, progress=False)
    runs, _ = api.runs(exp_id, tmp_path)
    rep = api.report(exp_id, tmp_path)
    comp = pd.DataFrame(rep["comparisons"])
    tr = runs[(runs.kind == "transfer") & (runs.k >= 2)]
    for aux in (False, True):
        row = comp[(comp.a == "bayes") & (comp.b == "naive") & (comp.aux == aux)
                   & (comp.metric == "pgr_mean")].iloc[0]
        side = tr[tr.aux == aux].pivot_table(index=["subset", "seed"], columns="method",
                                             values="pgr_mean", aggfunc="first", dropna=False)
        diff = (side["bayes"] - side["naive"]).dropna()
        assert row["pairs"] == len(side) and row["n"] == len(diff)
        if len(diff):  # one subset at K = 2: the mean of the paired differences over seeds
            assert row["mean"] == pytest.approx(diff.mean())


def test_teacher_caches_stay_inside_the_workspace(cfg, tmp_path, tiny_encoder_dir):
    """Bug: teachers/<raw name>.parquet with a local path wrote outside the workspace (and
    was shared between experiments with other teacher modes)."""
    ws = tmp_path / "ws"

    def outside() -> set[Path]:  # parquet files next to the teacher's folder, not in ws
        return {p for p in Path(tiny_encoder_dir).parent.rglob("*.parquet")
                if ws not in p.parents}

    before = outside()
    exp_id = api.run_experiment(cfg, ws, progress=False)
    assert outside() == before
    exp = store.experiment_dir(ws, exp_id)
    files = sorted(p.name for p in (exp.root / "teachers").iterdir())
    assert len(files) == 4 and all("/" not in f for f in files)
    stems = store.teacher_files(api.experiment(exp_id, ws))
    assert list(stems) == list(cfg.teachers)
    assert all((exp.root / "teachers" / f"{s}.parquet").exists() for s in stems.values())
    # the stem hashes the teacher's identity: another training config, another file
    ident = {"teacher": "/models/x", "mode": "probe"}
    assert store.teacher_stem("/models/x", ident) != store.teacher_stem(
        "/models/x", {**ident, "mode": "full"})
    assert "/" not in store.teacher_stem("../../x", ident)


def test_data_replicates_retrain_teachers_and_become_the_interval_unit(cfg, tmp_path):
    rcfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, seeds=(0, 1)),
                               methods=("naive",), aux=(False,), seeds=(0,))
    exp_id = api.run_experiment(rcfg, tmp_path, progress=False)
    meta = api.experiment(exp_id, tmp_path)
    assert meta["data_seeds"] == [0, 1] and len(meta["teacher_files"]) == 2
    ex = api.examples(exp_id, tmp_path)
    test0 = set(ex[(ex.data_seed == 0) & (ex.split == "test")].example_id)
    test1 = set(ex[(ex.data_seed == 1) & (ex.split == "test")].example_id)
    assert test0 != test1  # the split was re-drawn
    t0 = api.teacher_predictions(exp_id, tmp_path)
    t1 = store.load_teachers(store.experiment_dir(tmp_path, exp_id), data_seed=1)
    assert set(t0["tfidf-logreg"].example_id) != set(t1["tfidf-logreg"].example_id)
    runs, _ = api.runs(exp_id, tmp_path)
    assert sorted(runs.data_seed.unique()) == [0, 1]
    rec = tables.recovery_table(runs, "accuracy")
    assert (rec["unit"] == "data_seed").all() and (rec["n_units"] == 2).all()
    assert rec["interval"].str.contains("2 data replicates").all()
    # replicate means by hand: the table's mean is their mean (each replicate weighs the same)
    tr = runs[runs.kind == "transfer"]
    by_hand = tr.groupby("data_seed")["accuracy"].mean().mean()
    assert rec["mean"].iloc[0] == pytest.approx(by_hand)


def test_provenance_and_resolved_precision_are_recorded_and_hashed(cfg, tmp_path):
    exp_id = api.run_experiment(cfg, tmp_path, progress=False)
    meta = api.experiment(exp_id, tmp_path)
    prov = meta["provenance"][-1]
    import torch

    assert prov["versions"]["torch"] == torch.__version__.split("+")[0] or \
        prov["versions"]["torch"] == torch.__version__
    assert prov["device"] == "cpu" and prov["precision"] in ("bf16", "fp32")
    runs, _ = api.runs(exp_id, tmp_path)
    assert set(runs["precision"]) == {prov["precision"]}
    cfg_json = json.loads((store.experiment_dir(tmp_path, exp_id).run_dir(
        runs.run_id.iloc[0]) / "config.json").read_text())
    assert cfg_json["train"]["precision"] == prov["precision"]


def test_weak_agreement_compares_with_the_labels_the_student_was_trained_on(cfg, tmp_path):
    """CDR/CAR reference: a vote student is compared with the teachers' majority vote on test,
    not with their soft mean."""
    exp_id = api.run_experiment(cfg, tmp_path, progress=False)
    runs, _ = api.runs(exp_id, tmp_path)
    row = runs[(runs.method == "vote") & (runs.kind == "transfer")].iloc[0]
    teach = api.teacher_predictions(exp_id, tmp_path)
    test = {n: df[df.split == "test"].set_index("example_id") for n, df in teach.items()}
    preds = api.run_predictions(exp_id, row.run_id, tmp_path).set_index("example_id")
    p = np.stack([store.probs_of(test[t].loc[preds.index]) for t in row.subset.split("+")])
    vote = majority_vote(p)
    expected = float(np.mean(store.probs_of(preds).argmax(1) == vote))
    assert row["weak_agreement"] == pytest.approx(expected)


def test_your_own_weak_labels_run_through_w2s_sweep(tmp_path, tiny_encoder_dir, fresh_cache):
    """A user's CSV with three weak-label columns (hard, P(class 1), per-class) through the
    CLI; a given teacher's stored floor equals its accuracy computed from the file."""
    rng = np.random.default_rng(0)
    n = 240
    gold = np.arange(n) % 2
    texts = [f"the movie was {' '.join(rng.choice(POS if g else NEG, 3))} {i}"
             for i, g in enumerate(gold)]
    flip = rng.random(n) < 0.2
    judge = np.where(flip, 1 - gold, gold)
    p1 = np.clip(0.8 * gold + 0.1 + rng.normal(0, 0.15, n), 0, 1)
    crowd = rng.dirichlet([2, 2], n) * 0.3 + np.eye(2)[gold] * 0.7
    df = pd.DataFrame({"id": [f"u{i}" for i in range(n)], "text": texts, "label": gold,
                       "judge": judge, "p_pos": p1, "c0": crowd[:, 0], "c1": crowd[:, 1]})
    data = tmp_path / "mine.csv"
    df.to_csv(data, index=False)
    config = tmp_path / "mine.yaml"
    config.write_text(
        f"name: mine\ndata:\n  name: file\n  path: {data}\n  n_weak: 60\n  n_transfer: 90\n"
        "  n_test: 90\n  weak_labels: {judge: judge, scorer: p_pos, crowd: [c0, c1]}\n"
        f"teachers: [judge, scorer, crowd]\nstudent: {tiny_encoder_dir}\n"
        "methods: [single, naive, vote, bayes]\naux: [false]\nseeds: [0]\n"
        "probe: {epochs: 2, batch_size: 45}\ndevice: cpu\n")
    ws = tmp_path / "ws"
    out = subprocess.run([sys.executable, "-m", "w2s_core.cli", "sweep", "--config",
                          str(config), "--workspace", str(ws), "--no-progress"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    exp_id = api.list_experiments(ws)["id"].iloc[0]
    rep = api.report(exp_id, ws)
    assert rep["dataset"] == "mine.csv"
    floors = {t["teacher"]: t for t in rep["teachers"]}
    assert set(floors) == {"judge", "scorer", "crowd"} and all(t["given"] for t in
                                                               floors.values())
    ex = api.examples(exp_id, ws)
    test_ids = ex[ex.split == "test"].example_id
    src = df.set_index("id").loc[test_ids]
    assert floors["judge"]["accuracy_test"] == pytest.approx((src.judge == src.label).mean())
    assert floors["scorer"]["accuracy_test"] == pytest.approx(
        ((src.p_pos > 0.5) == src.label).mean())
    runs, _ = api.runs(exp_id, ws)
    assert set(runs.method) == {"ceiling", "single", "naive", "vote", "bayes"}
    assert (runs.k.max()) == 3


def test_a_suite_config_runs_one_protocol_on_several_data_sets(tmp_path):
    from w2s_core.errors import W2SError
    from w2s_core.experiments.config_files import load_config, load_configs

    f = tmp_path / "suite.yaml"
    f.write_text("teachers: [tfidf-logreg, minilm-l3]\nseeds: [0]\n"
                 "data: {n_weak: 100, n_transfer: 100, seeds: [0, 1]}\n"
                 "experiments:\n  - {name: a, data: {name: tweets}}\n"
                 "  - {name: b, data: {name: wordnet-qa}, options: {kl_scale: 0.1}}\n")
    a, b = load_configs(f)
    assert (a.name, a.data.name, a.data.n_weak, a.data.seeds) == ("a", "tweets", 100, (0, 1))
    assert (b.data.name, b.data.n_weak, b.options.kl_scale, a.options.kl_scale) == (
        "wordnet-qa", 100, 0.1, 1.0)  # deep merge: the item overrides only what it names
    with pytest.raises(W2SError, match="holds 2 experiments"):
        load_config(f)
    f.write_text("experiments:\n  - {name: a}\n  - {name: a}\n")
    with pytest.raises(W2SError, match="identical"):
        load_configs(f)
    for path in sorted((ROOT / "configs").glob("*.yaml")):  # every shipped config loads
        assert load_configs(path)


def test_truncation_side_keeps_the_end_of_long_texts_when_asked(tiny_encoder_dir, fresh_cache,
                                                                torch_single_thread):
    from w2s_core.experiments.protocol import truncation_side
    from w2s_core.models.features import extract_features
    from w2s_core.models.registry import resolve_model

    spec = resolve_model(str(tiny_encoder_dir))
    start = "the movie was great and i loved it the flight to boston was late"
    texts = [start + " good good", start + " bad bad"]  # differ only in their last words
    right = extract_features([spec], texts, device="cpu", max_length=8, progress=False)
    left = extract_features([spec], texts, device="cpu", max_length=8, progress=False,
                            truncation_side="left")
    r, lf = right[spec.name], left[spec.name]
    assert np.allclose(r[0], r[1])  # right truncation drops the distinguishing end
    assert not np.allclose(lf[0], lf[1])  # left truncation keeps it
    assert truncation_side(DataConfig("boolq")) == "left"
    assert truncation_side(DataConfig("tweets")) == "right"
    assert truncation_side(DataConfig("boolq", truncation_side="right")) == "right"


def test_mixed_resolved_settings_are_flagged():
    from w2s_core.experiments.provenance import mixed

    a = {"device": "cpu", "precision": "bf16", "versions": {"torch": "2.13.0"}}
    assert mixed([a, a]) == []
    notes = mixed([a, {**a, "precision": "fp32"}])
    assert len(notes) == 1 and "bf16, fp32" in notes[0] and "never pool" in notes[0]
    assert len(mixed([a, {**a, "device": "cuda", "versions": {"torch": "2.14.0"}}])) == 2


def test_a_conditional_revision_makes_only_the_runs_with_that_option_stale():
    """The live-target fix (revision 2 of the soft methods) changed only runs with
    ``target_mode: live``: their stored revision-1 results are stale, while detached and
    frozen runs of the same method, computed by unchanged code, stay valid."""
    assert catalog.revision("generation", "naive-soft", {"target_mode": "live"}) == 2
    assert catalog.revision("generation", "naive-soft", {"target_mode": "detached"}) == 1
    assert catalog.revision("generation", "naive-soft") == 1  # a ceiling-like run: no options
    assert catalog.revision("generation", "single-hard", {"target_mode": "live"}) == 1
    df = pd.DataFrame({"run_id": ["a", "b", "c", "d"], "task": "generation",
                       "method": ["naive-soft", "naive-soft", "single-soft", "single-soft"],
                       "opt_target_mode": ["live", "detached", "live", "frozen"],
                       "revision": [1, 1, 2, 1]})
    kept, warns = store.split_stale(df)
    assert list(kept["run_id"]) == ["b", "c", "d"]
    assert len(warns) == 1 and warns[0].startswith("1 generation run(s) of naive-soft left out")
    spec = RunSpec("e", "transfer", "naive-soft", ("t1", "t2"), False, 0, 0, {"student": "s"},
                   {"target_mode": "live"}, task="generation")
    assert spec.stored_config()["revision"] == 2
