"""Page-side data wiring: which teachers and which student runs the current selection means."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Student:
    """One student run's test predictions on the requested examples, in their order."""

    probs: np.ndarray  # (N, C)
    # (N, C) the weak labels it was trained toward, made the same way on test (``w_*``
    # columns); None for runs written before those columns existed
    weak: np.ndarray | None
    label: str


def subset_teachers(c: ui.Ctx) -> list[str]:
    """The chosen subset's teachers, or all teachers when the subset has only one (a single
    teacher cannot disagree with itself)."""
    sub = [t for t in str(c.sel.get("subset") or "").split("+") if t]
    return sub if len(sub) >= 2 else c.teacher_names


def chosen_run(c: ui.Ctx, method: str) -> pd.Series | None:
    """The one run of ``method`` that the sidebar's choices mean: its subset, aux, seed, option
    setting and data replicate (the first one when all are in view)."""
    s = c.sel
    return pick_run(c.runs, method, s.get("subset", ""), s.get("aux", "both"),
                    s.get("seed", "all"), s.get("setting"), s.get("data_seed", "all"))


def label_of(c: ui.Ctx, row: pd.Series) -> str:
    """A run's label, naming its setting and data seed when the experiment has several."""
    return run_label(row, c.setting_label, c.several_replicates)


def students(c: ui.Ctx, ids: list[str], methods: list[str] | None = None
             ) -> dict[str, Student]:
    """method → its chosen run's predictions on ``ids`` (and its own weak labels). Methods
    without a readable run on exactly these examples are left out."""
    out: dict[str, Student] = {}
    for m in methods or method_options(c.runs):
        row = chosen_run(c, m)
        if row is None:
            continue
        df = c.preds(str(row["run_id"]))
        if df is None:
            continue
        idx = df.set_index("example_id")
        if not set(ids) <= set(idx.index):
            continue  # a run on other examples (another split config) cannot be compared
        rows = idx.loc[ids]
        weak = probs_of(rows, "w")
        out[m] = Student(probs_of(rows), weak if weak.size else None, label_of(c, row))
    return out


def student_preds(c: ui.Ctx, ids: list[str], methods: list[str] | None = None
                  ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """method → predictions (N, C) on ``ids`` for the chosen subset / aux / seed, and
    method → run label. Methods without a readable run are left out."""
    found = students(c, ids, methods)
    return {m: s.probs for m, s in found.items()}, {m: s.label for m, s in found.items()}


def run_caption(c: ui.Ctx, labels: dict[str, str]) -> None:
    """One line saying which runs the students are: same subset, seed, aux setting, option
    setting and data replicate."""
    if not labels:
        return
    s = c.sel
    seed = representative_seed(c.runs, s.get("seed", "all"))
    aux = "with aux" if s.get("aux") == "on" else "without aux"
    extra = f", {c.setting_label}" if c.setting_label else ""
    extra += f", data seed {c.data_seed}" if c.several_replicates else ""
    st.caption(f"Students: {', '.join(m for m in labels if m != 'ceiling')} — subset "
               f"{subset_label(s.get('subset', ''))}, seed {seed}, {aux}{extra}.")
