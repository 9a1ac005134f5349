"""Page-side data wiring: which teachers and which student runs the current selection means."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app_pages import _ui as ui
from w2s_core.experiments.store import probs_of
from w2s_core.viz.runs import (
    method_options,
    pick_run,
    representative_seed,
    run_label,
    subset_label,
)


def subset_teachers(c: ui.Ctx) -> list[str]:
    """The chosen subset's teachers, or all teachers when the subset has only one (a single
    teacher cannot disagree with itself)."""
    sub = [t for t in str(c.sel.get("subset") or "").split("+") if t]
    return sub if len(sub) >= 2 else c.teacher_names


def run_row(c: ui.Ctx, method: str) -> pd.Series | None:
    s = c.sel
    return pick_run(c.runs, method, s.get("subset", ""), s.get("aux", "both"), s.get("seed", "all"))


def student_preds(c: ui.Ctx, ids: list[str], methods: list[str] | None = None
                  ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """method → predictions (N, C) on ``ids`` for the chosen subset / aux / seed, and
    method → run label. Methods without a readable run are left out."""
    out: dict[str, np.ndarray] = {}
    labels: dict[str, str] = {}
    for m in methods or method_options(c.runs):
        row = run_row(c, m)
        if row is None:
            continue
        df = c.preds(str(row["run_id"]))
        if df is None:
            continue
        idx = df.set_index("example_id")
        if not set(ids) <= set(idx.index):
            continue  # a run on other examples (another split config) cannot be compared
        out[m] = probs_of(idx.loc[ids])
        labels[m] = run_label(row)
    return out, labels


def run_caption(c: ui.Ctx, labels: dict[str, str]) -> None:
    """One line saying which runs the students are: same subset, seed and aux setting."""
    if not labels:
        return
    s = c.sel
    seed = representative_seed(c.runs, s.get("seed", "all"))
    aux = "with aux" if s.get("aux") == "on" else "without aux"
    st.caption(f"Students: {', '.join(m for m in labels if m != 'ceiling')} — subset "
               f"{subset_label(s.get('subset', ''))}, seed {seed}, {aux}.")
