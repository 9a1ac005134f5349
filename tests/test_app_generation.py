"""The Generation page under AppTest on the tiny generation workspace (``gen_workspace``):
utterances ranked by teacher disagreement and searchable, the teachers' word log-probs, the
student's output and gold as stored, the bridge-mode radio reading the sibling run's
targets.parquet, hard labels at q = 1, the DPO Δ equal to after − before from the runs'
metrics.json with the pairs of the chosen ε; a classification experiment gets a pointer."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from workspace_factory import build_workspace

from w2s_core.metrics.slu import normalise, parse_slots

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGE = "app_pages/generation.py"


def open_page(ws: Path, monkeypatch: pytest.MonkeyPatch, page: str = PAGE, charts: bool = True,
              **query: str) -> AppTest:
    """The page on workspace ``ws``; ``charts``: turn on the Generation page's charts (off by
    default in the app) so the tests can read the heatmap's data."""
    monkeypatch.setenv("W2S_WORKSPACE", str(ws))
    st.cache_data.clear()  # process-wide caches: another test's workspace must not leak in
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=90)
    at.query_params.update(query)
    at.run()
    at.switch_page(page).run()
    ok(at)
    if page == PAGE and charts and "gen_charts" in [t.key for t in at.toggle]:
        at.toggle(key="gen_charts").set_value(True).run()
        ok(at)
    return at


def ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def arr(v: Any) -> np.ndarray:
    """Plotly ≥ 6 ships numpy data as base64 typed arrays."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        shape = v.get("shape")
        if isinstance(shape, str):  # 2-d arrays carry their shape as "rows, cols"
            shape = [int(n) for n in shape.split(",")]
        return a.reshape(shape) if shape else a
    return np.asarray(v, dtype=float)


def chart(at: AppTest, prefix: str) -> dict[str, Any]:
    return next(json.loads(n.proto.spec) for n in at.get("plotly_chart")
                if n.key.startswith(f"chart_{prefix}"))


def heatmap_q(at: AppTest) -> np.ndarray:
    spec = chart(at, "soft-labels")
    z = spec["data"][0]["z"]
    return arr(z) if isinstance(z, dict) else np.array(z, dtype=float)


def html_blocks(at: AppTest) -> list[str]:
    """The bodies of the page's ``st.html`` elements (the N-best and token strips)."""
    return [h.proto.body for h in at.get("html")]


def table(at: AppTest, *cols: str) -> pd.DataFrame:
    """The first interactive or static table holding these columns."""
    return next(d.value for d in [*at.dataframe, *at.table] if set(cols) <= set(d.value.columns))


# ---------------------------------------------------------------- the workspace, read directly
class Disk:
    """The experiment's files read with pandas, independently of the page's code."""

    def __init__(self, ws: Path) -> None:
        (self.root,) = (ws / "experiments").iterdir()
        self.index = pd.read_parquet(self.root / "runs.parquet")

    def run(self, **kw: Any) -> str:
        df = self.index
        for k, v in kw.items():
            df = df[df[k] == v]
        assert len(df) == 1, (kw, df["run_id"].tolist())
        return str(df["run_id"].iloc[0])

    def file(self, run_id: str, name: str) -> Any:
        path = self.root / "runs" / run_id / name
        return json.loads(path.read_text()) if name.endswith(".json") else pd.read_parquet(path)

    def test_examples(self) -> pd.DataFrame:
        ex = pd.read_parquet(self.root / "examples.parquet")
        return ex[ex["split"] == "test"]

    def teacher(self, name: str) -> pd.DataFrame:
        stems = json.loads((self.root / "experiment.json").read_text())["teacher_files"]["0"]
        return pd.read_parquet(self.root / "teachers" / f"{stems[name]}.parquet")


@pytest.fixture(scope="module")
def disk(gen_workspace: Any) -> Disk:
    return Disk(gen_workspace.ws)


def chosen(at: AppTest) -> dict[str, Any]:
    s = at.session_state
    return {"kind": "transfer", "method": s["sel_method"], "subset": s["sel_subset"],
            "seed": 0, "aux": False}


def example_of(label: str) -> str:
    return label.rsplit(" — ", 1)[1]


# ---------------------------------------------------------------- the utterance view
def test_page_ranks_utterances_and_shows_what_is_stored(gen_workspace: Any, disk: Disk,
                                                        monkeypatch) -> None:
    at = open_page(gen_workspace.ws, monkeypatch)
    assert at.title[0].value == "Generation"
    assert [s.value for s in at.subheader][:3] == [
        "1 · What each teacher believed", "2 · What the student was trained toward",
        "3 · What the student produced"]
    # the ranking, recomputed here from the teachers' parquet files: distinct slot sets of
    # the two teachers' top-1 outputs, non-increasing down the list
    tops = {t: disk.teacher(t).query("split == 'test' and rank == 0").set_index("example_id")
            ["text"] for t in ("gpt-char", "gpt-word")}
    labels = at.selectbox(key="w_example").options
    test = disk.test_examples()
    assert sorted(map(example_of, labels)) == sorted(test["example_id"])
    distinct = []
    for label in labels:
        e = example_of(label)
        sets = {frozenset((k, normalise(v)) for k, v in parse_slots(tops[t][e])[0])
                for t in tops}
        assert label.startswith(f"[{len(sets)} sets")
        distinct.append(len(sets))
    assert distinct == sorted(distinct, reverse=True)

    example = at.session_state["sel_example"]
    assert example == example_of(labels[0])  # the most-disagreed utterance opens first
    run_id = disk.run(**chosen(at), opt_target_mode="detached")
    preds = disk.file(run_id, "predictions.parquet").set_index("example_id").loc[example]
    gold = test.set_index("example_id").at[example, "gold"]
    codes = [c.value for c in at.code]
    assert str(preds["text"]) in codes and gold in codes  # the student's output, gold
    assert any(run_id in c.value for c in at.caption)
    # the first teacher's best output, word by word, with its stored log-probs on hover
    nb = disk.teacher("gpt-char").query(f"split == 'test' and example_id == '{example}'")
    lps = nb.sort_values("rank")["word_logps"].iloc[0]
    block = next(b for b in html_blocks(at) if b.startswith("<b>gpt-char</b>"))
    spans = block.split("<small>#2")[0]  # the rank-1 output's words
    titles = re.findall(r'title="log p = (-?[\d.]+) · p = ([\d.]+)"', spans)
    assert [float(a) for a, _ in titles] == pytest.approx(list(lps), abs=5e-4)
    assert [float(p) for _, p in titles] == pytest.approx(np.exp(lps), abs=5e-4)
    # the utterance's SLU-F1 as stored, and the run's SLU-F1 from its summed counts
    assert at.metric[0].value == f"{preds['utt_slu_f1']:.3f}"
    met = disk.file(run_id, "metrics.json")
    assert at.metric[1].value == f"{met['slu_f1']:.3f}"
    # a Bayesian run: its token Dirichlet read-outs are drawn
    ev = chart(at, "dirichlet-tokens")
    t = disk.file(run_id, "targets.parquet").query(f"example_id == '{example}'")
    first = next(d for d in ev["data"] if d["name"] == t["label"].iloc[0])
    np.testing.assert_allclose(arr(first["y"]), t["evidence"].iloc[0], rtol=1e-6)


def test_bridge_mode_switch_reads_the_sibling_runs_targets(gen_workspace: Any, disk: Disk,
                                                            monkeypatch) -> None:
    at = open_page(gen_workspace.ws, monkeypatch)
    example = at.session_state["sel_example"]
    radio = at.radio(key="w_bridge")
    assert list(radio.options) == ["detached", "frozen", "live"]

    def stored_q(mode: str) -> tuple[np.ndarray, str]:
        rid = disk.run(**chosen(at), opt_target_mode=mode)
        t = disk.file(rid, "targets.parquet").query(f"example_id == '{example}'")
        width = max(len(q) for q in t["q"])
        z = np.full((len(t), width), np.nan)
        for i, q in enumerate(t["q"]):
            z[i, :len(q)] = q
        return z, rid

    detached, _ = stored_q("detached")
    np.testing.assert_allclose(heatmap_q(at), detached, rtol=1e-6)
    radio.set_value("frozen").run()
    ok(at)
    frozen, rid = stored_q("frozen")
    np.testing.assert_allclose(heatmap_q(at), frozen, rtol=1e-6)
    assert not np.allclose(np.nan_to_num(frozen), np.nan_to_num(detached))
    assert any(rid in c.value for c in at.caption)
    preds = disk.file(rid, "predictions.parquet").set_index("example_id")
    assert str(preds.at[example, "text"]) in [c.value for c in at.code]
    # the token spans carry the same q on hover
    spans = next(b for b in html_blocks(at) if 'title="q = ' in b)
    first = spans.split("<br>")[1]  # the first label's tokens
    shown = [float(q) for q in re.findall(r'title="q = ([\d.]+)', first)]
    assert shown == pytest.approx(frozen[0][~np.isnan(frozen[0])], abs=5e-4)
    # another run in the sidebar (no sibling modes: no radio), then back: the radio starts
    # again from the sidebar run's own mode
    at.sidebar.selectbox(key="w_method").set_value("bayes-restricted").run()
    ok(at)
    assert "w_bridge" not in [r.key for r in at.radio]
    at.sidebar.selectbox(key="w_method").set_value("bayes").run()
    assert at.radio(key="w_bridge").value == "detached"
    np.testing.assert_allclose(heatmap_q(at), detached, rtol=1e-6)


def test_search_and_utterance_switch(gen_workspace: Any, disk: Disk, monkeypatch) -> None:
    at = open_page(gen_workspace.ws, monkeypatch)
    test = disk.test_examples()
    at.text_input(key="gen_search").set_value("BOSTON").run()
    ok(at)
    labels = at.selectbox(key="w_example").options
    want = test.loc[test["text"].str.contains("boston", case=False), "example_id"]
    assert sorted(map(example_of, labels)) == sorted(want) and 0 < len(labels) < len(test)
    other = example_of(labels[-1])
    at.selectbox(key="w_example").set_value(other).run()
    ok(at)
    assert at.session_state["sel_example"] == other
    # one chart slot for every utterance (updated in place in a browser); its data is other's:
    assert next(n.key for n in at.get("plotly_chart")) == "chart_soft-labels"
    rid = disk.run(**chosen(at), opt_target_mode="detached")
    t = disk.file(rid, "targets.parquet").query(f"example_id == '{other}'")
    np.testing.assert_allclose(heatmap_q(at)[0][:len(t["q"].iloc[0])], t["q"].iloc[0],
                               rtol=1e-6)
    at.text_input(key="gen_search").set_value("no such words").run()
    ok(at)
    assert any("No test utterance contains" in i.value for i in at.info)


def test_charts_are_off_by_default_and_the_strips_carry_the_dirichlet_read_outs(
        gen_workspace: Any, disk: Disk, monkeypatch) -> None:
    at = open_page(gen_workspace.ws, monkeypatch, charts=False)
    assert not at.toggle(key="gen_charts").value and not at.get("plotly_chart")
    example = at.session_state["sel_example"]
    t = disk.file(disk.run(**chosen(at), opt_target_mode="detached"), "targets.parquet")
    t = t[t["example_id"] == example]
    # the spans' look comes from the page's one style block (their classes)
    assert any(".w2s-tok{" in b and ".w2s-word{" in b for b in html_blocks(at))
    block = next(b for b in html_blocks(at) if "Dirichlet 1 − vacuity" in b)
    first = block.split("Dirichlet 1 − vacuity:</small>")[1].split("<br>")[0]
    got = re.findall(r'title="evidence Σ\(α − 1\) = ([^ ]+) · vacuity C/S = ([\d.]+)"', first)
    np.testing.assert_allclose([float(e) for e, _ in got], t["evidence"].iloc[0], rtol=1e-3)
    np.testing.assert_allclose([float(v) for _, v in got], t["vacuity"].iloc[0], atol=5e-4)
    link = at.get("page_link")
    # the DPO pairs' own page (the link carries the page's url path)
    assert link and link[0].proto.page.strip("/") == "dpo" and "DPO" in link[0].proto.label
    at.toggle(key="gen_charts").set_value(True).run()
    ok(at)
    assert {n.key for n in at.get("plotly_chart")} == {"chart_soft-labels",
                                                       "chart_dirichlet-tokens"}


def test_hard_labels_are_q_one_and_a_k1_run_has_no_dpo(gen_workspace: Any, disk: Disk,
                                                      monkeypatch) -> None:
    at = open_page(gen_workspace.ws, monkeypatch, k="1", subset="gpt-word",
                   method="single-hard")
    assert at.session_state["sel_method"] == "single-hard"
    q = heatmap_q(at)
    assert np.all(q[~np.isnan(q)] == 1.0)  # hard labels: q = 1 (docs/STORAGE.md)
    assert not [n for n in at.get("plotly_chart") if "dirichlet" in n.key]
    assert not any("Dirichlet 1 − vacuity" in b for b in html_blocks(at))  # not Bayesian
    assert "w_bridge" not in [r.key for r in at.radio]  # one mode stored: no choice
    at.switch_page("app_pages/dpo.py").run()
    ok(at)
    assert any("No DPO runs continue" in c.value for c in at.caption)


def test_an_utterance_without_stored_targets_says_so(gen_workspace: Any, disk: Disk,
                                                     tmp_path: Path, monkeypatch) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(gen_workspace.ws, ws)
    at = open_page(ws, monkeypatch)
    second = example_of(at.selectbox(key="w_example").options[1])
    # targets.parquet covers only the first test utterances: drop one from the run's file
    rid = disk.run(**chosen(at), opt_target_mode="detached")
    path = next((ws / "experiments").iterdir()) / "runs" / rid / "targets.parquet"
    t = pd.read_parquet(path)
    t[t["example_id"] != second].to_parquet(path)  # a new mtime: the page reads it again
    at.selectbox(key="w_example").set_value(second).run()
    ok(at)
    assert any("stores the first 64 test utterances only" in i.value for i in at.info)
    assert not [n for n in at.get("plotly_chart") if "soft-labels" in n.key]
    preds = disk.file(rid, "predictions.parquet").set_index("example_id")
    assert str(preds.at[second, "text"]) in [c.value for c in at.code]  # the rest still shows


def test_stale_runs_are_left_out_with_one_warning_naming_the_fix(gen_workspace: Any,
                                                                 tmp_path: Path,
                                                                 monkeypatch) -> None:
    """Runs stored by an older revision of their method (here every bayes run, as revision 1
    wrote them) leave the dashboard's run index, with one warning that names the fix."""
    from w2s_core import catalog
    from w2s_core.experiments import store

    ws = tmp_path / "ws"
    shutil.copytree(gen_workspace.ws, ws)
    exp = next((ws / "experiments").iterdir())
    stale = []
    for d in sorted((exp / "runs").iterdir()):
        cfg = store.read_json(d / "config.json")
        if cfg["method"] == "bayes":
            store.write_json(d / "config.json", {**cfg, "revision": 1})
            stale.append(d.name)
    (exp / "runs.parquet").unlink()
    at = open_page(ws, monkeypatch, page="app_pages/recovery.py")
    note = catalog.method_info("generation", "bayes").revision_note  # type: ignore[union-attr]
    named = [w.value for w in at.warning if "bayes" in w.value]
    assert len(named) == 1 and named[0].startswith(f"{len(stale)} generation run(s) of bayes") \
        and note in named[0], [w.value for w in at.warning]
    assert not [w.value for w in at.warning if "unreadable" in w.value]
    runs = at.session_state["_ctx"].all_runs
    assert stale and not set(stale) & set(runs["run_id"]) and "bayes" not in set(runs["method"])


# ---------------------------------------------------------------- DPO
def test_dpo_delta_is_after_minus_before_and_pairs_are_stored(gen_workspace: Any, disk: Disk,
                                                             monkeypatch) -> None:
    at = open_page(gen_workspace.ws, monkeypatch, page="app_pages/dpo.py")
    assert at.title[0].value == "DPO"
    summary = table(at, "eps", "before", "after", "delta").set_index("eps")
    parent_ids = set(disk.index.query("kind == 'transfer' and method == 'bayes' and "
                                      "opt_target_mode == 'detached' and k == 2")["run_id"])
    expect: dict[str, list[tuple[float, float]]] = {}
    for rid in disk.index.query("kind == 'dpo'")["run_id"]:
        cfg = disk.file(rid, "config.json")
        if cfg["parent"] not in parent_ids:
            continue  # DPO after the frozen / live bayes runs: other parents
        eps = str(float(cfg["options"]["dpo"]["eps"])) \
            if cfg["options"]["dpo"]["eps"] != "confidence" else "confidence"
        after = disk.file(rid, "metrics.json")["slu_f1"]
        before = disk.file(cfg["parent"], "metrics.json")["slu_f1"]
        expect.setdefault(eps, []).append((before, after))
    assert sorted(summary.index) == sorted(expect)
    for eps, pairs in expect.items():
        b, a = np.mean(pairs, axis=0)
        assert summary.at[eps, "before"] == pytest.approx(b)
        assert summary.at[eps, "after"] == pytest.approx(a)
        assert summary.at[eps, "delta"] == pytest.approx(a - b)
        assert summary.at[eps, "seeds"] == len(pairs) == 2
        assert "t-interval over 2 seeds" in summary.at[eps, "interval"]
        assert math.isfinite(summary.at[eps, "lo"])
    at.radio(key="w_dpo_eps").set_value("confidence").run()
    ok(at)
    rid = disk.run(kind="dpo", method="bayes", seed=0, opt_target_mode="detached",
                   opt_dpo_eps="confidence")
    stored = disk.file(rid, "pairs.parquet")
    shown = table(at, "chosen", "rejected", "margin")
    assert shown["chosen"].tolist() == stored["chosen"].tolist()
    np.testing.assert_allclose(shown["margin"], stored["score_chosen"] - stored["score_rejected"])
    np.testing.assert_allclose(shown["eps"], stored["eps"])


def test_a_classification_experiment_gets_a_pointer(tmp_path: Path, monkeypatch) -> None:
    build_workspace(tmp_path, corrupt=False, three_class=False)
    at = open_page(tmp_path, monkeypatch)
    assert any("generation" in i.value for i in at.info)
    assert not at.get("plotly_chart")
    at.switch_page("app_pages/dpo.py").run()  # the DPO page says the same
    ok(at)
    assert any("generation" in i.value for i in at.info) and not at.get("plotly_chart")


def test_the_joint_table_ranks_by_the_runs_joint_score(gen_workspace: Any, disk: Disk,
                                                       monkeypatch) -> None:
    """A joint run scored per character marks the candidate its student trained toward (its
    stored target), and says how it scored it."""
    row = disk.index[disk.index["opt_joint_score"] == "per_char"].iloc[0]
    at = open_page(gen_workspace.ws, monkeypatch, setting=str(row["setting"]), k="2",
                   method="joint")
    ok(at)
    assert at.session_state["sel_setting"] == row["setting"]
    example = at.session_state["sel_example"]
    want = disk.file(str(row["run_id"]), "targets.parquet").query(
        f"example_id == '{example}'")["text"].item()
    joint = table(at, "text", "sources", "score", "joint")
    assert joint.loc[joint["joint"], "text"].tolist() == [want]
    assert joint["score"].is_monotonic_decreasing  # ranked by Σ λ·logp / (characters + 1)
    assert any("/ (characters + 1)" in b for b in html_blocks(at))
