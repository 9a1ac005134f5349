"""Compare runs: two or more runs side by side — metrics, and configs with a differences view."""

from __future__ import annotations

from typing import Any

import streamlit as st

from app_pages import _data as data
from app_pages import _ui as ui
from w2s_core.experiments import store, tables
from w2s_core.viz import compare as cmp
from w2s_core.viz.runs import identity_labels


@st.cache_data(show_spinner=False, max_entries=512)
def _config(ws: str, exp_id: str, run_id: str, mtime: int) -> dict[str, Any]:
    return store.read_json(store.experiment_dir(ws, exp_id).run_dir(run_id) / "config.json")


def body(c: ui.Ctx) -> None:
    st.title("Compare runs")
    if not ui.need_runs(c):
        return
    # every run of the experiment: side by side is no pooling, so runs of two option settings
    # or data replicates may be compared, and their labels say which is which
    runs = c.all_runs.set_index("run_id", drop=False)
    labels = identity_labels(c.all_runs, c.setting_names)
    default = []
    for m in (c.sel.get("method"), "naive", "naive-soft", "single", "single-hard"):
        row = data.chosen_run(c, m) if m else None
        if row is not None and row["run_id"] not in default:
            default.append(row["run_id"])
    chosen = ui.select_many("runs", "Runs to compare", list(labels), default[:2],
                            fmt=lambda r: labels.get(r, r),
                            placeholder="pick two or more runs")
    if not chosen:
        st.info("Pick at least one run above.")
        return
    rows = runs.loc[chosen]
    side = cmp.metrics_side_by_side(rows.reset_index(drop=True), [labels[r] for r in chosen])
    methods = [str(m) for m in rows["method"]]
    ui.chart(cmp.compare_figure(side, methods), side, "compare-metrics")
    st.subheader("Metrics")
    ui.table(side, "compare-metrics-table")

    st.subheader("Configs")
    st.session_state.setdefault("w_diff", bool(st.session_state.get(ui.SEL + "diff", True)))
    only = st.toggle("Differences only", key="w_diff")
    st.session_state[ui.SEL + "diff"] = only
    configs: dict[str, dict[str, Any]] = {}
    for rid in chosen:
        path = store.experiment_dir(c.ws, c.exp_id).run_dir(rid) / "config.json"
        try:
            configs[labels[rid]] = _config(str(c.ws), c.exp_id, rid, ui._mtime(path))
        except Exception as e:  # noqa: BLE001 - a missing config must not hide the others
            c.warn_once(rid, f"Run {rid}: config unreadable ({e})")
    diff = cmp.config_diff(configs, only_diff=only)
    if diff.empty:
        st.caption("The configs are identical." if only else "No configs.")
    else:
        ui.table(diff, "compare-configs")
    _contrasts(c)


def _contrasts(c: ui.Ctx) -> None:
    """Option settings one option apart, as paired differences on matched runs (what
    `w2s report` prints under "one option changed, all else equal")."""
    metric = tables.score_column(c.all_runs)  # the task's headline score, as the report
    name = "SLU-F1" if metric == "slu_f1" else "Accuracy"
    con = cmp.contrast_table(tables.setting_contrasts(
        c.all_runs, c.meta.get("settings") or {}, c.meta.get("option_defaults"), metric))
    if con.empty:
        return
    st.subheader("One option changed, all else equal")
    labels = sorted(set(con["contrast"]))
    chosen = ui.select_many("contrasts", "Contrasts", labels, labels[:3],
                            placeholder="pick one or more option contrasts")
    con = con[con["contrast"].isin(chosen)].reset_index(drop=True)
    if con.empty:
        return
    st.caption("Option settings of this experiment that differ in exactly one option: "
               f"{name} of a − b on transfer runs matched on data replicate, teacher subset, "
               "seed and aux, per method and K (b holds the library default). Unit of the "
               f"interval: {', '.join(sorted(set(con['unit'])))}.")
    ui.chart(cmp.contrast_figure(con, name), con, "compare-option-contrasts")


ui.guard(body)
