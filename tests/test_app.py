"""The dashboard under Streamlit's AppTest (no browser): every page on a real quick-demo
workspace and on an empty one; selections drive the figures; the URL restores a view; a corrupt
run costs one warning; the 3-class simplex; no stack trace reaches a page; option settings are
never pooled, a chosen data replicate is what one-run views show, and Calibration measures each
student against its own weak labels. Talk mode and the Lab: test_app_talk_lab.py."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from workspace_factory import (
    SETTING_BOOST,
    TEACHERS_2,
    build_workspace,
    demo_workspace,
    make_experiment,
    make_identity_experiment,
)

from app_pages import _data  # the page helpers, the same module the running app imports
from w2s_core import api
from w2s_core.errors import W2SError
from w2s_core.metrics.intervals import interval_note
from w2s_core.viz.runs import setting_names

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = ["app_pages/recovery.py", "app_pages/teachers.py", "app_pages/dirichlet.py",
         "app_pages/calibration.py", "app_pages/compare.py", "app_pages/talk.py",
         "app_pages/lab.py"]
CHART_PAGES = PAGES[:-1]


@pytest.fixture(scope="session")
def demo_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_workspace(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    ws = tmp_path_factory.mktemp("synthetic-ws")
    return ws, build_workspace(ws)


def app(ws: Path, monkeypatch: pytest.MonkeyPatch, **query: str) -> AppTest:
    monkeypatch.setenv("W2S_WORKSPACE", str(ws))
    st.cache_data.clear()  # the cache is process-wide: one test's workspace must not leak
    at = AppTest.from_file(APP, default_timeout=90)
    at.query_params.update(query)
    return at.run()


def ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def specs(at: AppTest) -> dict[str, dict[str, Any]]:
    return {n.key.removeprefix("chart_"): json.loads(n.proto.spec)
            for n in at.get("plotly_chart")}


def arr(v: Any) -> np.ndarray:
    """Plotly ≥ 6 ships numpy data as base64 typed arrays."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return a.reshape(v["shape"]) if "shape" in v else a
    return np.asarray(v)


def trace(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in spec["data"] if t.get("name") == name)


def recovery_spec(at: AppTest) -> dict[str, Any]:
    return next(v for k, v in specs(at).items() if k.startswith("recovery-"))


# ---------------------------------------------------------------- every page
def test_every_page_runs_on_the_demo_workspace(demo_ws: Path, monkeypatch) -> None:
    at = app(demo_ws, monkeypatch)
    ok(at)
    assert at.title[0].value == "Recovery vs ensemble size"
    for page in PAGES:
        at.switch_page(page).run()
        ok(at)
        if page in CHART_PAGES:
            assert at.get("plotly_chart"), f"{page} drew no chart"
            assert at.get("download_button"), f"{page} offers no downloads"
    assert at.session_state["sel_exp"] in api.list_experiments(demo_ws)["id"].tolist()


def test_every_page_runs_on_an_empty_workspace(tmp_path: Path, monkeypatch) -> None:
    at = app(tmp_path, monkeypatch)
    ok(at)
    assert at.title[0].value == "Lab"  # an empty workspace leads to the Lab …
    assert at.button(key="run_demo").proto.type == "primary"  # … and its one-click demo
    for page in CHART_PAGES[1:]:  # the default page (Recovery) forwards to the Lab
        at.switch_page(page).run()
        ok(at)
        assert not at.get("plotly_chart")
        assert any("No experiments" in i.value for i in at.info), page


# ---------------------------------------------------------------- selections drive figures
def test_changing_k_and_method_redraws_recovery(demo_ws: Path, monkeypatch) -> None:
    at = app(demo_ws, monkeypatch)
    ks = at.sidebar.select_slider(key="w_k").options
    assert len(ks) >= 2
    first = recovery_spec(at)
    k_new = int(ks[0])
    at.sidebar.select_slider(key="w_k").set_value(k_new).run()
    ok(at)
    second = recovery_spec(at)
    assert set(arr(trace(second, f"K = {k_new}")["x"])) == {k_new}
    assert second["data"] != first["data"]
    assert at.query_params["k"] == [str(k_new)] or at.query_params["k"] == str(k_new)
    # AppTest lists formatted labels ("bayes — Bayesian (EDL)"); set_value wants the value
    box = at.sidebar.selectbox(key="w_method")
    other = next(m for m in (lab.split(" — ")[0] for lab in box.options)
                 if m != at.session_state["sel_method"])
    box.set_value(other).run()
    widths = {t["name"]: t["line"]["width"] for t in recovery_spec(at)["data"]
              if t.get("mode") == "lines+markers" and "line" in t and "width" in t["line"]}
    assert widths[other] == max(widths.values())


def test_changing_the_example_redraws_the_dirichlet(demo_ws: Path, monkeypatch) -> None:
    at = app(demo_ws, monkeypatch)
    at.switch_page("app_pages/dirichlet.py").run()
    ok(at)
    box = at.selectbox(key="w_example")
    before = specs(at)["dirichlet-density"]
    last = box.options[-1].split(" — ")[0].split()[-1]  # label "u=0.12 ✓ <id> — <text>"
    box.set_value(last).run()
    ok(at)
    after = specs(at)["dirichlet-density"]
    assert after["layout"]["title"]["text"] != before["layout"]["title"]["text"]
    assert not np.allclose(arr(after["data"][0]["y"]), arr(before["data"][0]["y"]))
    at.switch_page("app_pages/teachers.py").run()  # the example follows to the Teachers page
    ok(at)


# ---------------------------------------------------------------- URL → view
def test_query_params_restore_a_view(demo_ws: Path, monkeypatch) -> None:
    probe = app(demo_ws, monkeypatch)
    ks = probe.sidebar.select_slider(key="w_k").options
    k = str(ks[0])
    method = probe.sidebar.selectbox(key="w_method").options[0].split(" — ")[0]
    at = app(demo_ws, monkeypatch, k=k, floor="best", metric="accuracy", method=method,
             exp="../../etc")  # a bad experiment id from a URL is ignored, never opened
    ok(at)
    assert at.sidebar.select_slider(key="w_k").value == int(k)
    assert at.sidebar.radio(key="w_floor").value == "best"
    assert at.sidebar.selectbox(key="w_method").value == method
    assert at.radio(key="w_metric").value == "accuracy"
    assert at.session_state["sel_exp"] != "../../etc"
    spec = recovery_spec(at)
    assert spec["layout"]["yaxis"]["title"]["text"] == "test accuracy"
    at.switch_page("app_pages/teachers.py").run()
    at.switch_page("app_pages/recovery.py").run()
    assert at.sidebar.select_slider(key="w_k").value == int(k)  # survives a page switch


# ---------------------------------------------------------------- awkward workspaces
def test_a_corrupt_run_costs_one_warning(synth, monkeypatch) -> None:
    ws, ids = synth
    at = app(ws, monkeypatch, exp=ids["binary"])
    for page in CHART_PAGES:
        at.switch_page(page).run()
        ok(at)
        named = [w.value for w in at.warning if ids["corrupt_run"] in w.value]
        assert len(named) == 1, (page, [w.value for w in at.warning])
        assert at.get("plotly_chart"), page


def test_an_unreadable_prediction_file_costs_one_warning(synth, monkeypatch) -> None:
    ws, ids = synth
    at = app(ws, monkeypatch, exp=ids["binary"])
    bad = str(_data.chosen_run(at.session_state["_ctx"], "naive")["run_id"])
    real = api.run_predictions

    def flaky(exp_id: str, run_id: str, workspace: Any = None) -> Any:
        if run_id == bad:  # as a truncated parquet file reads
            raise W2SError(f"corrupt or truncated parquet file {run_id}/predictions.parquet")
        return real(exp_id, run_id, workspace)

    monkeypatch.setattr(api, "run_predictions", flaky)
    st.cache_data.clear()
    at.switch_page("app_pages/teachers.py").run()
    ok(at)
    assert len([w.value for w in at.warning if bad in w.value]) == 1
    split = at.dataframe[0].value
    assert "→ naive" not in split.columns and "→ bayes" in split.columns
    assert len(at.get("plotly_chart")) >= 4  # the rest of the page still draws


def test_three_classes_draw_a_simplex_and_flag_undefined_pgr(synth, monkeypatch) -> None:
    ws, ids = synth
    at = app(ws, monkeypatch, exp=ids["ternary"], floor="best", k="2")
    ok(at)
    assert any("undefined" in w.value for w in at.warning)
    table = at.dataframe[0].value  # the recovery table under the chart
    assert table["n_undefined"].sum() > 0
    at.switch_page("app_pages/dirichlet.py").run()
    ok(at)
    density = specs(at)["dirichlet-density"]
    assert density["data"][0]["type"] == "scatterternary"
    assert {"a", "b", "c"} <= set(density["data"][0])


def test_a_failing_view_shows_one_line_not_a_traceback(synth, monkeypatch) -> None:
    from w2s_core.viz import recovery

    def boom(*a: Any, **k: Any) -> None:
        raise ValueError("synthetic failure")

    monkeypatch.setattr(recovery, "recovery_figure", boom)
    ws, ids = synth
    at = app(ws, monkeypatch, exp=ids["binary"])
    assert not at.exception
    assert len(at.error) == 1 and "synthetic failure" in at.error[0].value
    assert "Traceback" not in at.error[0].value
    at.switch_page("app_pages/lab.py").run()  # the rest of the app keeps working
    ok(at)


# ---------------------------------------------------------------- experiments named by their data
def _small(ws: Path, name: str, dataset: str, **kw: Any) -> str:
    two = dict(list(TEACHERS_2.items())[:2])
    return make_experiment(ws, name=name, dataset=dataset, teachers=two,
                           class_names=["negative", "positive"], methods=["single", "naive"],
                           seeds=[0], aux=[False], subsets_per_k=1, n_test=40, n_transfer=40,
                           ceiling_acc=[0.9], **kw)


def test_a_user_files_experiments_are_listed_under_its_name(tmp_path: Path, monkeypatch) -> None:
    mine = _small(tmp_path, "mine", "file", data={"path": str(tmp_path / "in" / "my_data.csv")})
    builtin = _small(tmp_path, "builtin", "tweets")
    listed = api.list_experiments(tmp_path).set_index("id")["dataset"]
    assert listed.to_dict() == {mine: "my_data.csv", builtin: "tweets"}
    at = app(tmp_path, monkeypatch, exp=mine)
    ok(at)
    box = at.sidebar.selectbox(key="w_dataset")
    assert sorted(box.options) == ["my_data.csv", "tweets"] and box.value == "my_data.csv"


# ---------------------------------------------------------------- one setting, one replicate
@pytest.fixture(scope="module")
def ident(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Two option settings × two data replicates (``make_identity_experiment``)."""
    ws = tmp_path_factory.mktemp("identity-ws")
    return ws, make_identity_experiment(ws)


def captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def test_the_setting_selector_never_pools_two_settings(ident, monkeypatch) -> None:
    ws, exp = ident
    runs, _ = api.runs(exp, ws)
    names = setting_names(runs, api.experiment(exp, ws)["settings"])
    assert sorted(names.values()) == ["evidence=exp · kl_scale=1", "evidence=relu · kl_scale=0.1"]
    at = app(ws, monkeypatch, exp=exp)
    ok(at)
    assert sorted(at.sidebar.selectbox(key="w_setting").options) == sorted(names.values())
    means = {}
    for s in sorted(names):
        at.sidebar.selectbox(key="w_setting").set_value(s).run()
        ok(at)
        assert at.query_params["setting"] in (s, [s])
        table = at.dataframe[0].value
        assert set(table["setting"]) == {s} and len(table) == 8  # (method, K) cells of s
        # by hand: mean over each data replicate's runs, then over the two replicates
        tr = runs[(runs["kind"] == "transfer") & (runs["setting"] == s)
                  & (runs["method"] == "naive") & (runs["k"] == 2)]
        row = table[(table["method"] == "naive") & (table["k"] == 2)].iloc[0]
        assert row["mean"] == pytest.approx(tr.groupby("data_seed")["pgr_mean"].mean().mean())
        assert set(table["unit"]) == {"data_seed"}  # all replicates: intervals over them
        assert interval_note(table) in captions(at)
        assert "over 2 data replicates" in interval_note(table)
        means[names[s]] = table["mean"].mean()
        at.switch_page("app_pages/talk.py").run()
        at.select_slider(key="w_slide").set_value("Recovery vs K").run()
        ok(at)
        assert any(c.endswith(f"Option setting: {names[s]}.") for c in captions(at))
        at.switch_page("app_pages/recovery.py").run()
    # as constructed, the relu setting recovers SETTING_BOOST more of the gap
    gap = means["evidence=relu · kl_scale=0.1"] - means["evidence=exp · kl_scale=1"]
    assert gap > SETTING_BOOST / 2


def test_a_chosen_data_replicate_is_what_one_run_views_show(ident, monkeypatch) -> None:
    ws, exp = ident
    ex = api.examples(exp, ws)  # each replicate's own split draw
    test = {d: set(ex.loc[(ex["data_seed"] == d) & (ex["split"] == "test"), "example_id"])
            for d in (0, 1)}
    at = app(ws, monkeypatch, exp=exp)
    box = at.sidebar.selectbox(key="w_data_seed")
    assert box.options == ["all replicates", "data seed 0", "data seed 1"]
    box.set_value(1).run()
    ok(at)
    assert set(at.dataframe[0].value["unit"]) <= {"subset", "seed"}  # one replicate
    at.switch_page("app_pages/dirichlet.py").run()
    ok(at)
    assert _data.chosen_run(at.session_state["_ctx"], "bayes")["data_seed"] == 1
    shown = {o.split(" — ")[0].split()[-1] for o in at.selectbox(key="w_example").options}
    assert shown == test[1] != test[0]
    assert any(c.startswith("Bayesian run:") and "data seed 1" in c for c in captions(at))
    at.switch_page("app_pages/teachers.py").run()
    ok(at)
    split = set(at.dataframe[0].value["example_id"])
    assert split and split <= test[1] and split - test[0]
    at.switch_page("app_pages/compare.py").run()
    ok(at)
    assert all("data seed" in o and "kl_scale=" in o
               for o in at.multiselect(key="w_runs").options if not o.startswith("ceiling"))
    # its two settings differ in two options (evidence and kl_scale): nothing to pair
    assert "compare-option-contrasts" not in specs(at) and "compare-metrics" in specs(at)


def _agreement(p: np.ndarray, ref: np.ndarray) -> float:
    return float((p.argmax(1) == ref.argmax(1)).mean())


def test_calibration_measures_students_against_their_own_weak_labels(ident, monkeypatch
                                                                      ) -> None:
    ws, exp = ident
    at = app(ws, monkeypatch, exp=exp, k="2")
    at.switch_page("app_pages/calibration.py").run()
    ok(at)
    tab = at.dataframe[0].value.set_index("source")
    c = at.session_state["_ctx"]
    teach = api.teacher_predictions(exp, ws, 0)
    differs = 0
    for m in ("naive", "vote", "bayes"):
        run = _data.chosen_run(c, m)
        preds = api.run_predictions(exp, run["run_id"], ws).set_index("example_id")
        p, w = (preds.filter(regex=rf"^{x}_\d+$").to_numpy() for x in "pw")
        assert tab.loc[m, "weak_agreement"] == pytest.approx(_agreement(p, w))
        assert tab.loc[m, "weak_reference"] == "its own weak labels (w_*)"
        assert run["weak_agreement"] == pytest.approx(_agreement(p, w))  # metrics.json's
        soft = np.mean([teach[t].set_index("example_id").loc[preds.index].filter(
            regex=r"^p_\d+$").to_numpy() for t in run["subset"].split("+")], axis=0)
        differs += _agreement(p, soft) != pytest.approx(_agreement(p, w))
    assert differs  # the vote student's reference is not the soft vote: the test can fail
    assert tab.loc["weak vote", "weak_agreement"] == 1.0
    assert tab.loc["weak vote", "weak_reference"] == "subset's soft vote"


def test_one_setting_adds_no_selector_and_old_runs_use_the_soft_vote(synth, monkeypatch
                                                                      ) -> None:
    ws, ids = synth
    at = app(ws, monkeypatch, exp=ids["binary"])
    ok(at)
    keys = {w.key for w in at.sidebar.selectbox}
    assert "w_method" in keys and not keys & {"w_setting", "w_data_seed"}
    assert "setting" not in at.query_params and "data_seed" not in at.query_params
    at.switch_page("app_pages/calibration.py").run()
    ok(at)
    tab = at.dataframe[0].value
    students = tab[tab["kind"] == "student"]
    assert len(students) >= 3
    assert set(students["weak_reference"]) == {"subset's soft vote (run predates w_*)"}
    vote = tab.set_index("source").loc[tab["kind"].eq("teacher").to_numpy(), "weak_reference"]
    assert set(vote) == {"subset's soft vote"}
    assert any("written before runs stored their weak labels" in c for c in captions(at))


# ---------------------------------------------------------------- icons
def test_every_icon_is_a_material_symbol() -> None:
    """Icons in Markdown text are not checked by Streamlit (an unknown name shows as its letters),
    and an emoji needs an emoji font, which headless Debian lacks (it drew empty boxes)."""
    from streamlit.string_util import is_material_icon

    root = Path(APP).parent
    text = "\n".join(p.read_text(encoding="utf-8")
                     for p in [root / "app.py", *sorted((root / "app_pages").glob("*.py"))])
    names = re.findall(r":material/([a-z0-9_]+):", text)
    assert len(set(names)) >= 10
    assert [n for n in names if not is_material_icon(n)] == []
    assert not re.findall("[\U0001F000-\U0001FFFF\uFE0F\u23F3\u2705\u274C\u26A0]", text)
