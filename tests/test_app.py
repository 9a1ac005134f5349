"""The dashboard under Streamlit's AppTest (no browser): every page on a real quick-demo
workspace and on an empty one; selections drive the figures; the URL restores a view; a corrupt
run costs one warning; the 3-class simplex; no stack trace reaches a page."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from workspace_factory import build_workspace, demo_workspace

from w2s_core import api, jobs
from w2s_core.errors import W2SError

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
              "'stage':'students','done':3,'total':12,'message':'training'})+'\\n')\n"
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
