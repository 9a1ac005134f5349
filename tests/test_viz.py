"""The dashboard's pure side: colours, run selection, data prep and figure builders, exports,
and background jobs. No Streamlit here — these run in milliseconds (kaleido and jobs: seconds)."""

from __future__ import annotations

import io
import itertools
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from w2s_core import jobs
from w2s_core.experiments import store, tables
from w2s_core.metrics.classification import ece
from w2s_core.viz import calibration as cv
from w2s_core.viz import colors, export, recovery
from w2s_core.viz import compare as cmp
from w2s_core.viz import posteriors as pv
from w2s_core.viz import runs as R
from w2s_core.viz import teachers as tv

nan = float("nan")


def _runs() -> pd.DataFrame:
    """A small run index: 2 methods × K ∈ {1, 2} × aux × 2 seeds, plus two ceilings."""
    rows = []
    for seed in (0, 1):
        rows.append({"run_id": f"c{seed}", "kind": "ceiling", "method": "ceiling", "k": 0,
                     "aux": False, "seed": seed, "subset": "", "accuracy": 0.9 - 0.02 * seed})
        for k, subsets in ((1, ["a", "b"]), (2, ["a+b"])):
            for sub in subsets:
                for m in ("naive", "bayes"):
                    for aux in (False, True):
                        acc = 0.7 + 0.05 * k + (0.02 if m == "bayes" else 0) + 0.01 * seed
                        rows.append({"run_id": f"{m}-{sub}-{aux}-{seed}", "kind": "transfer",
                                     "method": m, "k": k, "aux": aux, "seed": seed,
                                     "subset": sub, "accuracy": acc, "floor_mean": 0.7,
                                     "floor_best": 0.72,
                                     "pgr_mean": (acc - 0.7) / 0.2,
                                     "pgr_best": nan if (seed == 1 and k == 2) else 0.5})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- colours
def test_colours_are_distinct_stable_and_readable() -> None:
    demo = ["tfidf-logreg", "minilm-l3", "minilm-l6", "mpnet-2l", "mpnet-4l"]
    teach = [colors.teacher_color(t) for t in demo]
    meth = [colors.method_color(m) for m in colors.METHOD_ORDER]
    assert len(set(teach)) == 5 and len(set(meth)) == len(meth)
    assert not set(teach) & set(meth)  # a teacher is never drawn in a method's colour
    assert colors.teacher_color("my-bert") == colors.teacher_color("my-bert")
    for c in teach + meth:  # mid-tones: neither near-white nor near-black (both themes)
        lum = sum(int(c[i:i + 2], 16) for i in (1, 3, 5)) / 3
        assert 60 < lum < 215, c
    assert colors.order_methods(["zeta", "bayes", "naive"]) == ["naive", "bayes", "zeta"]
    assert colors.rgba("#ff0000", 0.5) == "rgba(255,0,0,0.5)"


# ---------------------------------------------------------------- run selection
def test_run_selection() -> None:
    runs = _runs()
    assert R.k_options(runs) == [1, 2]
    assert R.subset_options(runs, 1) == ["a", "b"]
    assert R.method_options(runs) == ["naive", "bayes"]
    assert R.aux_options(runs) == ["off", "on", "both"]
    assert len(R.filter_view(runs, "on", 1)) == 6
    row = R.pick_run(runs, "bayes", "a+b", "both", "all")
    assert (row["aux"], row["seed"]) == (False, 0)  # without aux, smallest seed
    assert R.pick_run(runs, "vote", "a+b", "both", "all") is None
    assert R.run_label(row) == "bayes · K=2 · seed 0 · a + b"
    assert R.ceiling_for(runs, 1)["run_id"] == "c1"
    assert R.transfer_runs(pd.DataFrame()).empty and R.k_options(pd.DataFrame()) == []


def test_the_default_method_has_a_run_of_the_chosen_subset() -> None:
    """A partial sweep (the demo slice: single-hard only at K = 1, naive-soft and joint at
    K = 3) must not open the sidebar on a method the chosen subset lacks."""
    rows = [{"run_id": f"{m}-{sub}", "kind": "transfer", "method": m, "k": len(sub.split("+")),
             "aux": False, "seed": 0, "subset": sub}
            for m, sub in (("single-hard", "b"), ("naive-soft", "a+b+c"), ("joint", "a+b+c"))]
    runs = pd.DataFrame(rows)
    assert R.default_method(runs, "a+b+c") == "naive-soft"  # method order, not table order
    assert R.default_method(runs, "b") == "single-hard"
    with_bayes = pd.concat([runs, pd.DataFrame([{**rows[1], "run_id": "x", "method": "bayes"}])])
    assert R.default_method(with_bayes, "a+b+c") == "bayes"  # preferred where it has a run
    assert R.default_method(with_bayes, "b") == "single-hard"
    assert R.default_method(runs, "zz") is None and R.default_method(pd.DataFrame(), "b") is None


def _identity_runs() -> pd.DataFrame:
    """Two option settings (s1, s2) × two data replicates; s1 and s2 share a training setting
    (t1), s3 trains differently (t2); one ceiling per (training setting, replicate)."""
    rows = [{"run_id": f"c-{t}-{d}", "kind": "ceiling", "method": "ceiling", "k": 0, "aux": False,
             "seed": 0, "subset": "", "data_seed": d, "setting": f"h-{t}", "train_setting": t,
             "accuracy": 0.9} for t in ("t1", "t2") for d in (0, 1)]
    for setting, train, n in (("s1", "t1", 2), ("s2", "t1", 1), ("s3", "t2", 1)):
        for d, i in itertools.product((0, 1), range(n)):
            rows.append({"run_id": f"{setting}-{d}-{i}", "kind": "transfer", "method": "naive",
                         "k": 2, "aux": False, "seed": i, "subset": "a+b", "data_seed": d,
                         "setting": setting, "train_setting": train, "accuracy": 0.8})
    return pd.DataFrame(rows)


def test_view_runs_keeps_one_setting_its_ceilings_and_one_replicate() -> None:
    runs = _identity_runs()
    assert R.setting_options(runs) == ["s1", "s2", "s3"]  # the most-run first
    one = R.view_runs(runs, "s2")
    assert sorted(one["run_id"]) == ["c-t1-0", "c-t1-1", "s2-0-0", "s2-1-0"]
    assert sorted(R.view_runs(runs, "s3", 1)["run_id"]) == ["c-t2-1", "s3-1-0"]
    assert R.view_runs(runs).equals(runs)  # no setting, all replicates: everything
    assert R.train_setting_of(runs, "s3") == "t2" and R.train_setting_of(runs, None) is None
    assert R.view_runs(_runs(), "s1").equals(_runs())  # an index without identity columns
    # the ceiling level of s3 is its own training setting's
    assert recovery.ceiling_level(runs.assign(accuracy=np.where(
        runs["train_setting"] == "t2", 0.7, 0.9)), "all", "t2") == pytest.approx(0.7)


def test_identity_labels_name_the_setting_and_the_data_seed() -> None:
    runs = _identity_runs()
    names = {"s1": "kl_scale=1", "s2": "kl_scale=0.1", "s3": "lr=0.01"}
    labels = R.identity_labels(runs, names)
    assert labels["s2-1-0"] == "naive · K=2 · seed 0 · a + b · kl_scale=0.1 · data seed 1"
    # a ceiling serves every option setting of its training setting
    assert labels["c-t1-0"] == "ceiling · seed 0 · kl_scale=1 | kl_scale=0.1 · data seed 0"
    assert labels["c-t2-1"] == "ceiling · seed 0 · lr=0.01 · data seed 1"
    assert len(set(labels.values())) == len(runs)  # every run told apart
    single = runs[(runs["setting"] == "s1") & (runs["data_seed"] == 0)]
    assert R.identity_labels(single, {"s1": "as configured"})["s1-0-1"] == \
        "naive · K=2 · seed 1 · a + b"  # one setting, one replicate: the short label


# ---------------------------------------------------------------- recovery
def test_recovery_table_counts_undefined_pgr() -> None:
    table = recovery.recovery_table(R.filter_view(_runs(), "off", "all"), "pgr", "best")
    assert list(table.columns) == tables.RECOVERY_COLUMNS
    assert recovery.recovery_table is tables.recovery_table  # one table for report and app
    k2 = table[(table["method"] == "naive") & (table["k"] == 2)].iloc[0]
    assert (k2["n"], k2["n_undefined"]) == (1, 1)  # seed 1's undefined PGR is counted
    k1 = table[(table["method"] == "bayes") & (table["k"] == 1)].iloc[0]
    assert k1["n"] == 4 and k1["lo"] <= k1["mean"] <= k1["hi"]
    acc = recovery.recovery_table(R.filter_view(_runs(), "both", 0), "accuracy")
    assert set(acc["aux"]) == {False, True} and (acc["n_undefined"] == 0).all()
    assert acc.loc[(acc["k"] == 2) & (acc["method"] == "naive"), "mean"].iloc[0] == \
        pytest.approx(0.8)


def test_recovery_figure_highlights_k_and_method_and_shows_undefined() -> None:
    table = recovery.recovery_table(R.filter_view(_runs(), "off"), "pgr", "best")
    fig = recovery.recovery_figure(table, metric="pgr", k_selected=2, method_selected="bayes")
    names = [t.name for t in fig.data]
    assert {"naive", "bayes", "undefined PGR", "K = 2"} <= set(names)
    sel = next(t for t in fig.data if t.name == "K = 2")
    assert list(sel.x) == [2, 2]
    widths = {t.name: t.line.width for t in fig.data if t.name in ("naive", "bayes")}
    assert widths["bayes"] > widths["naive"]
    undef = next(t for t in fig.data if t.name == "undefined PGR")
    assert "2 undefined" in undef.text[0]
    acc = recovery.recovery_figure(recovery.recovery_table(_runs(), "accuracy"),
                                   metric="accuracy", ceiling=0.89)
    assert any(t.name.startswith("weak floor") for t in acc.data)
    assert recovery.ceiling_level(_runs()) == pytest.approx(0.89)
    empty = recovery.recovery_figure(recovery.recovery_table(pd.DataFrame()))
    assert empty.layout.annotations[0].text == "No transfer runs in view"


# ---------------------------------------------------------------- teachers
def _teacher_frames(n: int = 60, c: int = 2, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, c, n)
    ids = [f"x{i}" for i in range(n)]
    split = ["transfer"] * (n // 2) + ["test"] * (n - n // 2)
    out = {}
    for j, name in enumerate(["t1", "t2", "t3"]):
        p = rng.dirichlet(np.ones(c), n)
        p[np.arange(n), gold] += 0.6 + 0.2 * j
        p /= p.sum(1, keepdims=True)
        df = store.predictions_frame(ids, gold, p, split=split)
        out[name] = df.sample(frac=1.0, random_state=j)  # stored row order must not matter
    return out


def test_teacher_stack_aligns_rows_by_id() -> None:
    frames = _teacher_frames()
    ids, gold, probs = tv.teacher_stack(frames, "test")
    assert probs.shape == (3, 30, 2) and len(ids) == 30
    ref = frames["t2"].set_index("example_id").loc[ids]
    np.testing.assert_allclose(probs[1], store.probs_of(ref))
    np.testing.assert_array_equal(gold, ref["gold"].to_numpy())


def test_teacher_views() -> None:
    frames = _teacher_frames()
    acc = tv.teacher_accuracy(frames)
    assert set(acc["split"]) == {"transfer", "test"} and acc["accuracy"].between(0, 1).all()
    fig = tv.teacher_accuracy_figure(acc, ["t1"])
    assert list(fig.data[0].marker.opacity) == [1.0, 0.35, 0.35]
    ids, gold, probs = tv.teacher_stack(frames, "test")
    kappa = tv.agreement_matrix(probs, list(frames))
    assert np.allclose(np.diag(kappa), 1) and np.allclose(kappa, kappa.T)
    assert tv.agreement_heatmap(kappa).data[0].type == "heatmap"
    votes = tv.vote_table(ids, probs)
    assert set(votes["votes"]) <= {"3", "2–1"}
    assert (votes.loc[votes["votes"] == "3", "entropy"] == 0).all()
    students = {"naive": probs.mean(0)}
    split = tv.split_examples(ids, gold, probs, list(frames), {"x31": "hi"}, ["neg", "pos"],
                              students)
    assert (split["entropy"] > 0).all() and len(split) == (votes["entropy"] > 0).sum()
    assert {"t1", "t2", "t3", "→ naive"} <= set(split.columns)
    assert split["→ naive"].str[0].isin(["✓", "✗"]).all()
    long = tv.example_probs({"t1": probs[0, 0]}, {"naive": students["naive"][0]}, ["neg", "pos"])
    assert len(long) == 4 and long["probability"].sum() == pytest.approx(2.0)
    assert len(tv.example_figure(long, "x").data) == 2
    ds = tv.ds_frame(["t1", "t2"], np.array([0.7, 0.8]), np.array([0.72, 0.75]))
    assert ds["error"].tolist() == pytest.approx([0.02, -0.05])
    assert tv.ds_figure(ds).data[-1].text.tolist() == ["t1", "t2"]


# ---------------------------------------------------------------- posteriors
def _edl(n: int = 40, c: int = 2, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    alpha = 1 + rng.gamma(2.0, 3.0, (n, c))
    gold = rng.integers(0, c, n)
    return store.predictions_frame([f"x{i}" for i in range(n)], gold,
                                   alpha / alpha.sum(1, keepdims=True), alpha)


def test_edl_frame_readouts() -> None:
    edl = _edl()
    naive = edl[["example_id", "gold", "p_0", "p_1"]].iloc[::-1]  # other order: realigned
    f = pv.edl_frame(edl, naive, {}, ["neg", "pos"])
    alpha = store.probs_of(edl, "alpha")
    np.testing.assert_allclose(f["S"], alpha.sum(1), rtol=1e-6)
    np.testing.assert_allclose(f["vacuity"], 2 / alpha.sum(1), rtol=1e-6)
    np.testing.assert_allclose(f["conf_naive"], f["conf_edl"], rtol=1e-5)
    assert pv.has_alpha(edl) and not pv.has_alpha(naive)
    rank = pv.vacuity_ranking(f, top=5)
    assert len(rank) == 5 and rank["vacuity"].is_monotonic_decreasing
    assert len(pv.evidence_figure(f).data) == 4
    assert len(pv.confidence_figure(f).data) == 3


@pytest.mark.parametrize("c, trace", [(2, "scatter"), (3, "scatterternary"), (5, "bar")])
def test_density_figure_per_class_count(c: int, trace: str) -> None:
    alpha = np.arange(2.0, 2.0 + c)
    markers = {"t1": (np.full(c, 1 / c), "#123456")}
    fig, data = pv.density_figure(alpha, [f"c{i}" for i in range(c)], title="x",
                                  markers=markers)
    assert fig.data[0].type == trace and len(data) > 0
    if c == 2:  # the Beta density integrates to one over P(class 1)
        x = data.iloc[:, 0].to_numpy()
        assert np.trapezoid(data["density"], x) == pytest.approx(1.0, abs=0.01)
    if c == 3:
        assert fig.data[1].name == "t1" and data["density"].mean() / 2 == pytest.approx(1, abs=.05)
    other = pv.density_figure(alpha * 3, [f"c{i}" for i in range(c)], title="x")[1]
    assert not np.allclose(other.iloc[:, -1], data.iloc[:, -1])  # a new example → new data


# ---------------------------------------------------------------- calibration
def test_calibration_frames_and_table() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    p = rng.dirichlet([2, 2], 200)
    q = np.eye(2)[y] * 0.6 + 0.2
    frame = cv.reliability_frame({"a": p, "b": q}, y, 10)
    assert set(frame["strategy"]) == {"uniform", "quantile"}
    assert frame.groupby(["source", "strategy"])["count"].sum().eq(200).all()
    tab = cv.calibration_table({"a": p, "b": q}, {"a": "teacher"}, y, p.argmax(1))
    assert tab.loc[0, "ece"] == pytest.approx(ece(p, y, 15))
    assert tab.loc[0, "weak_agreement"] == 1.0 and tab.loc[1, "accuracy"] == 1.0
    # per-source weak labels: each student against its own reference, as its metrics.json
    own = {"a": q.argmax(1), "b": p.argmax(1)}
    tab2 = cv.calibration_table({"a": p, "b": q, "c": p}, {}, y, own,
                                references={"a": "own", "b": "own"})
    assert tab2.loc[0, "weak_agreement"] == pytest.approx(float(np.mean(p.argmax(1) == y)))
    assert tab2.loc[1, "brier_vs_weak"] == pytest.approx(
        float(np.mean(((q - np.eye(2)[p.argmax(1)]) ** 2).sum(1))))
    assert np.isnan(tab2.loc[2, "weak_agreement"]) and tab2["weak_reference"].tolist() == \
        ["own", "own", ""]
    fig = cv.reliability_figure(frame, {"a": p, "b": q}, 2)
    names = [t.name for t in fig.data]
    assert names.count("a") == 3  # uniform + equal-mass panels + histogram outline
    assert cv.reliability_figure(cv.reliability_frame({}, y), {}, 2).layout.annotations


# ---------------------------------------------------------------- compare
def test_compare_side_by_side_and_config_diff() -> None:
    rows = _runs().iloc[[2, 3]].reset_index(drop=True)
    side = cmp.metrics_side_by_side(rows, ["A", "B"])
    assert side["metric"].iloc[0] == "accuracy" and list(side.columns) == ["metric", "A", "B"]
    assert "seed" not in set(side["metric"])
    ident = _identity_runs().assign(opt_kl_scale=0.1).iloc[[4, 5]].reset_index(drop=True)
    metrics = set(cmp.metrics_side_by_side(ident, ["A", "B"])["metric"])
    assert metrics == {"accuracy"}  # data_seed and kl_scale are identity, not metrics
    assert len(cmp.compare_figure(side, ["naive", "naive"]).data) == 2
    cfg_a = {"method": "bayes", "evidence": "exp", "training": {"lr": 1e-3}, "subset": ["a"]}
    cfg_b = {"method": "naive", "evidence": None, "training": {"lr": 1e-3}, "subset": ["a"]}
    assert cmp.flatten(cfg_a)["training.lr"] == 1e-3
    full = cmp.config_diff({"A": cfg_a, "B": cfg_b})
    diff = cmp.config_diff({"A": cfg_a, "B": cfg_b}, only_diff=True)
    assert len(full) == 4 and diff["key"].tolist() == ["evidence", "method"]


# ---------------------------------------------------------------- exports
def test_csv_and_html_exports() -> None:
    df = pd.DataFrame({"k": [1, 2], "pgr": [0.1, nan]})
    back = pd.read_csv(io.BytesIO(export.to_csv_bytes(df)))
    assert back["k"].tolist() == [1, 2] and np.isnan(back["pgr"][1])
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
    html = export.to_html_bytes(fig)
    assert b"<html>" in html[:100] and len(html) > 1_000_000  # plotly.js inlined: offline
    assert export.export_figure(fig).layout.template.layout.colorway  # a real template
    assert export.file_stem("Recovery: PGR vs K") == "recovery-pgr-vs-k"


@pytest.mark.skipif(shutil.which("chromium") is None and not Path("/usr/bin/chromium").exists(),
                    reason="kaleido needs Chromium: apt-get install chromium")
def test_png_and_svg_exports_keep_colours() -> None:
    from PIL import Image

    fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 2], marker_color=colors.method_color("bayes")))
    png = export.to_image_bytes(fig, "png", width=400, height=300, scale=1)
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3).astype(int)
    red = (np.abs(img - [0xD6, 0x27, 0x28]).sum(1) < 30).mean()
    assert red > 0.02  # the bars keep their colour (the "streamlit" template would be black)
    svg = export.to_image_bytes(fig, "svg")
    assert svg.lstrip().startswith(b"<svg") and b"rgb(214, 39, 40)" in svg


# ---------------------------------------------------------------- background jobs
def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _wait(job_dir: Path, want: str, timeout: float = 20.0) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        st = jobs.status(job_dir)
        if st["status"] == want:
            return st
        time.sleep(0.1)
    raise AssertionError(f"job stayed {jobs.status(job_dir)['status']}, wanted {want}")


def test_jobs_done_failed_cancelled_and_progress(tmp_path: Path) -> None:
    exp = store.experiment_dir(tmp_path, "demo-0123456789ab")
    store.write_json(exp.meta, {"id": exp.id, "config": {"teachers": []}})
    # a job's progress counts only events stamped with its own id (W2S_JOB_ID, set by start)
    code = ("import json,os,sys,time;p=sys.argv[1]\n"
            "for i in range(3):\n"
            "  open(p,'a').write(json.dumps({'time':time.time(),'stage':'students','done':i+1,"
            "'total':4,'message':'m','job_id':os.environ['W2S_JOB_ID']})+'\\n')\n"
            "print('ok', flush=True)")
    ok = jobs.new_job(tmp_path, "test", "ok")
    jobs.start(ok, [*_py(code), str(exp.progress)], tmp_path)
    bad = jobs.new_job(tmp_path, "test", "bad")
    jobs.start(bad, _py("import sys; print('boom'); sys.exit(3)"), tmp_path)
    slow = jobs.new_job(tmp_path, "test", "slow")
    jobs.start(slow, _py("import time; print('zz', flush=True); time.sleep(60)"), tmp_path)
    assert _wait(ok, "done")["returncode"] == 0
    assert "ok" in jobs.log_tail(ok)
    ev = jobs.progress(tmp_path, jobs.status(ok))
    assert ev["experiment_id"] == exp.id and ev["fraction"] == pytest.approx(0.75)
    assert _wait(bad, "failed")["returncode"] == 3 and "boom" in jobs.log_tail(bad)
    assert jobs.status(slow)["status"] == "running"
    assert jobs.cancel(slow)
    assert _wait(slow, "cancelled")["status"] == "cancelled"
    assert not jobs.cancel(slow)  # already over
    listed = jobs.list_jobs(tmp_path)
    assert [j["label"] for j in listed] == ["slow", "bad", "ok"]  # newest first


def test_sweep_job_writes_its_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "cli_argv", lambda *a: _py("print('sweep')"))
    d = jobs.launch_sweep(tmp_path, {"name": "s", "teachers": ["a"], "seeds": [0]})
    assert "teachers:\n- a" in (d / "config.yaml").read_text()
    assert _wait(d, "done")["kind"] == "sweep"


def test_setting_options_break_ties_in_the_order_settings_were_run() -> None:
    runs = pd.DataFrame({"kind": ["transfer"] * 5, "setting": ["b", "b", "a", "a", "c"],
                         "method": "naive", "aux": False, "k": 2, "subset": "x+y"})
    assert R.setting_options(runs) == ["a", "b", "c"]  # equal counts: by hash
    assert R.setting_options(runs, ["c", "b", "a"]) == ["b", "a", "c"]  # most-run, then order


# ---------------------------------------------------------------- generation experiments
def test_token_reliability_and_ece_by_hand() -> None:
    """2 bins (0, .5], (.5, 1]: bin 0 = {.05, .15, .5} (0.5 falls in the first), 0 right,
    mean conf .7/3; bin 1 = {.85, .95, .9}, 2 of 3 right, mean conf .9.
    ECE = 3/6 · |0 − .7/3| + 3/6 · |2/3 − .9| = (.7/3 + .7/3) / 2 = .7/3."""
    conf = np.array([0.05, 0.15, 0.5, 0.85, 0.95, 0.9])
    hit = np.array([False, False, False, True, False, True])
    t = cv.token_reliability(conf, hit, 2)
    assert t["count"].tolist() == [3, 3]
    assert np.allclose(t["confidence"], [0.7 / 3, 0.9]) and np.allclose(t["accuracy"], [0, 2 / 3])
    assert cv.token_ece(conf, hit, 2) == pytest.approx(0.7 / 3)
    assert np.isnan(cv.token_ece(np.zeros(0), np.zeros(0, bool)))


def test_token_reliability_matches_sklearn_calibration_curve() -> None:
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(3)
    conf = rng.random(500)
    hit = rng.random(500) < conf
    t = cv.token_reliability(conf, hit, 10)
    true, pred = calibration_curve(hit, conf, n_bins=10, strategy="uniform")
    assert np.allclose(t["accuracy"], true) and np.allclose(t["confidence"], pred)


def test_flat_tokens_skips_utterances_without_token_calibration() -> None:
    preds = pd.DataFrame({"tok_conf": [[0.9, 0.2], [0.6], []],
                          "tok_correct": [[True, False], [True], []]})
    conf, hit = cv.flat_tokens(preds)
    assert conf.tolist() == [0.9, 0.2, 0.6] and hit.tolist() == [True, False, True]
    tab = cv.token_calibration_table({"bayes": (conf, hit)}, 10).set_index("source")
    assert tab.loc["bayes", "tokens"] == 3
    assert tab.loc["bayes", "token_accuracy"] == pytest.approx(2 / 3)
    assert cv.flat_tokens(pd.DataFrame({"x": [1]}))[0].size == 0  # a classification run
    frame = cv.token_reliability_frame({"bayes": (conf, hit), "none": (np.zeros(0),
                                                                      np.zeros(0, bool))})
    assert set(frame["source"]) == {"bayes"}
    assert cv.token_reliability_figure(frame).data  # draws


def test_token_evidence_summary_by_hand() -> None:
    targets = pd.DataFrame({
        "label": ["a", "b"], "evidence": [[10.0, 30.0], [20.0]],
        "vacuity": [[0.1, 0.3], [0.2]], "correct": [[True, False], [False]]})
    s = pv.token_evidence_summary({"bayes": targets, "naive-soft": targets.assign(
        evidence=[[], []], vacuity=[[], []])}).set_index(["method", "label"])
    assert list(s.index) == [("bayes", "a"), ("bayes", "b"), ("bayes", "all")]  # no read-outs
    assert s.loc[("bayes", "all"), "tokens"] == 3
    assert s.loc[("bayes", "all"), "mean_evidence"] == pytest.approx(20.0)
    assert s.loc[("bayes", "all"), "vacuity_correct"] == pytest.approx(0.1)
    assert s.loc[("bayes", "all"), "vacuity_wrong"] == pytest.approx(0.25)
    assert s.loc[("bayes", "b"), "token_accuracy"] == 0.0
    assert np.isnan(s.loc[("bayes", "b"), "vacuity_correct"])
    assert len(pv.token_vacuity_figure(s.reset_index()).data) == 2


def test_generation_methods_have_fixed_distinct_colours_and_order() -> None:
    gen = ["bayes-restricted", "joint", "single-soft", "naive-soft", "bayes", "single-hard"]
    assert colors.order_methods(gen) == colors.GEN_METHOD_ORDER
    assert len({colors.method_color(m) for m in gen}) == len(gen)
    assert all(colors.method_color(m) == colors.METHOD_COLORS[m] for m in gen)  # no hashing
    assert colors.method_label("bayes-restricted") != "bayes-restricted"
    # classification keeps its own order
    assert colors.order_methods(["bayes", "naive", "single"]) == ["single", "naive", "bayes"]
    teachers = ["gpt-char", "gpt-word", "smollm2-4l"]
    assert len({colors.teacher_color(t) for t in teachers}) == 3
    assert not {colors.teacher_color(t) for t in teachers} & set(colors.METHOD_COLORS.values())


def test_task_aware_floors_scores_and_ceiling() -> None:
    assert R.floors_for({"task": "generation"}) == ("mean", "best", "joint")
    assert R.floors_for({}) == ("mean", "best", "vote")
    assert R.score_of({"task": "generation"}) == "slu_f1" and R.score_of({}) == "accuracy"
    runs = pd.DataFrame({"kind": ["ceiling", "ceiling", "transfer"], "seed": [0, 1, 0],
                         "slu_f1": [0.4, 0.6, 0.1]})
    assert recovery.ceiling_level(runs, score="slu_f1") == pytest.approx(0.5)
    assert recovery.ceiling_level(runs) is None  # no accuracy column
    table = tables.recovery_table(pd.DataFrame({
        "kind": "transfer", "method": "bayes", "k": [1, 2], "subset": ["a", "a+b"],
        "seed": 0, "aux": False, "setting": "s", "data_seed": 0, "slu_f1": [0.2, 0.3],
        "pgr_joint": [0.1, 0.2], "floor_joint": [0.1, 0.1]}), "slu_f1", "joint")
    fig = recovery.recovery_figure(table, metric="slu_f1", floor="joint", ceiling=0.5)
    assert fig.layout.title.text == "SLU-F1 vs ensemble size K"
    assert fig.layout.yaxis.title.text == "test SLU-F1"


def test_dpo_runs_are_labelled_after_their_parent_setting() -> None:
    base = {"method": "bayes", "k": 2, "subset": "a+b", "seed": 0, "aux": False,
            "data_seed": 0, "train_setting": "t", "opt_dpo_eps": None}
    runs = pd.DataFrame([
        {**base, "run_id": "d", "kind": "transfer", "setting": "s1", "opt_target_mode": "detached"},
        {**base, "run_id": "f", "kind": "transfer", "setting": "s2", "opt_target_mode": "frozen"},
        {**base, "run_id": "p", "kind": "dpo", "setting": "s3", "opt_target_mode": "frozen",
         "opt_dpo_eps": "0.1"}])
    labels = R.identity_labels(runs, {"s1": "target_mode=detached", "s2": "target_mode=frozen"})
    assert labels["p"] == "bayes → DPO ε=0.1 · K=2 · seed 0 · a + b · target_mode=frozen"
    assert labels["f"] == "bayes · K=2 · seed 0 · a + b · target_mode=frozen"
    assert len(set(labels.values())) == 3


def test_compare_leads_with_the_generation_headline() -> None:
    rows = pd.DataFrame({"run_id": ["r1", "r2"], "method": ["bayes", "joint"],
                         "train_seconds": [3.0, 4.0], "slu_f1": [0.3, 0.4],
                         "json_validity": [1.0, 0.9]})
    side = cmp.metrics_side_by_side(rows, ["a", "b"])
    assert side["metric"].tolist()[:2] == ["slu_f1", "json_validity"]
    fig = cmp.compare_figure(side, ["bayes", "joint"])
    assert list(fig.data[0].x) == ["slu_f1", "json_validity"]
