"""WeakS-to-Strong Lab — the dashboard frame: page navigation and the shared sidebar selectors.

Run it with ``streamlit run app.py`` (or ``make run``); results are read from the workspace
(``$W2S_WORKSPACE``, default ``./w2s_workspace``). Selections made here are copied into plain
session keys and mirrored into the URL, so they survive page switches and can be bookmarked.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from app_pages import _ui as ui
from w2s_core.viz.colors import method_label
from w2s_core.viz.runs import (
    aux_options,
    data_seed_options,
    default_method,
    floors_for,
    k_options,
    method_options,
    seed_options,
    setting_names,
    setting_options,
    subset_label,
    subset_options,
    train_setting_of,
    transfer_runs,
    view_runs,
)

# The favicon is an inline SVG (a flask): an emoji favicon needs an emoji font, which headless
# Debian lacks (an empty box), and a Material favicon is fetched from fonts.gstatic.com, which an
# offline machine cannot reach. Everywhere else icons are Material symbols, whose font ships with
# Streamlit.
FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path fill="#4361ee" '
           'd="M8.5 2h7v2h-1.2v5.1l5.4 9.4A2.3 2.3 0 0 1 17.7 22H6.3a2.3 2.3 0 0 1-2-3.5l5.4-9.4'
           'V4H8.5z"/></svg>')
st.set_page_config(page_title="WeakS-to-Strong Lab", page_icon=FAVICON, layout="wide")
log = logging.getLogger("w2s.dashboard")

AUX_LABELS = {"off": "without aux", "on": "with aux", "both": "both"}


def _exp_label(experiments: pd.DataFrame, exp_id: str) -> str:
    row = experiments.set_index("id").loc[exp_id]
    runs = "" if pd.isna(row.get("n_runs")) else f" · {int(row['n_runs'])} runs"
    status = row.get("status")
    return f"{row.get('name') or exp_id} ({exp_id[-6:]}){runs}" + (
        f" · {status}" if status and status != "done" else "")


@st.cache_data(show_spinner=False, max_entries=16)
def settings_of(ws: str, exp_id: str, stamp: tuple[Any, ...]) -> dict[str, Any]:
    """Per option setting (the most-run first, ties in the order they were run): its label,
    its data seeds and its training setting — computed once per change of the experiment's
    files, not on every rerun."""
    runs, _ = ui.load_runs(ws, exp_id, stamp)
    known = ui.load_meta(ws, exp_id, stamp).get("settings") or {}
    settings = setting_options(runs, list(known))
    views = {s: transfer_runs(view_runs(runs, s)) for s in settings}
    return {"settings": settings, "names": setting_names(runs, known),
            "seeds": {s: data_seed_options(v) for s, v in views.items()},
            "train": {s: train_setting_of(v, s) for s, v in views.items()}}


def identity(c: ui.Ctx) -> None:
    """Narrow ``c.runs`` to one option setting and, if chosen, one data replicate.

    Runs of two settings are never pooled, so every page reads the chosen setting's runs only;
    the selectors appear only when there is a choice (one setting, one replicate: nothing new
    is drawn and nothing changes).
    """
    assert c.exp_id is not None
    sb, sel = st.sidebar, c.sel
    info = settings_of(str(c.ws), c.exp_id, c.stamp)
    settings = info["settings"]
    if not settings:
        return
    c.setting_names = info["names"]
    sel["setting"] = settings[0] if len(settings) == 1 else ui.select(
        "setting", "Option setting", settings, where=sb, fmt=c.setting_names.get,
        help="Runs with other method options or training settings are never pooled: "
             "pick the set of options to show (default: the most-run).")
    c.data_seeds = seeds = info["seeds"][sel["setting"]]
    c.train_setting = info["train"][sel["setting"]]
    sel["data_seed"] = "all" if len(seeds) <= 1 else ui.select(
        "data_seed", "Data replicate", ["all", *seeds], where=sb,
        fmt=lambda d: "all replicates" if d == "all" else f"data seed {d}",
        help="Replicates re-draw the splits and retrain the teachers. All: charts pool them "
             "and their intervals resample replicates; one-run views show the first.")
    c.runs = view_runs(c.all_runs, sel["setting"], sel["data_seed"])


def sidebar() -> ui.Ctx:
    """Draw the shared selectors and resolve what they select."""
    sb = st.sidebar
    default_ws = os.environ.get("W2S_WORKSPACE", "w2s_workspace")
    st.session_state.setdefault(ui.SEL + "ws", default_ws)
    st.session_state.setdefault("w_ws", st.session_state[ui.SEL + "ws"])
    ws_text = sb.text_input("Workspace", key="w_ws", help="Folder with the experiments "
                            "(`--workspace` of the w2s commands).")
    st.session_state[ui.SEL + "ws"] = ws_text
    ws = Path(ws_text or default_ws).expanduser().resolve()
    exps = ui.load_experiments(str(ws), ui.experiments_stamp(ws))
    c = ui.Ctx(ws=ws, experiments=exps)
    if exps.empty:
        sb.caption("No experiments here yet — run one from the :material/science: Lab.")
        return c
    corrupt = exps["status"].astype(str).str.startswith("corrupt")
    c.warnings += [f"experiment {i} skipped: {s}" for i, s in
                   zip(exps.loc[corrupt, "id"], exps.loc[corrupt, "status"], strict=True)]
    exps = exps[~corrupt]
    if exps.empty:
        return c
    datasets = sorted(exps["dataset"].dropna().astype(str).unique().tolist())
    # a URL naming only an experiment opens on that experiment's dataset
    by_id = dict(zip(exps["id"], exps["dataset"].astype(str), strict=True))
    dataset = ui.select("dataset", "Dataset", datasets, where=sb,
                        default=by_id.get(str(st.session_state.get(ui.SEL + "exp"))))
    ids = exps.loc[exps["dataset"].astype(str) == str(dataset), "id"].tolist() or \
        exps["id"].tolist()
    c.exp_id = ui.select("exp", "Experiment", ids, where=sb,
                         fmt=lambda i: _exp_label(exps, i))
    c.stamp = ui.experiment_stamp(ws, c.exp_id)
    c.meta = ui.load_meta(str(ws), c.exp_id, c.stamp)
    c.all_runs, run_warnings = ui.load_runs(str(ws), c.exp_id, c.stamp)
    c.runs = c.all_runs
    c.warnings += run_warnings
    what = "slot types" if c.is_generation else "classes"
    sb.caption(f"{len(c.class_names)} {what} · teachers: {', '.join(c.teacher_names)} · "
               f"student: {c.meta.get('config', {}).get('student', '?')}")
    identity(c)
    sel = c.sel
    ks = k_options(c.runs)
    if not ks:
        return c
    if len(ks) > 1:
        sel["k"] = ui.select("k", "Ensemble size K", ks, where=sb, kind="select_slider",
                             default=ks[-1])
    else:
        sel["k"] = ks[0]
        st.session_state[ui.SEL + "k"] = ks[0]
    sel["subset"] = ui.select("subset", "Teacher subset", subset_options(c.runs, sel["k"]),
                              where=sb, fmt=subset_label)
    sel["method"] = ui.select("method", "Method", method_options(c.runs), where=sb,
                              fmt=lambda m: f"{m} — {method_label(m)}",
                              default=default_method(c.runs, sel["subset"]))
    sel["aux"] = ui.select("aux", "Auxiliary confidence loss", aux_options(c.runs), where=sb,
                           kind="radio", fmt=AUX_LABELS.get, default="off", horizontal=True)
    sel["seed"] = ui.select("seed", "Seeds", ["all", *seed_options(c.runs)], where=sb,
                            fmt=lambda s: "all seeds" if s == "all" else f"seed {s}")
    sel["floor"] = ui.select("floor", "PGR floor", list(floors_for(c.meta)), where=sb,
                             kind="radio", horizontal=True, help=(
                                 "mean / best of the K teachers' SLU-F1, or the SLU-F1 of their "
                                 "joint-decoded outputs" if c.is_generation else
                                 "mean / best of the K teachers, or their vote"))
    return c


def frame() -> ui.Ctx:
    ui.load_query_params()
    try:
        return sidebar()
    except Exception as e:  # noqa: BLE001 - an unreadable workspace must still leave the Lab usable
        log.exception("sidebar failed")
        st.sidebar.error(f"Could not read the workspace: {e}")
        ws = Path(st.session_state.get(ui.SEL + "ws") or "w2s_workspace").expanduser().resolve()
        return ui.Ctx(ws=ws, experiments=pd.DataFrame())


c = frame()
st.session_state["_ctx"] = c
# Recovery is always the default page ("/"): a default page's own url_path is not routable,
# so a moving default would break bookmarks. An empty workspace is sent on to the Lab instead.
recovery_page = st.Page("app_pages/recovery.py", title="Recovery", icon=":material/trending_up:",
                        default=True)
lab_page = st.Page(ui.LAB_PAGE, title="Lab", icon=":material/science:", url_path="lab")
page = st.navigation({
    "Results": [
        recovery_page,
        st.Page("app_pages/teachers.py", title="Teachers", icon=":material/groups:",
                url_path="teachers"),
        st.Page("app_pages/dirichlet.py", title="Dirichlet posteriors",
                icon=":material/change_history:", url_path="dirichlet"),
        st.Page("app_pages/calibration.py", title="Calibration", icon=":material/adjust:",
                url_path="calibration"),
        st.Page("app_pages/compare.py", title="Compare runs", icon=":material/compare_arrows:",
                url_path="compare"),
        st.Page("app_pages/generation.py", title="Generation", icon=":material/subject:",
                url_path="generation"),
        st.Page("app_pages/dpo.py", title="DPO", icon=":material/thumbs_up_down:",
                url_path="dpo"),
    ],
    "Present": [st.Page("app_pages/talk.py", title="Talk mode", icon=":material/co_present:",
                        url_path="talk")],
    "Run": [lab_page],
})
if c.experiments.empty and page.title == recovery_page.title:
    st.switch_page(lab_page)
for w in [w for w in c.warnings if ui.STALE in w]:  # a fixed method: its own warning
    st.warning(w, icon=ui.WARNING)
unreadable = [w for w in c.warnings if ui.STALE not in w]
if unreadable:  # one warning for all unreadable runs; everything else keeps working
    names = "; ".join(w.replace(str(c.ws), "…") for w in unreadable)
    st.warning(f"{len(unreadable)} unreadable item(s) left out: {names}", icon=ui.WARNING)
page.run()
