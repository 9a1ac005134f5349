"""Page-side data wiring: which teachers and which student runs the current selection means;
for generation experiments also the teachers' summaries and top-1 outputs, the gold targets,
the students' outputs and a run's further files (targets.parquet)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from app_pages import _ui as ui
from w2s_core import api
from w2s_core.experiments import store
from w2s_core.experiments.store import probs_of
from w2s_core.metrics.slu import Pairs
from w2s_core.viz import gen_teachers as gt
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


# ---------------------------------------------------------------- generation experiments
@st.cache_data(show_spinner=False, max_entries=8)
def _summaries(ws: str, exp_id: str, stamp: tuple, data_seed: int | None
               ) -> dict[str, dict[str, object]]:
    return api.teacher_summaries(exp_id, ws, data_seed)


@st.cache_data(show_spinner=False, max_entries=8)
def _gold(ws: str, exp_id: str, stamp: tuple, data_seed: int | None) -> dict[str, str]:
    ex = api.examples(exp_id, ws, data_seed, columns=["example_id", "split", "gold"])
    ex = ex[ex["split"] == "test"]
    return dict(zip(ex["example_id"].astype(str), ex["gold"].astype(str), strict=True))


@st.cache_data(show_spinner="Reading the teachers' outputs…", max_entries=8)
def _top1(ws: str, exp_id: str, stamp: tuple, data_seed: int | None
          ) -> tuple[dict[str, dict[str, Pairs]], dict[str, dict[str, str]]]:
    nbest = ui.load_teachers(ws, exp_id, stamp, data_seed)
    return ({t: gt.top1_slots(df) for t, df in nbest.items()},
            {t: gt.top1_texts(df) for t, df in nbest.items()})


@st.cache_data(show_spinner=False, max_entries=8)
def _agreement(ws: str, exp_id: str, stamp: tuple, data_seed: int | None
               ) -> dict[str, pd.DataFrame]:
    top1, _ = _top1(ws, exp_id, stamp, data_seed)
    gold = gt.gold_slots(_gold(ws, exp_id, stamp, data_seed))
    return gt.agreement_matrices(top1, list(gold), gold)


@st.cache_data(show_spinner=False, max_entries=64)
def _run_file(ws: str, exp_id: str, run_id: str, name: str, mtime: int) -> pd.DataFrame | None:
    return api.run_file(exp_id, run_id, name, ws)


def teacher_summaries(c: ui.Ctx) -> dict[str, dict[str, object]]:
    """Teacher → its teachers/<stem>.json (SLU-F1, JSON validity, span F1 per split)."""
    assert c.exp_id is not None
    return _summaries(str(c.ws), c.exp_id, c.stamp, c.data_seed)


def gold_texts(c: ui.Ctx) -> dict[str, str]:
    """Test example id → its gold JSON target, in the test split's order."""
    assert c.exp_id is not None
    return _gold(str(c.ws), c.exp_id, c.stamp, c.data_seed)


def top1(c: ui.Ctx) -> tuple[dict[str, dict[str, Pairs]], dict[str, dict[str, str]]]:
    """Per teacher: test example id → pairs parsed from its rank-0 output, and → that text."""
    assert c.exp_id is not None
    return _top1(str(c.ws), c.exp_id, c.stamp, c.data_seed)


def slot_agreement(c: ui.Ctx) -> dict[str, pd.DataFrame]:
    """K × K set agreement and slot κ of all teachers on test (``gen_teachers``)."""
    assert c.exp_id is not None
    return _agreement(str(c.ws), c.exp_id, c.stamp, c.data_seed)


def run_file(c: ui.Ctx, run_id: str, name: str) -> pd.DataFrame | None:
    """A run's further parquet file (``targets.parquet``, ``pairs.parquet``) or None; an
    unreadable one costs one warning."""
    assert c.exp_id is not None
    path = store.experiment_dir(c.ws, c.exp_id).run_dir(run_id) / name
    try:
        return _run_file(str(c.ws), c.exp_id, run_id, name, ui._mtime(path))
    except Exception as e:  # noqa: BLE001 - one bad run must not take the page down
        c.warn_once(f"{run_id}/{name}", f"Run {run_id}: {name} unreadable ({e})")
        return None


def student_outputs(c: ui.Ctx, methods: list[str] | None = None
                    ) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """method → its chosen run's predictions.parquet (generation: text, tok_conf, …), and
    method → run label. Methods without a readable run are left out."""
    frames, labels = {}, {}
    for m in methods or method_options(c.runs):
        row = chosen_run(c, m)
        df = c.preds(str(row["run_id"])) if row is not None else None
        if df is not None:
            frames[m], labels[m] = df, label_of(c, row)
    return frames, labels
