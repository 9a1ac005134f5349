"""The Generation page's DPO section: the DPO runs that continue the run in view, SLU-F1
before → after with paired intervals over seeds, and one DPO run's preference pairs."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages import _data as data
from app_pages import _ui as ui
from w2s_core.viz import gen_dpo as gd
from w2s_core.viz.runs import representative_seed

# pair tables up to this many rows are static HTML (all rows readable at once, no canvas grid
# to draw); more scroll in an interactive grid
STATIC_ROWS = 40


@st.cache_data(show_spinner=False, max_entries=64)
def _dpo(ws: str, exp_id: str, stamp: tuple, run_id: str, _runs: pd.DataFrame
         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    parent = _runs.set_index("run_id").loc[run_id]
    dpo = gd.dpo_runs(_runs, parent)
    return dpo, gd.dpo_summary(dpo)


@st.cache_resource(show_spinner=False, max_entries=16)
def _dpo_figure(ws: str, exp_id: str, stamp: tuple, run_id: str, method: str, title: str,
                _summary: pd.DataFrame) -> go.Figure:
    """Built once per run and store state (plotly's validation costs ~0.1 s a build, on every
    rerun of the page otherwise). A shared object, never changed after building."""
    return gd.dpo_figure(_summary, method, title)


def dpo_section(c: ui.Ctx, row: pd.Series) -> None:
    st.subheader("DPO after this run: preference pairs, SLU-F1 before → after")
    dpo, summary = _dpo(str(c.ws), c.exp_id, c.stamp, str(row["run_id"]), c.all_runs)
    if dpo.empty:
        st.caption(f"No DPO runs continue {row['method']} runs of this selection (the "
                   "experiment's `generation.dpo.after` names the methods DPO follows).")
        return
    title = f"SLU-F1 before → after DPO — {row['method']}, {row['subset']}"
    ui.chart(_dpo_figure(str(c.ws), c.exp_id, c.stamp, str(row["run_id"]), str(row["method"]),
                         title, summary), summary, "dpo-before-after")
    ui.small_table(summary, "dpo-summary")
    st.caption("Δ = after − before of each DPO run against its own parent run, averaged over "
               "seeds; the interval resamples seeds (a t-interval over seed means: seeds re-draw "
               "the student's training, not the data or the teachers). "
               + "; ".join(sorted(set(summary["interval"]))) + ".")
    seed = representative_seed(c.runs, c.sel.get("seed", "all"))
    mine = dpo[dpo["seed"].astype(str) == str(seed)]
    if mine.empty:
        return
    eps = ui.select("dpo_eps", "Pairs of the DPO run with ε", mine["eps"].tolist(),
                    kind="radio", horizontal=True)
    run = mine[mine["eps"] == eps].iloc[0]
    pairs = data.run_file(c, str(run["run_id"]), "pairs.parquet")
    st.caption(f"{0 if pairs is None else len(pairs)} pairs of seed {seed} on the transfer "
               "split: the student's own beams, chosen = best and rejected = worst by the "
               "ensemble's score Σ λ·(per-token log p); ε = the label-noise rate the loss used.")
    view = gd.pairs_view(pairs)
    if len(view) <= STATIC_ROWS:
        ui.small_table(view, f"dpo-pairs-{eps}", "dpo-pairs")
    else:
        ui.table(view, f"dpo-pairs-{eps}", height=300)
