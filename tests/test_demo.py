"""`w2s demo --quick` end to end with the real packaged models, then `w2s report`."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd

from w2s_core import api


def test_quick_demo_end_to_end(demo_workspace):
    exps = api.list_experiments(demo_workspace)
    assert len(exps) == 1 and exps.loc[0, "status"] == "done"
    exp_id = exps.loc[0, "id"]
    runs, warns = api.runs(exp_id, demo_workspace)
    assert not warns
    # 31 subsets: 5 singletons × (single, joint, bayes, bayes-softy) + 26 × 6 methods; ±aux; 2 seeds
    assert (runs.kind == "transfer").sum() == (5 * 4 + 26 * 6) * 2 * 2
    assert (runs.kind == "ceiling").sum() == 2
    teachers = api.teacher_predictions(exp_id, demo_workspace)
    assert list(teachers) == ["tfidf-logreg", "minilm-l3", "minilm-l6", "mpnet-2l", "mpnet-4l"]
    rep = api.report(exp_id, demo_workspace)
    floors = [t["accuracy_test"] for t in rep["teachers"]]
    # real models on real tweets: every teacher beats chance, the student's ceiling beats them
    assert min(floors) > 0.6
    assert len(rep["ceiling"]) == 1 and rep["ceiling"][0]["mean"] > max(floors)
    ag = rep["agreement"]
    assert 0 < ag["fleiss_kappa"] < 1 and ag["mean_vote_entropy"] > 0
    assert ag["kappa"]["minilm-l3"]["minilm-l3"] == 1.0
    rec = pd.DataFrame(rep["recovery"])
    assert set(rec.method) == {"single", "naive", "joint", "vote", "dawid-skene", "bayes",
                               "bayes-softy"}
    assert set(rec.k) == {1, 2, 3, 4, 5} and rec.setting.nunique() == 1
    # one data replicate: intervals over teacher subsets where K has several, else over seeds
    assert set(rec.loc[rec.k.isin([1, 2, 3, 4]), "unit"]) == {"subset"}
    assert set(rec.loc[rec.k == 5, "unit"]) == {"seed"}
    has = rec.lo.notna()
    assert ((rec.lo[has] <= rec["mean"][has]) & (rec["mean"][has] <= rec.hi[has])).all()
    # the student recovers part of the gap on average
    assert rec["mean"].mean() > 0
    comp = pd.DataFrame(rep["comparisons"])
    bn = comp[(comp.a == "bayes") & (comp.b == "naive")]
    for metric in ("pgr_mean", "accuracy"):  # per aux setting, never pooled
        assert sorted(bn[bn.metric == metric].aux) == [False, True]


def test_report_formats(demo_workspace):
    base = [sys.executable, "-m", "w2s_core.cli", "report", "--workspace", str(demo_workspace)]
    table = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0 and "weak floors" in table.stdout and "PGR" in table.stdout
    js = subprocess.run(base + ["--format", "json", "--floor", "vote"], capture_output=True,
                        text=True, timeout=120)
    data = json.loads(js.stdout)
    assert data[0]["floor"] == "vote" and data[0]["recovery"]
    csv = subprocess.run(base + ["--format", "csv"], capture_output=True, text=True, timeout=120)
    header = csv.stdout.splitlines()[0].split(",")
    assert header[:4] == ["setting", "method", "aux", "k"] and "interval" in header
    assert "Intervals:" in table.stdout
