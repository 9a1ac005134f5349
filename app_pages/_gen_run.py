"""The generation run in view, shared by the Generation and DPO pages: the sidebar's run, or
its sibling in the bridge target mode picked on the radio (each mode is its own run)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages import _data as data
from app_pages import _ui as ui
from w2s_core.viz import gen_tokens as gt
from w2s_core.viz.runs import run_label


# depends on the run, not the utterance: cached so an utterance switch skips it (arguments
# with a leading underscore are not hashed; the stamp stands for them)
@st.cache_data(show_spinner=False, max_entries=64)
def _modes(ws: str, exp_id: str, stamp: tuple, run_id: str, _row: pd.Series,
           _runs: pd.DataFrame) -> dict[str, str]:
    return gt.mode_runs(_runs, _row)


def run_row(c: ui.Ctx, run_id: str) -> pd.Series:
    row = c.all_runs.set_index("run_id").loc[run_id].copy()
    row["run_id"] = run_id
    return row


def run_in_view(c: ui.Ctx) -> pd.Series | None:
    """The page's generation run, with the bridge-mode radio when sibling modes are stored and
    a caption naming the run; None (after saying why) when there is none to show."""
    if c.exp_id is not None and not c.is_generation:
        st.info("This page is for generation (slot-filling) experiments: pick one in the "
                "sidebar.", icon=":material/subject:")
        return None
    if not ui.need_runs(c):
        return None
    row = data.chosen_run(c, c.sel["method"])
    if row is None:
        st.info("No run of this method for the chosen subset, seed and aux setting.")
        return None
    row = run_row(c, str(row["run_id"]))
    modes = _modes(str(c.ws), c.exp_id, c.stamp, str(row["run_id"]), row, c.all_runs)
    if st.session_state.get("gen_bridge_of") != row["run_id"]:
        # another run chosen in the sidebar: the radio starts from that run's own mode
        st.session_state["gen_bridge_of"] = row["run_id"]
        ui.set_sel("bridge", str(row.get("opt_target_mode")))
    if len(modes) > 1:
        mode = ui.select("bridge", "Bridge target mode", list(modes), kind="radio",
                         horizontal=True, default=str(row.get("opt_target_mode")),
                         help="detached / live: q read from the trained student; frozen: q "
                              "from the initial student, as trained. Each mode is its own run.")
        row = run_row(c, modes[mode])
    # the run in view may be a sibling in another option setting: name that setting
    name = c.setting_names.get(str(row.get("setting"))) if c.several_settings else None
    st.caption(f"Run: {run_label(row, name, c.several_replicates)} · bridge mode "
               f"{row.get('opt_target_mode')} · run id `{row['run_id']}`")
    return row
