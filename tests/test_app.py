"""The dashboard under Streamlit's AppTest (no browser): every page on a real quick-demo
workspace and on an empty one; selections drive the figures; the URL restores a view; a corrupt
run costs one warning; the 3-class simplex; no stack trace reaches a page."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from workspace_factory import TEACHERS_2, build_workspace, demo_workspace, make_experiment

from app_pages import _headlines as hl
from w2s_core import api, catalog, jobs
from w2s_core.errors import W2SError
from w2s_core.viz import recovery as rv
from w2s_core.viz.runs import filter_view

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
    from app_pages import _data  # the page helpers, as the running app imported them

    at = app(ws, monkeypatch, exp=ids["binary"])
    bad = str(_data.run_row(at.session_state["_ctx"], "naive")["run_id"])
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


# ---------------------------------------------------------------- the Lab
def test_lab_launches_polls_and_cancels_a_job(tmp_path: Path, monkeypatch) -> None:
    script = ("import json,os,time\n"
              "p=os.path.join(os.environ['W2S_WORKSPACE'],'experiments','demo-0123456789ab')\n"
              "os.makedirs(p,exist_ok=True)\n"
              "open(os.path.join(p,'experiment.json'),'w').write('{\"config\":{}}')\n"
              "open(os.path.join(p,'progress.jsonl'),'a').write(json.dumps({'time':0,"
              "'stage':'students','done':3,'total':12,'message':'training',"
              "'job_id':os.environ['W2S_JOB_ID']})+'\\n')\n"
              "print('working', flush=True); time.sleep(60)\n")
    monkeypatch.setattr(jobs, "cli_argv", lambda *a: [jobs.sys.executable, "-c", script])
    at = app(tmp_path, monkeypatch)
    at.button(key="run_demo").click().run()
    ok(at)
    job_dir = Path(jobs.list_jobs(tmp_path)[0]["dir"])
    for _ in range(50):  # wait for the child to write its first progress event
        if jobs.progress(tmp_path, jobs.status(job_dir)):
            break
        __import__("time").sleep(0.1)
    at.run()
    ok(at)
    assert at.progress[0].value == 25  # 3 of 12
    cancel = next(b for b in at.button if b.key and b.key.startswith("cancel_"))
    cancel.click().run()
    for _ in range(50):
        if jobs.status(job_dir)["status"] == "cancelled":
            break
        __import__("time").sleep(0.1)
    assert jobs.status(job_dir)["status"] == "cancelled"


def _wait(pred: Any, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while not pred():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


# A stand-in for `w2s sweep`: it takes the experiment's lock as the sweep does, stamps progress
# events with its job id, and fails as the CLI does (`error: <problem> — <fix>`, exit code 2).
FAKE_SWEEP = """import json, os, sys, time
from pathlib import Path
from w2s_core.errors import W2SError
from w2s_core.experiments.lock import experiment_lock
exp = Path(os.environ['W2S_WORKSPACE'], 'experiments', sys.argv[1])
exp.mkdir(parents=True, exist_ok=True)
(exp / 'experiment.json').write_text('{"config": {}}')
try:
    with experiment_lock(exp):
        with open(exp / 'progress.jsonl', 'a') as f:
            f.write(json.dumps({'time': time.time(), 'stage': 'students', 'total': 12,
                                'done': int(sys.argv[2]), 'job_id': os.environ['W2S_JOB_ID']})
                    + '\\n')
        time.sleep(60)
except W2SError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
"""


def test_lab_shows_two_jobs_progress_and_a_refused_lock(tmp_path: Path, monkeypatch) -> None:
    started = []
    for exp_id, done in (("exp-one", 3), ("exp-two", 9), ("exp-one", 1)):
        d = jobs.new_job(tmp_path, "sweep", f"sweep on {exp_id}")
        jobs.start(d, [sys.executable, "-c", FAKE_SWEEP, exp_id, str(done)], tmp_path)
        started.append(d)
        if exp_id == "exp-two":  # the third job must find exp-one locked by the first
            _wait(lambda: jobs.progress(tmp_path, jobs.status(started[0])) is not None)
    one, two, refused = started
    try:
        _wait(lambda: jobs.status(refused)["status"] == "failed")
        _wait(lambda: jobs.progress(tmp_path, jobs.status(two)) is not None)
        at = app(tmp_path, monkeypatch)
        at.switch_page("app_pages/lab.py").run()
        assert not at.exception, [e.value for e in at.exception]
        # newest card first: the refused job, then two (9 of 12), then one (3 of 12)
        assert [p.value for p in at.progress] == [75, 25]
        assert len(at.error) == 1
        msg = at.error[0].value
        assert msg.startswith("**experiment exp-one is being written by pid ")
        assert f"(Lab job {one.name})**" in msg  # the holder is named by its Lab job
        assert msg.endswith("wait for it or cancel it in the Lab; if that process is gone, "
                            "rerun: a stale lock is detected and removed")
        assert jobs.status(refused)["returncode"] == 2
    finally:
        for d in (one, two):
            jobs.cancel(d, force=True)
    _wait(lambda: all(jobs.status(d)["status"] == "cancelled" for d in (one, two)))


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


# ---------------------------------------------------------------- talk mode says what data shows
def _row(k: int, mean: float, lo: float, hi: float, n: int = 4, method: str = "bayes",
         aux: bool = False) -> dict[str, Any]:
    return {"method": method, "aux": aux, "k": k, "mean": mean, "lo": lo, "hi": hi, "n": n}


@pytest.mark.parametrize(("rows", "title"), [
    ([_row(1, .30, .25, .35), _row(3, .50, .36, .60)], "Recovery grows with K"),
    ([_row(1, .30, .25, .35), _row(3, .50, .34, .60)], "Recovery does not clearly change with K"),
    ([_row(1, .60, .55, .65), _row(5, .20, .10, .30)], "Recovery shrinks with K"),
    ([_row(1, .30, .30, .30, n=1), _row(3, .90, .88, .92)],  # one run: no interval at K=1
     "Recovery does not clearly change with K"),
    ([_row(1, .30, .25, .35), _row(3, .90, math.nan, math.nan)],
     "Recovery does not clearly change with K"),
    # the best method decides (bayes holds the highest mean), not a flat worse one
    ([_row(1, .40, .30, .50, method="naive"), _row(4, .41, .30, .52, method="naive"),
      _row(1, .20, .15, .25), _row(4, .70, .60, .80)], "Recovery grows with K"),
])
def test_recovery_headline_follows_the_intervals(rows: list[dict[str, Any]], title: str) -> None:
    assert hl.recovery_headline(pd.DataFrame(rows)).title == title


def test_recovery_headline_quotes_the_best_cell() -> None:
    table = pd.DataFrame([_row(1, .301, .25, .35, method="<b>x"), _row(2, .72, .65, .79, aux=True),
                          _row(2, .70, .60, .80), _row(3, .60, .50, .70)])
    head = hl.recovery_headline(table)
    assert "Best cell: <b>bayes</b>, with aux, K = 2: <b>72 % [65 %, 79 %]</b>" in head.line
    assert head.title == "Recovery does not clearly change with K"  # bayes: 70 % → 60 %
    one = hl.recovery_headline(table.iloc[:1])
    assert one.direction is None and "&lt;b&gt;x" in one.line and "<b>x" not in one.line
    assert "30 % [25 %, 35 %]" in one.line


@pytest.fixture(scope="module")
def trend_ws(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Two experiments whose recovery clearly shrinks / grows with K (steep, 300 test examples)."""
    ws = tmp_path_factory.mktemp("trend-ws")
    kw = {"teachers": TEACHERS_2, "class_names": ["negative", "positive"],
          "methods": ["single", "naive", "bayes"], "seeds": [0, 1], "aux": [False],
          "subsets_per_k": 2, "n_test": 300, "n_transfer": 60, "ceiling_acc": [0.9, 0.88]}
    return ws, {
        "shrinks": make_experiment(ws, name="shrinks", dataset="tweets", **kw, recovery={
            "single": (0.9, 0.0), "naive": (0.85, -0.2), "bayes": (0.95, -0.22)}),
        "grows": make_experiment(ws, name="grows", dataset="tweets", **kw, recovery={
            "single": (0.1, 0.0), "naive": (0.1, 0.2), "bayes": (0.1, 0.22)})}


def _talk_text(at: AppTest) -> str:
    return " ".join(h.proto.body for h in at.get("html"))


@pytest.mark.parametrize(("key", "word", "never"), [("shrinks", "shrinks", "grows"),
                                                    ("grows", "grows", "shrinks")])
def test_talk_says_what_recovery_does(trend_ws, key: str, word: str, never: str,
                                      monkeypatch) -> None:
    ws, ids = trend_ws
    at = app(ws, monkeypatch, exp=ids[key], slide="Recovery vs K")
    at.switch_page("app_pages/talk.py").run()
    ok(at)
    text = _talk_text(at)
    assert f"Recovery {word} with K" in text and never not in text
    # the same claim, checked by hand on the table: bayes at K=1 and K=5 have disjoint intervals
    runs, _ = api.runs(ids[key], ws)
    t = rv.recovery_table(filter_view(runs, "off", "all"), "pgr", "mean").set_index(["method", "k"])
    first, last = t.loc[("bayes", 1)], t.loc[("bayes", 5)]
    assert (last["lo"] > first["hi"]) if word == "grows" else (last["hi"] < first["lo"])
    best = t["mean"].idxmax()
    b = t.loc[best]
    assert (f"Best cell: <b>{best[0]}</b>, without aux, K = {best[1]}: <b>{100 * b['mean']:.0f} % "
            f"[{100 * b['lo']:.0f} %, {100 * b['hi']:.0f} %]</b>") in text


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


# ---------------------------------------------------------------- the Lab lists, without torch
LAB_IN_A_FRESH_PROCESS = """import json, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=120).run()  # an empty workspace: the Lab
print(json.dumps({
    "errors": [e.value for e in at.exception] + [e.value for e in at.error],
    "title": [t.value for t in at.title],
    "heavy": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers")),
    "datasets": at.selectbox(key="lab_dataset").options,
    "teachers": at.multiselect(key="lab_teachers").options,
    "students": at.selectbox(key="lab_student").options,
    "methods": at.multiselect(key="lab_methods").options}))
"""


def test_the_lab_lists_the_catalog_without_importing_torch(tmp_path: Path) -> None:
    # a fresh interpreter: this test process may have imported torch for other tests
    env = {**os.environ, "W2S_WORKSPACE": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", LAB_IN_A_FRESH_PROCESS, APP], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert seen["errors"] == [] and seen["title"] == ["Lab"]
    assert seen["heavy"] == []  # the dashboard never imports torch, even to list models
    assert seen["datasets"] == [d.name if d.offline else f"{d.name} (needs the HF hub)"
                                for d in catalog.datasets()]
    assert "file" in seen["datasets"] and "sciq (needs the HF hub)" in seen["datasets"]
    assert seen["teachers"] == [m.name for m in catalog.models()]
    assert seen["students"] == [m.name for m in catalog.models() if m.kind in ("encoder",
                                                                              "causal")]
    assert "tfidf-logreg" in seen["teachers"] and "tfidf-logreg" not in seen["students"]
    assert seen["methods"] == [m.name for m in catalog.methods()]
