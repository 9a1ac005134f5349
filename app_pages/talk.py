"""Talk mode: one idea per screen in large type, every number and chart live from the data —
on either task (generation screens read SLU-F1, slot agreement and token read-outs)."""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

import numpy as np
import streamlit as st

from app_pages import _data as data
from app_pages import _headlines as headlines
from app_pages import _ui as ui
from w2s_core.experiments import store
from w2s_core.metrics.intervals import interval_note
from w2s_core.viz import calibration as cv
from w2s_core.viz import gen_teachers as gt
from w2s_core.viz import posteriors as pv
from w2s_core.viz import recovery
from w2s_core.viz import teachers as tv
from w2s_core.viz.common import bigger
from w2s_core.viz.runs import filter_view

STYLE = """<style>
.talk-title {font-size: 3.2rem; font-weight: 700; line-height: 1.15; margin: 0.2em 0;}
.talk-line {font-size: 1.9rem; line-height: 1.35; margin-bottom: 0.6em;}
[data-testid="stMetricValue"] {font-size: 3rem;}
</style>"""


def _say(title: str, line: str) -> None:
    st.html(f'<div class="talk-title">{title}</div><div class="talk-line">{line}</div>')


def _setting_screen(c: ui.Ctx, task_line: str, scores: Any, ceil: float | None,
                    unit: str) -> None:
    """The first slide: what the teachers and the student are, and the gap between them.
    scores: the teachers' test scores (the best, the mean)."""
    cfg = c.meta.get("config", {})
    data_name = escape(store.dataset_label(cfg.get("data") or {}))  # a user file: its name
    _say("The setting", f"{len(scores)} weak teachers {task_line.format(data=data_name)}; a "
         f"strong student (<b>{escape(str(cfg.get('student')))}</b>) learns only from them.")
    cols = st.columns(3)
    cols[0].metric(f"best teacher{unit}", f"{scores.max():.1%}" if len(scores) else "—")
    cols[1].metric(f"mean teacher{unit}", f"{scores.mean():.1%}" if len(scores) else "—")
    cols[2].metric(f"strong ceiling{unit}", f"{ceil:.1%}" if ceil is not None else "—")


def _gen_setting(c: ui.Ctx) -> None:
    scores = gt.teacher_scores(data.teacher_summaries(c))
    test = scores[scores["split"] == "test"]
    ceil = recovery.ceiling_level(c.runs, train_setting=c.train_setting, score="slu_f1")
    _setting_screen(c, "fill the slots of <b>{data}</b> as JSON", test["slu_f1"], ceil,
                    " SLU-F1")
    ui.chart(bigger(gt.teacher_scores_figure(scores)), scores, "talk-setting")


def _gen_disagree(c: ui.Ctx) -> None:
    sub = data.subset_teachers(c)
    top1, _ = data.top1(c)
    ids = list(data.gold_texts(c))
    share = gt.split_share(top1, [t for t in sub if t in top1], ids)
    title = "The teachers disagree" if share > 0 else "The teachers agree"
    _say(title, f"On <b>{share:.0%}</b> of test utterances the {len(sub)} teachers' top-1 "
         "outputs do not hold the same slots.")
    mat = data.slot_agreement(c)["kappa"]
    ui.chart(bigger(gt.agreement_figure(mat, "kappa")), mat.reset_index(names="teacher"),
             "talk-disagree")


def _gen_dirichlet(c: ui.Ctx) -> None:
    targets = {}
    for m in ("bayes", "bayes-restricted"):
        row = data.chosen_run(c, m)
        df = data.run_file(c, str(row["run_id"]), "targets.parquet") if row is not None \
            else None
        if df is not None:
            targets[m] = df
    summary = pv.token_evidence_summary(targets)
    pooled = summary[summary["label"] == "all"] if len(summary) else summary
    if pooled.empty:
        _say("What a Dirichlet says", "No Bayesian run in view for this subset.")
        return
    r = pooled.iloc[0]
    if np.isfinite(r["vacuity_wrong"]) and np.isfinite(r["vacuity_correct"]):
        said = (f"mean token vacuity <b>{r['vacuity_wrong']:.3f}</b> on tokens it gets wrong "
                f"vs <b>{r['vacuity_correct']:.3f}</b> on those it gets right")
    else:
        said = f"mean token vacuity <b>{r['mean_vacuity']:.3f}</b>"
    _say("What a Dirichlet says", f"The Bayesian student ({escape(str(r['method']))}) puts a "
         f"Dirichlet on every token: {said}.")
    ui.chart(bigger(pv.token_vacuity_figure(summary)), summary, "talk-dirichlet")


def _gen_calibration(c: ui.Ctx) -> None:
    found, _ = data.student_outputs(c, ["naive-soft", "single-hard", "bayes"])
    sources = {m: cv.flat_tokens(df) for m, df in found.items()}
    sources = {m: v for m, v in sources.items() if len(v[0])}
    if not sources:
        _say("Calibration", "No token calibration stored for the runs in view.")
        return
    tab = cv.token_calibration_table(sources, 10)
    parts = [f"{escape(str(r.source))}: token ECE <b>{r.ece:.3f}</b>" for r in tab.itertuples()]
    if len(tab) > 1 and tab["ece"].notna().any():  # one run per method: a ranking, not a test
        lowest = tab.loc[tab["ece"].idxmin(), "source"]
        parts.append(f"lowest on these runs: <b>{escape(str(lowest))}</b>")
    _say("Is the Bayesian student better calibrated?", " · ".join(parts))
    rel = cv.token_reliability_frame(sources, 10)
    ui.chart(bigger(cv.token_reliability_figure(rel)), rel, "talk-calibration")


def setting(c: ui.Ctx) -> None:
    if c.is_generation:
        _gen_setting(c)
        return
    acc = tv.teacher_accuracy(c.teachers())
    test = acc[acc["split"] == "test"]
    ceil = recovery.ceiling_level(c.runs, train_setting=c.train_setting)
    _setting_screen(c, "label <b>{data}</b>", test["accuracy"], ceil, "")
    ui.chart(bigger(tv.teacher_accuracy_figure(acc)), acc, "talk-setting")


def disagree(c: ui.Ctx) -> None:
    if c.is_generation:
        _gen_disagree(c)
        return
    sub = data.subset_teachers(c)
    ids, _, probs = tv.teacher_stack(c.teachers(), "test", sub)
    votes = tv.vote_table(ids, probs)
    share = float((votes["entropy"] > 0).mean()) if len(votes) else 0.0
    title = "The teachers disagree" if share > 0 else "The teachers agree"
    _say(title, f"On <b>{share:.0%}</b> of test examples the {len(sub)} teachers do not all "
         "give the same label.")
    ui.chart(bigger(tv.entropy_histogram(votes)), votes, "talk-disagree")


def dirichlet(c: ui.Ctx) -> None:
    if c.is_generation:
        _gen_dirichlet(c)
        return
    row = data.chosen_run(c, "bayes")
    row = row if row is not None else data.chosen_run(c, "bayes-softy")
    edl = c.preds(str(row["run_id"])) if row is not None else None
    if edl is None or not pv.has_alpha(edl):
        _say("What a Dirichlet says", "No Bayesian run in view for this subset.")
        return
    frame = pv.edl_frame(edl, None, c.texts(), c.class_names)
    wrong, right = frame.loc[~frame["correct"], "vacuity"], frame.loc[frame["correct"], "vacuity"]
    if len(wrong) and len(right):
        said = (f"mean vacuity <b>{wrong.mean():.2f}</b> when wrong vs <b>{right.mean():.2f}</b> "
                "when right")
    else:  # all right (or all wrong): there is nothing to compare
        said = (f"mean vacuity <b>{frame['vacuity'].mean():.2f}</b>, and it is "
                f"{'never' if len(right) else 'always'} wrong on this test set")
    _say("What a Dirichlet says", f"The Bayesian student also says how much it does not know: "
         f"{said}.")
    ex = frame.sort_values("vacuity", ascending=False).iloc[0]
    fig, dens = pv.density_figure(pv.alpha_of(edl, ex["example_id"]), c.class_names,
                                  title=f"most uncertain: “{str(ex['text'])[:60]}”")
    ui.chart(bigger(fig), dens, "talk-dirichlet")


def recovery_vs_k(c: ui.Ctx) -> None:
    view = filter_view(c.runs, c.sel.get("aux", "off"), "all", c.sel.get("setting"))
    table = recovery.recovery_table(view, "pgr", c.sel.get("floor", "mean"))
    head = headlines.recovery_headline(table)  # the title states only what the intervals show
    _say(escape(head.title), head.line)
    ui.chart(bigger(recovery.recovery_figure(table, floor=c.sel.get("floor", "mean"))), table,
             "talk-recovery")
    st.caption(interval_note(table) + (f" Option setting: {c.setting_label}."
                                       if c.setting_label else ""))


def calibration(c: ui.Ctx) -> None:
    if c.is_generation:
        _gen_calibration(c)
        return
    ids, gold, _ = tv.teacher_stack(c.teachers(), "test", data.subset_teachers(c))
    students, _ = data.student_preds(c, ids, ["naive", "single", "bayes"])
    if not students:
        _say("Calibration", "No student runs in view.")
        return
    tab = cv.calibration_table(students, {}, gold, None)
    parts = [f"{escape(str(r.source))}: ECE <b>{r.ece:.3f}</b>" for r in tab.itertuples()]
    lowest = tab.loc[tab["ece"].idxmin(), "source"] if tab["ece"].notna().any() else None
    if lowest is not None and len(tab) > 1:  # one run per method: a ranking, not a test
        parts.append(f"lowest ECE on these runs: <b>{escape(str(lowest))}</b>")
    _say("Is the Bayesian student better calibrated?", " · ".join(parts))
    rel = cv.reliability_frame(students, gold, 10)
    ui.chart(bigger(cv.reliability_figure(rel, students, len(c.class_names))), rel,
             "talk-calibration")


# Screen names are neutral (they are navigation labels); each screen's title says what its data
# shows.
SCREENS: list[tuple[str, Callable[[ui.Ctx], None]]] = [
    ("The setting", setting), ("Teacher disagreement", disagree),
    ("What a Dirichlet says", dirichlet), ("Recovery vs K", recovery_vs_k),
    ("Calibration", calibration)]


def _step(delta: int) -> None:
    i = int(st.session_state.get(ui.SEL + "slide_i", 0))
    ui.set_sel("slide", SCREENS[int(np.clip(i + delta, 0, len(SCREENS) - 1))][0])


def body(c: ui.Ctx) -> None:
    st.html(STYLE)
    if not ui.need_runs(c):
        return
    titles = [t for t, _ in SCREENS]
    nav = st.columns([1, 6, 1])
    nav[0].button("Previous", key="talk_prev", icon=":material/arrow_back:", on_click=_step,
                  args=(-1,), width="stretch")
    nav[2].button("Next", key="talk_next", icon=":material/arrow_forward:", on_click=_step,
                  args=(1,), width="stretch")
    with nav[1]:
        title = ui.select("slide", "Screen", titles, kind="select_slider",
                          label_visibility="collapsed")
    st.session_state[ui.SEL + "slide_i"] = titles.index(title)
    st.caption(f"{titles.index(title) + 1} / {len(titles)}")
    dict(SCREENS)[title](c)


ui.guard(body)
