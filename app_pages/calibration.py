"""Calibration: reliability diagrams and ECE / MCE / Brier for teachers, their vote, students."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app_pages import _data as data
from app_pages import _ui as ui
from w2s_core.experiments.store import probs_of
from w2s_core.viz import calibration as cv
from w2s_core.viz import teachers as tv
from w2s_core.viz.runs import ceiling_for, run_label


def body(c: ui.Ctx) -> None:
    st.title("Calibration")
    if not ui.need_runs(c):
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
    students, labels = data.student_preds(c, ids)
    for m, p in students.items():
        sources[m], kinds[m] = p, "student"
    ceil = ceiling_for(c.runs, c.sel.get("seed", "all"))
    if ceil is not None:
        df = c.preds(str(ceil["run_id"]))
        if df is not None and set(ids) <= set(df["example_id"]):
            sources["ceiling"] = probs_of(df.set_index("example_id").loc[ids])
            kinds["ceiling"] = "strong ceiling (gold-trained)"
            labels["ceiling"] = run_label(ceil)

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
    y_weak = sources["weak vote"].argmax(1)
    tab = cv.calibration_table(sources, kinds, gold, y_weak, n_bins=15)
    ui.table(tab, "calibration-metrics", column_config={
        col: st.column_config.NumberColumn(format="%.3f") for col in tab.columns
        if col not in ("source", "kind")})
    st.caption("Against gold: accuracy, ECE (15 uniform bins), ECE with equal-mass bins, MCE, "
               "Brier, NLL. Against the weak labels (argmax of the subset's soft vote): "
               "agreement, ECE and Brier — a student that only imitates its teachers scores "
               "high agreement and low ECE against them.")


ui.guard(body)
