"""Teachers: accuracy, agreement / Cohen's κ, vote entropy, where they split, Dawid–Skene; for
generation experiments SLU-F1 and JSON validity, slot-level agreement and where they split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app_pages import _data as data
from app_pages import _ui as ui
from w2s_core.viz import gen_teachers as gt
from w2s_core.viz import teachers as tv


@st.cache_data(show_spinner="Fitting Dawid–Skene on the transfer split…", max_entries=16)
def _dawid_skene(ws: str, exp_id: str, stamp: tuple, names: tuple[str, ...],
                 data_seed: int | None) -> pd.DataFrame:
    from w2s_core.methods.aggregate import dawid_skene  # imports crowd-kit: only when needed

    _, gold, probs = tv.teacher_stack(ui.load_teachers(ws, exp_id, stamp, data_seed),
                                      "transfer", list(names))
    est = dawid_skene(probs).accuracy
    true = (probs.argmax(-1) == gold).mean(1)
    return tv.ds_frame(list(names), true, est)


def generation(c: ui.Ctx) -> None:
    """SLU-F1 and JSON validity per teacher, slot-level agreement, where the subset splits."""
    subset = data.subset_teachers(c)
    scores = gt.teacher_scores(data.teacher_summaries(c))
    ui.chart(gt.teacher_scores_figure(scores, subset), scores, "teacher-slu-f1")
    top1, top1_text = data.top1(c)
    if not top1:
        st.info("This experiment has no stored teacher outputs yet.")
        return
    gold_text = data.gold_texts(c)
    mats = data.slot_agreement(c)
    for col, kind in zip(st.columns(2), ("agreement", "kappa"), strict=True):
        with col:
            mat = mats[kind]
            ui.chart(gt.agreement_figure(mat, kind), mat.reset_index(names="teacher"),
                     f"teacher-slot-{kind}")
    st.caption("Both on the test split, from each teacher's top-1 output. Set agreement: share "
               "of utterances whose (type, value) sets are equal. Slot κ: Cohen's κ over "
               "(utterance, slot type) items — every type found on test in gold or in either "
               "teacher's outputs — each teacher labelling an item with its value(s) for the "
               "type or “none”; κ = (p_o − p_e) / (1 − p_e), p_e = Σ p_A(label) p_B(label).")

    st.subheader("Where the teachers split")
    outputs, labels = data.student_outputs(c)
    students = {m: dict(zip(df["example_id"].astype(str), df["text"].astype(str),
                            strict=True)) for m, df in outputs.items() if "text" in df}
    ids = list(gold_text)
    split = gt.split_utterances(ids, subset, top1_text, top1, c.texts(), gold_text, students)
    st.caption(f"{len(split)} of {len(ids)} test utterances on which the top-1 slot sets of "
               f"{', '.join(subset)} differ. Teacher columns: each teacher's top-1 output; → "
               "columns: each student's output.")
    data.run_caption(c, labels)
    ui.table(split, "split-utterances", height=320)


def body(c: ui.Ctx) -> None:
    st.title("Teachers")
    if not ui.need_runs(c):
        return
    if c.several_replicates:  # each replicate retrained its teachers on its own splits
        which = "chosen" if c.sel.get("data_seed", "all") != "all" else "first"
        st.caption(f"Teachers of data seed {c.data_seed} (the {which} replicate) and its "
                   "examples; pick another replicate in the sidebar.")
    if c.is_generation:
        generation(c)
        return
    teachers = c.teachers()
    if not teachers:
        st.info("This experiment has no stored teacher predictions yet.")
        return
    subset = data.subset_teachers(c)
    acc = tv.teacher_accuracy(teachers)
    ui.chart(tv.teacher_accuracy_figure(acc, subset), acc, "teacher-accuracy")

    left, right = st.columns(2)
    ids_all, _, probs_all = tv.teacher_stack(teachers, "test")
    with left:
        kind = ui.select("agree", "Measure", ["kappa", "agreement"], kind="radio",
                         horizontal=True, fmt={"kappa": "Cohen's κ",
                                               "agreement": "raw agreement"}.get)
        mat = tv.agreement_matrix(probs_all, list(teachers), kind)
        ui.chart(tv.agreement_heatmap(mat, kind), mat.reset_index(names="teacher"),
                 f"teacher-{kind}")
    ids, gold, probs = tv.teacher_stack(teachers, "test", subset)
    votes = tv.vote_table(ids, probs)
    with right:
        st.caption(f"Vote split of {len(subset)} teachers: {', '.join(subset)}")
        ui.chart(tv.entropy_histogram(votes), votes, "vote-entropy")

    st.subheader("Where the teachers split")
    students, labels = data.student_preds(c, ids)
    split = tv.split_examples(ids, gold, probs, subset, c.texts(), c.class_names, students)
    st.caption(f"{len(split)} of {len(ids)} test examples split the teachers. Teacher columns: "
               "each teacher's probability of the gold label; → columns: each student's "
               "prediction (✓ right, ✗ wrong).")
    data.run_caption(c, labels)
    prob_cols = {t: st.column_config.ProgressColumn(t, min_value=0.0, max_value=1.0,
                                                    format="%.2f") for t in subset}
    ui.table(split, "split-examples", column_config=prob_cols, height=320)
    if split.empty:
        return
    example = ui.select("example", "Example", split["example_id"].tolist(),
                        fmt=lambda i: f"{i} — {c.texts().get(i, '')[:70]}")
    i = ids.index(example)
    t_p = {t: probs[k, i] for k, t in enumerate(subset)}
    s_p = {m: p[i] for m, p in students.items()}
    long = tv.example_probs(t_p, s_p, c.class_names)
    title = f"{example}: gold = {c.class_names[gold[i]]}"
    ui.chart(tv.example_figure(long, title), long, "example-probabilities")

    st.subheader("Dawid–Skene: accuracy estimated without gold")
    if len(subset) < 2:
        st.info("Dawid–Skene needs at least two teachers.")
        return
    ds = _dawid_skene(str(c.ws), c.exp_id, c.stamp, tuple(subset), c.data_seed)
    ui.chart(tv.ds_figure(ds), ds, "dawid-skene")
    st.caption(f"Mean absolute error of the estimate: {np.abs(ds['error']).mean():.3f}")


ui.guard(body)
