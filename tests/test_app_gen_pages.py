"""Generation experiments in the shared dashboard pages, under AppTest: the sidebar adapts
(slot types, the joint floor, the generation methods, bridge target modes as option settings),
every page draws on the tiny generation workspace and on a workspace holding both tasks, and
the numbers shown are the stored ones — recomputed here straight from the files (runs.parquet,
teachers/<stem>.json and .parquet, predictions.parquet, targets.parquet), not through the
dashboard's helpers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score
from streamlit.testing.v1 import AppTest
from test_app import app, arr, ok, specs, trace
from workspace_factory import TEACHERS_2, make_experiment

from w2s_core.experiments import store
from w2s_core.metrics.slu import normalise, parse_slots

PAGES = ["app_pages/recovery.py", "app_pages/teachers.py", "app_pages/dirichlet.py",
         "app_pages/calibration.py", "app_pages/compare.py", "app_pages/talk.py"]
GEN_METHODS = ["single-hard", "single-soft", "naive-soft", "joint", "bayes", "bayes-restricted"]
SCREENS = ["The setting", "Teacher disagreement", "What a Dirichlet says", "Recovery vs K",
           "Calibration"]


# ---------------------------------------------------------------- files, read directly
def _root(ws: Path, exp_id: str) -> Path:
    return Path(ws) / store.EXPERIMENTS / exp_id


def _index(ws: Path, exp_id: str) -> pd.DataFrame:
    return pd.read_parquet(_root(ws, exp_id) / "runs.parquet")


def _detached(idx: pd.DataFrame) -> pd.DataFrame:
    """The main setting's transfer runs (bridge target detached, joint scored by the sum, no
    aux)."""
    return idx[(idx["kind"] == "transfer") & (idx["opt_target_mode"] == "detached")
               & (idx["opt_joint_score"] == "sum") & ~idx["aux"].astype(bool)]


def _teacher_files(ws: Path, exp_id: str) -> dict[str, Path]:
    meta = json.loads((_root(ws, exp_id) / "experiment.json").read_text())
    return {t: _root(ws, exp_id) / "teachers" / stem
            for t, stem in meta["teacher_files"]["0"].items()}


def _run(idx: pd.DataFrame, method: str, subset: str, seed: int = 0) -> str:
    df = _detached(idx)
    return str(df[(df["method"] == method) & (df["subset"] == subset)
                  & (df["seed"] == seed)]["run_id"].iloc[0])


def _z(v: Any) -> np.ndarray:
    """A heatmap's z: plotly ships 2-D typed arrays with their shape as text ("2, 2")."""
    if isinstance(v, dict) and "bdata" in v:
        shape = tuple(int(n) for n in str(v["shape"]).split(","))
        return arr({k: x for k, x in v.items() if k != "shape"}).reshape(shape)
    return np.asarray(v, float)


def _labels(pairs: list[tuple[str, str]], types: list[str]) -> list[str]:
    vals: dict[str, list[str]] = {}
    for t, v in pairs:
        vals.setdefault(t, []).append(normalise(v))
    return [" & ".join(sorted(set(vals[t]))) if t in vals else "none" for t in types]


@pytest.fixture(scope="module")
def gen(gen_workspace: Any) -> Any:
    return gen_workspace


@pytest.fixture(scope="module")
def both(gen: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """One workspace with a classification and a generation experiment."""
    ws = tmp_path_factory.mktemp("both-tasks")
    cls = make_experiment(ws, name="cls", dataset="tweets", teachers=TEACHERS_2,
                          class_names=["negative", "positive"],
                          methods=["single", "naive", "bayes"], seeds=[0], aux=[False],
                          subsets_per_k=1, n_test=60, n_transfer=60, ceiling_acc=[0.88])
    shutil.copytree(_root(gen.ws, gen.exp_id), _root(ws, gen.exp_id))
    return ws, cls, gen.exp_id


def _pages(at: AppTest) -> None:
    for page in PAGES:
        at.switch_page(page).run()
        ok(at)
        assert at.get("plotly_chart"), f"{page} drew no chart"
        assert at.get("download_button"), f"{page} offers no downloads"


# ---------------------------------------------------------------- frame
def test_every_page_draws_a_generation_experiment(gen: Any, monkeypatch) -> None:
    at = app(gen.ws, monkeypatch)
    ok(at)
    _pages(at)
    at.switch_page("app_pages/talk.py").run()
    for screen in SCREENS:  # a talk can be given on a generation experiment
        at.select_slider(key="w_slide").set_value(screen).run()
        ok(at)
        assert at.get("plotly_chart"), screen
    at.switch_page("app_pages/generation.py").run()  # registered under Results
    assert at.title[0].value == "Generation"


def test_the_sidebar_speaks_generation(gen: Any, monkeypatch) -> None:
    at = app(gen.ws, monkeypatch)
    meta = json.loads((_root(gen.ws, gen.exp_id) / "experiment.json").read_text())
    cap = at.sidebar.caption[0].value
    assert cap.startswith(f"{len(meta['class_names'])} slot types · teachers: gpt-char, gpt-word")
    assert at.sidebar.radio(key="w_floor").options == ["mean", "best", "joint"]
    box = at.sidebar.selectbox(key="w_method")
    assert [o.split(" — ")[0] for o in box.options] == GEN_METHODS
    assert box.value == "bayes"
    # the bridge target modes and the joint score are option settings of their own, labelled
    # by what differs
    assert sorted(at.sidebar.selectbox(key="w_setting").options) == [
        "joint_score=per_char · target_mode=detached",
        *(f"joint_score=sum · target_mode={m}" for m in ("detached", "frozen", "live"))]
    assert at.session_state["sel_setting"] == _detached(_index(gen.ws, gen.exp_id))[
        "setting"].iloc[0]  # the most-run setting first


# ---------------------------------------------------------------- recovery
def test_recovery_shows_slu_f1_and_pgr_per_method_and_k(gen: Any, monkeypatch) -> None:
    idx = _index(gen.ws, gen.exp_id)
    main = _detached(idx)  # DPO runs (kind "dpo") are not transfer runs: never in the curves
    at = app(gen.ws, monkeypatch)
    assert at.radio(key="w_metric").options == ["PGR", "SLU-F1"]
    at.radio(key="w_metric").set_value("slu_f1").run()
    ok(at)
    table = at.dataframe[0].value.set_index(["method", "k"])
    want = main.groupby(["method", "k"])["slu_f1"].agg(["mean", "size"])
    assert set(table.index) == set(want.index)
    for key, row in want.iterrows():
        assert table.loc[key, "mean"] == pytest.approx(row["mean"])
        assert table.loc[key, "n"] == row["size"]
    fig = next(v for k, v in specs(at).items() if k.startswith("recovery-slu-f1"))
    bayes = trace(fig, "bayes")
    assert list(arr(bayes["x"])) == [1, 2]
    assert np.allclose(arr(bayes["y"]), want.loc["bayes", "mean"].to_numpy())
    ceiling = idx.loc[idx["kind"] == "ceiling", "slu_f1"].mean()
    assert any(a.get("text") == f"strong ceiling {ceiling:.3f}"
               for a in fig["layout"]["annotations"])
    assert fig["layout"]["yaxis"]["title"]["text"] == "test SLU-F1"
    runs = at.dataframe[1].value  # the chosen subset's runs, generation columns
    assert {"slu_f1", "json_validity", "pgr_joint", "floor_joint", "ceiling"} <= set(runs)
    assert "accuracy" not in runs and "pgr_vote" not in runs

    at.radio(key="w_metric").set_value("pgr").run()
    at.sidebar.radio(key="w_floor").set_value("joint").run()
    ok(at)
    table = at.dataframe[0].value.set_index(["method", "k"])
    for (m, k), g in main.groupby(["method", "k"]):
        vals = g["pgr_joint"].dropna()
        assert table.loc[(m, k), "n_undefined"] == g["pgr_joint"].isna().sum()
        if len(vals):
            assert table.loc[(m, k), "mean"] == pytest.approx(vals.mean())


# ---------------------------------------------------------------- teachers
def test_teachers_show_slu_f1_validity_and_slot_agreement(gen: Any, monkeypatch) -> None:
    files = _teacher_files(gen.ws, gen.exp_id)
    summ = {t: json.loads(p.with_suffix(".json").read_text()) for t, p in files.items()}
    at = app(gen.ws, monkeypatch)
    at.switch_page("app_pages/teachers.py").run()
    ok(at)
    figs = specs(at)
    bars = figs["teacher-slu-f1"]
    assert list(bars["data"][0]["x"]) == list(summ)
    assert np.allclose(arr(trace(bars, "SLU-F1")["y"]), [s["slu_f1_test"] for s in summ.values()])
    assert np.allclose(arr(trace(bars, "JSON validity")["y"]),
                       [s["json_validity_test"] for s in summ.values()])

    # independent: each teacher's rank-0 text on test, parsed; gold from examples.parquet
    ex = pd.read_parquet(_root(gen.ws, gen.exp_id) / "examples.parquet")
    test = ex[ex["split"] == "test"]
    ids, gold = test["example_id"].tolist(), [parse_slots(g)[0] for g in test["gold"]]
    out = {}
    for t, p in files.items():
        nb = pd.read_parquet(p.with_suffix(".parquet"))
        top = nb[(nb["split"] == "test") & (nb["rank"] == 0)].set_index("example_id")
        out[t] = [parse_slots(top.loc[i, "text"])[0] for i in ids]
    a, b = out["gpt-char"], out["gpt-word"]
    same = [{(x, normalise(y)) for x, y in p} == {(x, normalise(y)) for x, y in q}
            for p, q in zip(a, b, strict=True)]
    types = sorted({t for src in (a, b, gold) for pairs in src for t, _ in pairs})
    la = [lab for p in a for lab in _labels(p, types)]
    lb = [lab for p in b for lab in _labels(p, types)]
    z_agree = _z(figs["teacher-slot-agreement"]["data"][0]["z"])
    z_kappa = _z(figs["teacher-slot-kappa"]["data"][0]["z"])
    assert z_agree[0, 1] == pytest.approx(np.mean(same))
    assert z_kappa[0, 1] == pytest.approx(cohen_kappa_score(la, lb))
    split = at.dataframe[0].value
    assert len(split) == len(ids) - sum(same)
    assert {"gold", "gpt-char", "gpt-word"} <= set(split)


# ---------------------------------------------------------------- calibration, dirichlet
def test_calibration_reads_token_confidence(gen: Any, monkeypatch) -> None:
    idx = _index(gen.ws, gen.exp_id)
    rid = _run(idx, "bayes", "gpt-char+gpt-word")
    pred = pd.read_parquet(_root(gen.ws, gen.exp_id) / "runs" / rid / "predictions.parquet")
    conf = np.concatenate([np.asarray(c, float) for c in pred["tok_conf"]])
    hit = np.concatenate([np.asarray(h, bool) for h in pred["tok_correct"]])
    bins = pd.cut(conf, np.linspace(0, 1, 11), include_lowest=True)  # (lo, hi], 0 in the first
    g = pd.DataFrame({"c": conf, "h": hit, "b": bins}).groupby("b", observed=True)
    ece = float((g.size() / len(conf) * (g["h"].mean() - g["c"].mean()).abs()).sum())
    at = app(gen.ws, monkeypatch)
    at.switch_page("app_pages/calibration.py").run()
    ok(at)
    tab = at.dataframe[0].value.set_index("source")
    assert tab.loc["bayes", "tokens"] == len(conf)
    assert tab.loc["bayes", "token_accuracy"] == pytest.approx(hit.mean())
    assert tab.loc["bayes", "ece"] == pytest.approx(ece)
    assert "ceiling" in tab.index
    rel = specs(at)["token-reliability"]
    assert {"bayes", "ceiling"} <= {t.get("name") for t in rel["data"]}


def test_dirichlet_summarises_the_token_dirichlet(gen: Any, monkeypatch) -> None:
    idx = _index(gen.ws, gen.exp_id)
    at = app(gen.ws, monkeypatch)
    at.switch_page("app_pages/dirichlet.py").run()
    ok(at)
    assert any("Generation page" in i.value for i in at.info)
    tab = at.dataframe[0].value.set_index(["method", "label"])
    for m in ("bayes", "bayes-restricted"):
        rid = _run(idx, m, "gpt-char+gpt-word")
        t = pd.read_parquet(_root(gen.ws, gen.exp_id) / "runs" / rid / "targets.parquet")
        vac = np.concatenate([np.asarray(v, float) for v in t["vacuity"]])
        ev = np.concatenate([np.asarray(v, float) for v in t["evidence"]])
        assert tab.loc[(m, "all"), "tokens"] == len(vac)
        assert tab.loc[(m, "all"), "mean_vacuity"] == pytest.approx(vac.mean())
        assert tab.loc[(m, "all"), "mean_evidence"] == pytest.approx(ev.mean())


# ---------------------------------------------------------------- compare
def test_compare_puts_generation_runs_side_by_side(gen: Any, monkeypatch) -> None:
    idx = _index(gen.ws, gen.exp_id).set_index("run_id")
    at = app(gen.ws, monkeypatch)
    at.switch_page("app_pages/compare.py").run()
    ok(at)
    side = at.dataframe[0].value.set_index("metric")
    assert side.index[0] == "slu_f1"  # the headline score leads
    chosen = at.multiselect(key="w_runs").value
    assert len(chosen) == 2
    assert np.allclose(side.loc["slu_f1"].to_numpy(float), idx.loc[chosen, "slu_f1"])
    # a DPO run is told apart from the transfer run it started from, and compares
    dpo = idx[idx["kind"] == "dpo"].index[0]
    at.multiselect(key="w_runs").set_value([*chosen, dpo]).run()
    ok(at)
    side = at.dataframe[0].value.set_index("metric")
    assert side.shape[1] == 3 and "DPO" in side.columns[-1]
    assert float(side.loc["delta_slu_f1"].iloc[-1]) == pytest.approx(
        idx.loc[dpo, "delta_slu_f1"])
    # the option settings one option apart: bayes in the three bridge target modes, each
    # point the mean over teacher subsets of the seed-0 SLU-F1 difference (runs matched)
    pick = at.multiselect(key="w_contrasts")
    assert len(pick.value) == 3 and len(pick.options) == 4  # 3 bridge-mode pairs + joint score
    pick.set_value(pick.options).run()
    ok(at)
    spec = specs(at)["compare-option-contrasts"]
    points = dict(zip(spec["data"][0]["y"], arr(spec["data"][0]["x"]), strict=True))
    tr = idx[(idx["kind"] == "transfer") & (idx["seed"] == 0)]

    def f1(mode: str, k: int) -> pd.Series:
        r = tr[(tr["method"] == "bayes") & (tr["k"] == k) & (tr["opt_target_mode"] == mode)]
        return r.set_index("subset")["slu_f1"]

    ks = sorted(tr.loc[tr["method"] == "bayes", "k"].unique())
    for a, b in (("frozen", "detached"), ("live", "detached"), ("live", "frozen")):
        for k in ks:
            name = f"target_mode={a} − target_mode={b} · bayes · K={k}"
            assert points[name] == pytest.approx((f1(a, k) - f1(b, k)).mean())
    assert len(points) == 3 * len(ks) + len(tr.loc[tr["method"] == "joint", "k"].unique())


# ---------------------------------------------------------------- talk
def test_talk_setting_quotes_the_teachers_slu_f1(gen: Any, monkeypatch) -> None:
    summ = {t: json.loads(p.with_suffix(".json").read_text())
            for t, p in _teacher_files(gen.ws, gen.exp_id).items()}
    at = app(gen.ws, monkeypatch, slide="The setting")
    at.switch_page("app_pages/talk.py").run()
    ok(at)
    best = max(s["slu_f1_test"] for s in summ.values())
    assert at.metric[0].label == "best teacher SLU-F1"
    assert at.metric[0].value == f"{best:.1%}"


# ---------------------------------------------------------------- both tasks in one workspace
def test_a_workspace_with_both_tasks(both: tuple[Path, str, str], monkeypatch) -> None:
    ws, cls, gid = both
    at = app(ws, monkeypatch, exp=cls)
    ok(at)
    assert "classes" in at.sidebar.caption[0].value
    at.sidebar.radio(key="w_floor").set_value("vote").run()
    at.sidebar.selectbox(key="w_method").set_value("naive").run()
    _pages(at)
    # switching to the generation dataset: choices it lacks fall back, nothing breaks
    at.switch_page("app_pages/recovery.py").run()
    at.sidebar.selectbox(key="w_dataset").set_value("atis-slots").run()
    ok(at)
    assert at.session_state["sel_exp"] == gid
    assert "slot types" in at.sidebar.caption[0].value
    assert at.sidebar.radio(key="w_floor").value == "mean"
    assert at.sidebar.selectbox(key="w_method").value == "bayes"
    _pages(at)
    at.sidebar.radio(key="w_floor").set_value("joint").run()
    at.switch_page("app_pages/recovery.py").run()
    at.sidebar.selectbox(key="w_dataset").set_value("tweets").run()  # and back
    ok(at)
    assert at.sidebar.radio(key="w_floor").value == "mean"
    assert "classes" in at.sidebar.caption[0].value
    assert specs(at)  # Recovery draws the classification experiment again
