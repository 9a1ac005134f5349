"""Dirichlet posteriors: what the Bayesian (EDL) student believes about each example; for
generation experiments a summary of the token Dirichlet's evidence and vacuity."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app_pages import _data as data
from app_pages import _ui as ui
from w2s_core.viz import posteriors as pv
from w2s_core.viz import teachers as tv
from w2s_core.viz.colors import method_color, teacher_color
from w2s_core.viz.runs import method_options

EDL_METHODS = ("bayes", "bayes-softy")


def _edl_run(c: ui.Ctx) -> tuple[str | None, object]:
    """The chosen method when it is Bayesian, else the first Bayesian method with a run."""
    chosen = c.sel.get("method")
    order = [chosen] if chosen in EDL_METHODS else []
    order += [m for m in method_options(c.runs) if m.startswith("bayes") and m not in order]
    for m in order:
        row = data.chosen_run(c, m)
        if row is not None:
            return m, row
    return None, None


def _metric(col: st.delta_generator.DeltaGenerator, label: str, value: object) -> None:
    ok = isinstance(value, (int, float)) and np.isfinite(value)
    col.metric(label, f"{value:.3f}" if ok else "—")


def generation(c: ui.Ctx) -> None:
    """No class Dirichlet: the token Dirichlet's read-outs of each bayes method's chosen run."""
    st.info("A generation student has no class Dirichlet: the Bayesian methods put a Dirichlet "
            "on each target token. Token by token read-outs, utterance by utterance, are on the "
            "Generation page; below, their summary over the stored targets (test).",
            icon=":material/subject:")
    st.page_link("app_pages/generation.py", label="Open the Generation page",
                 icon=":material/subject:")
    targets, labels = {}, {}
    for m in method_options(c.runs):
        row = data.chosen_run(c, m) if m.startswith("bayes") else None
        df = data.run_file(c, str(row["run_id"]), "targets.parquet") if row is not None \
            else None
        if df is not None:
            targets[m], labels[m] = df, data.label_of(c, row)
    summary = pv.token_evidence_summary(targets)
    if summary.empty:
        st.info("No bayes run in view stores token Dirichlet read-outs (targets.parquet).")
        return
    ui.chart(pv.token_vacuity_figure(summary), summary, "token-vacuity")
    data.run_caption(c, labels)
    # an LM's token evidence reaches e^35: printf's %g prints that as 16 digits in the browser
    ui.table(summary, "token-evidence", column_config={
        col: st.column_config.NumberColumn(format="%.3e" if col == "mean_evidence" else "%.4g")
        for col in pv.TOKEN_SUMMARY[4:]})
    st.caption("Per bayes method's run and target label (the teacher whose top-1 is the "
               "target, “joint”, or all pooled): mean evidence Σ(α − 1) and vacuity C / S of "
               "the token Dirichlet over the target tokens, and vacuity on the tokens the "
               "student predicts right / wrong.")


def body(c: ui.Ctx) -> None:
    st.title("Dirichlet posteriors")
    if not ui.need_runs(c):
        return
    if c.is_generation:
        generation(c)
        return
    method, row = _edl_run(c)
    if row is None:
        st.info("No Bayesian (EDL) run for this subset / aux / seed. Pick another subset, or "
                "add `bayes` to the sweep's methods in the :material/science: Lab.")
        return
    if method != c.sel.get("method"):
        st.caption(f"“{c.sel.get('method')}” has no Dirichlet; showing **{method}**.")
    edl = c.preds(str(row["run_id"]))
    if edl is None:
        return  # unreadable: warn_once has named it
    if not pv.has_alpha(edl):
        st.info(f"Run {row['run_id']} stores no Dirichlet parameters (alpha_* columns).")
        return
    naive_m = "naive" if int(row["k"]) > 1 else "single"
    naive_row = data.chosen_run(c, naive_m)
    naive = c.preds(str(naive_row["run_id"])) if naive_row is not None else None
    frame = pv.edl_frame(edl, naive, c.texts(), c.class_names)
    st.caption(f"Bayesian run: {data.label_of(c, row)}" + (
        f" — compared with {data.label_of(c, naive_row)}" if naive_row is not None else ""))
    readouts = [("mean S", "mean_S"), ("mean vacuity", "mean_vacuity"),
                ("vacuity | correct", "vacuity_correct"), ("vacuity | wrong", "vacuity_wrong"),
                ("AUROC(vacuity → error)", "auroc_vacuity")]
    for col, (label, key) in zip(st.columns(len(readouts)), readouts, strict=True):
        _metric(col, label, row.get(key))

    ranked = frame.sort_values("vacuity", ascending=False)
    info = ranked.set_index("example_id")
    example = ui.select(
        "example", "Example (most uncertain first)", ranked["example_id"].tolist(),
        fmt=lambda i: f"u={info.at[i, 'vacuity']:.2f} {'✓' if info.at[i, 'correct'] else '✗'} "
                      f"{i} — {info.at[i, 'text'][:60]}")
    alpha = pv.alpha_of(edl, example)
    markers: dict[str, tuple[np.ndarray, str]] = {}
    teachers = c.teachers()
    sub = [t for t in str(c.sel.get("subset", "")).split("+") if t in teachers]
    if sub:
        ids, _, probs = tv.teacher_stack(teachers, "test", sub)
        if example in ids:
            i = ids.index(example)
            markers = {t: (probs[k, i], teacher_color(t)) for k, t in enumerate(sub)}
    if naive is not None and (naive["example_id"] == example).any():
        p = naive.loc[naive["example_id"] == example].filter(regex=r"^p_\d+$").to_numpy()[0]
        markers[f"{naive_m} student"] = (p, method_color(naive_m))
    r = info.loc[example]
    title = (f"{example}: α = ({', '.join(f'{a:.1f}' for a in alpha)}), S = {r['S']:.1f}, "
             f"u = {r['vacuity']:.2f}, gold = {r['gold']}")
    fig, dens = pv.density_figure(alpha, c.class_names, title=title, markers=markers)
    ui.chart(fig, dens, "dirichlet-density")
    st.caption(f"“{ui.md_escape(info.at[example, 'text'])}”")

    left, right = st.columns(2)
    with left:
        ui.chart(pv.evidence_figure(frame), frame, "evidence-vacuity")
    with right:
        ui.chart(pv.confidence_figure(frame), frame, "edl-vs-naive-confidence")
    st.subheader("Examples ranked by vacuity")
    ui.table(pv.vacuity_ranking(frame), "vacuity-ranking", height=300)


ui.guard(body)
