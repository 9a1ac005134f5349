"""Recovery: PGR and the test score (accuracy, or SLU-F1 for generation) vs ensemble size K per
method, with intervals over independent units (data replicates, else teacher subsets, else
seeds), one option setting at a time."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages import _ui as ui
from w2s_core.metrics.intervals import interval_note
from w2s_core.viz import recovery
from w2s_core.viz.runs import filter_view, subset_label, subset_runs, view_runs

RUN_COLUMNS = ["method", "aux", "seed", "accuracy", "pgr_mean", "pgr_best", "pgr_vote",
               "floor_mean", "floor_best", "floor_vote", "ceiling", "ece", "brier", "run_id"]
GEN_RUN_COLUMNS = ["method", "aux", "seed", "slu_f1", "json_validity", "span_f1", "pgr_mean",
                   "pgr_best", "pgr_joint", "floor_mean", "floor_best", "floor_joint", "ceiling",
                   "run_id"]


@st.cache_data(show_spinner=False, max_entries=64)
def _table(ws: str, exp_id: str, stamp: tuple, setting: str, data_seed: object, aux: str,
           seed: object, metric: str, floor: str) -> pd.DataFrame:
    runs, _ = ui.load_runs(ws, exp_id, stamp)
    view = view_runs(runs, setting, data_seed)
    return recovery.recovery_table(filter_view(view, aux, seed, setting), metric, floor)


def body(c: ui.Ctx) -> None:
    st.title("Recovery vs ensemble size")
    if not ui.need_runs(c):
        return
    s = c.sel
    metric = ui.select("metric", "Show", ["pgr", c.score], kind="radio", horizontal=True,
                       fmt=recovery.METRIC_NAMES.get)
    table = _table(str(c.ws), c.exp_id, c.stamp, s["setting"], s["data_seed"], s["aux"],
                   s["seed"], metric, s["floor"])
    if c.is_generation:  # its score column is SLU-F1 (`score`); accuracy is empty
        table = table.drop(columns="accuracy")
    ceiling = recovery.ceiling_level(c.runs, s["seed"], c.train_setting, c.score)
    fig = recovery.recovery_figure(table, metric=metric, floor=s["floor"], k_selected=s["k"],
                                   method_selected=s["method"], ceiling=ceiling)
    ui.chart(fig, table, f"recovery-{metric}-{s['floor']}")
    n_undef = int(table["n_undefined"].sum()) if metric == "pgr" else 0
    n_all = int(table["n"].sum() + n_undef)
    if n_undef:
        st.warning(f"PGR is undefined for {n_undef} of {n_all} runs (strong ceiling ≤ weak "
                   f"floor with the “{s['floor']}” convention). They are counted in the "
                   "`n_undefined` column and left out of the means, never dropped silently.",
                   icon=ui.WARNING)
    seeds = "all seeds" if s["seed"] == "all" else f"seed {s['seed']}"
    if c.several_replicates:
        seeds += (" and all data replicates" if s["data_seed"] == "all"
                  else f", data seed {s['data_seed']}")
    where = f" Option setting: {c.setting_label}." if c.setting_label else ""
    st.caption(f"Mean over every teacher subset of size K and over {seeds}; band and table: "
               f"the interval below. PGR floor: {s['floor']}.{where}")
    st.caption(interval_note(table))
    st.subheader("The numbers behind the chart")
    st.dataframe(table, hide_index=True, key="table_recovery",
                 column_config={c_: st.column_config.NumberColumn(format="%.3f")
                                for c_ in ("mean", "std", "lo", "hi", "floor")})
    st.subheader(f"Runs of one subset: {subset_label(s['subset'])}")
    runs = subset_runs(c.runs, s["subset"], s["aux"], s["seed"], s["setting"], s["data_seed"])
    columns = GEN_RUN_COLUMNS if c.is_generation else RUN_COLUMNS
    wanted = columns[:3] + ["data_seed"] * c.several_replicates + columns[3:]
    cols = [col for col in wanted if col in runs.columns]
    ui.table(runs[cols], f"runs-{s['subset']}",
             column_config={col: st.column_config.NumberColumn(format="%.3f")
                            for col in cols if col not in ("method", "aux", "seed", "data_seed",
                                                           "run_id")})


ui.guard(body)
