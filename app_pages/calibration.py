"""Calibration: reliability diagrams and ECE / MCE / Brier for teachers, their vote, students;
for generation experiments token-level reliability of the students and the ceiling."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app_pages import _data as data
from app_pages import _ui as ui
from w2s_core.experiments.store import probs_of
from w2s_core.viz import calibration as cv
from w2s_core.viz import teachers as tv
from w2s_core.viz.runs import ceiling_for, method_options

SOFT_VOTE = "subset's soft vote"
OWN = "its own weak labels (w_*)"
OLD = "subset's soft vote (run predates w_*)"


def generation(c: ui.Ctx) -> None:
    """Token reliability: the student's confidence in each gold token (teacher forcing) against
    whether its argmax was that token, per method's chosen run and the ceiling."""
    found, labels = data.student_outputs(c)
    ceil = ceiling_for(c.runs, c.sel.get("seed", "all"), c.sel.get("data_seed", "all"))
    df = c.preds(str(ceil["run_id"])) if ceil is not None else None
    if df is not None:
        found["ceiling"], labels["ceiling"] = df, data.label_of(c, ceil)
    sources = {m: cv.flat_tokens(df) for m, df in found.items()}
    sources = {m: v for m, v in sources.items() if len(v[0])}
    if not sources:
        st.info("These runs store no token calibration (tok_conf / tok_correct): rerun the "
                "sweep to add it.")
        return
    wanted = [c.sel.get("method"), "ceiling"]
    default = [n for n in dict.fromkeys(wanted) if n in sources] or list(sources)[:1]
    left, right = st.columns([3, 1])
    with left:
        order = [m for m in [*method_options(c.runs), "ceiling"] if m in sources]
        shown = ui.select_many("tok_sources", "Runs", order, default)
    with right:
        n_bins = ui.select("bins", "Bins", [5, 8, 10, 12, 15, 20], default=10)
    chosen = {n: sources[n] for n in shown}
    rel = cv.token_reliability_frame(chosen, n_bins)
    ui.chart(cv.token_reliability_figure(rel), rel, "token-reliability")
    data.run_caption(c, labels)
    st.subheader("Token calibration (test split)")
    tab = cv.token_calibration_table(sources, n_bins)
    ui.table(tab, "token-calibration", column_config={
        col: st.column_config.NumberColumn(format="%.3f")
        for col in ("token_accuracy", "mean_confidence", "ece")})
    st.caption(f"Each gold target token of the first test utterances (those with token "
               f"calibration stored), teacher-forced: confidence = the student's max token "
               f"probability, correct = its argmax is the gold token. ECE over {n_bins} "
               "equal-width bins: Σ_b |b|/T · |accuracy(b) − confidence(b)|.")


def body(c: ui.Ctx) -> None:
    st.title("Calibration")
    if not ui.need_runs(c):
        return
    if c.is_generation:
        generation(c)
        return
    teachers = c.teachers()
    sub = [t for t in str(c.sel.get("subset", "")).split("+") if t in teachers]
    if not sub:
        st.info("No teacher predictions stored for this subset.")
        return
    ids, gold, probs = tv.teacher_stack(teachers, "test", sub)
    sources: dict[str, np.ndarray] = {t: probs[k] for k, t in enumerate(sub)}
    kinds = dict.fromkeys(sub, "teacher")
    sources["weak vote"] = probs.mean(0)
    kinds["weak vote"] = "weak labels (soft vote)"
    vote = sources["weak vote"].argmax(1)
    # Teachers, the vote and the ceiling are measured against the subset's soft vote; each
    # student against the labels it was trained toward (majority vote for `vote`, the
    # Dawid–Skene posterior for `dawid-skene`, …), as its metrics.json is.
    y_weak = dict.fromkeys(sources, vote)
    refs = dict.fromkeys(sources, SOFT_VOTE)
    found = data.students(c, ids)
    labels = {m: s.label for m, s in found.items()}
    for m, s in found.items():
        sources[m], kinds[m] = s.probs, "student"
        own = s.weak is not None
        y_weak[m] = s.weak.argmax(1) if own else vote
        refs[m] = OWN if own else OLD
    ceil = ceiling_for(c.runs, c.sel.get("seed", "all"), c.sel.get("data_seed", "all"))
    if ceil is not None:
        df = c.preds(str(ceil["run_id"]))
        if df is not None and set(ids) <= set(df["example_id"]):
            sources["ceiling"] = probs_of(df.set_index("example_id").loc[ids])
            kinds["ceiling"] = "strong ceiling (gold-trained)"
            labels["ceiling"] = data.label_of(c, ceil)
            y_weak["ceiling"], refs["ceiling"] = vote, SOFT_VOTE

    names = list(sources)
    # a readable default: the weak labels, the naive student, the chosen method, the Bayesian
    # student and the ceiling; any other source is one click away
    wanted = ["weak vote", "naive", "single", c.sel.get("method"), "bayes", "ceiling"]
    default = [n for n in dict.fromkeys(wanted) if n in sources]
    left, right = st.columns([3, 1])
    with left:
        shown = ui.select_many("sources", "Label sources", names, default,
                               fmt=lambda n: f"{n} ({kinds[n]})")
    with right:
        n_bins = ui.select("bins", "Bins", [5, 8, 10, 12, 15, 20], default=10)
    chosen = {n: sources[n] for n in shown}
    rel = cv.reliability_frame(chosen, gold, n_bins)
    ui.chart(cv.reliability_figure(rel, chosen, len(c.class_names)), rel, "reliability")
    data.run_caption(c, labels)

    st.subheader("Calibration metrics (test split)")
    tab = cv.calibration_table(sources, kinds, gold, y_weak, n_bins=15, references=refs)
    ui.table(tab, "calibration-metrics", column_config={
        col: st.column_config.NumberColumn(format="%.3f") for col in tab.columns
        if col not in ("source", "kind", "weak_reference")})
    st.caption("Against gold: accuracy, ECE (15 uniform bins), ECE with equal-mass bins, MCE, "
               "Brier, NLL. Against the weak labels (argmax; the `weak_reference` column says "
               "which): agreement, ECE and Brier — each student against the labels it was "
               "trained toward (its stored `w_*` columns: the same reference as its "
               "`weak_agreement`, CDR and CAR), the teachers, the weak vote and the ceiling "
               "against the subset's soft vote. A student that only imitates its supervision "
               "scores high agreement and low ECE against it.")
    old = [m for m in found if refs[m] == OLD]
    if old:
        st.caption(f"{', '.join(old)}: written before runs stored their weak labels, so "
                   "measured against the subset's soft vote instead (rerun the sweep to "
                   "store them).")


ui.guard(body)
