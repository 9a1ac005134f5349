"""The dashboard's Talk mode and Lab under AppTest: Talk headlines say only what the intervals
show (and name how they were computed), the Lab launches, polls and cancels jobs, shows a refused
lock, and lists the torch-free catalog without importing torch (split from test_app.py)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from test_app import APP, app, ok
from workspace_factory import TEACHERS_2, make_experiment

from app_pages import _headlines as hl
from w2s_core import api, catalog, jobs
from w2s_core.metrics.intervals import interval_note
from w2s_core.viz import recovery as rv
from w2s_core.viz.runs import filter_view


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
    # the screen names how its intervals were computed (teacher subsets: one replicate)
    assert interval_note(t) in [c.value for c in at.caption]
    assert "over 2 teacher subsets" in interval_note(t)
    first, last = t.loc[("bayes", 1)], t.loc[("bayes", 5)]
    assert (last["lo"] > first["hi"]) if word == "grows" else (last["hi"] < first["lo"])
    best = t["mean"].idxmax()
    b = t.loc[best]
    assert (f"Best cell: <b>{best[0]}</b>, without aux, K = {best[1]}: <b>{100 * b['mean']:.0f} % "
            f"[{100 * b['lo']:.0f} %, {100 * b['hi']:.0f} %]</b>") in text



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
