"""Recovery vs ensemble size: PGR or the test score (accuracy; SLU-F1 for generation) against K
per method, mean with an interval.

Each point aggregates every transfer run with that (setting, method, ± aux, K) in view: all
teacher subsets of size K, all seeds and data replicates (or one seed). The table is the one
``w2s report`` prints (``w2s_core.experiments.tables.recovery_table``), whose ``interval``
column says what each interval resamples. An undefined PGR (ceiling ≤ floor, stored as null)
is not averaged in but counted, and the count is drawn on the chart and kept in the table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from w2s_core.experiments.tables import recovery_table, value_column
from w2s_core.viz.colors import REFERENCE_COLOR, method_color, order_methods, rgba
from w2s_core.viz.common import empty_figure, finish
from w2s_core.viz.runs import ceiling_runs

METRIC_NAMES = {"pgr": "PGR", "accuracy": "accuracy", "slu_f1": "SLU-F1"}
__all__ = ["METRIC_NAMES", "ceiling_level", "recovery_figure", "recovery_table", "sorted_table",
           "value_column"]


def sorted_table(table: pd.DataFrame) -> pd.DataFrame:
    """Rows in the fixed method order (the order of the legend and the colours)."""
    if table.empty:
        return table
    order = {m: i for i, m in enumerate(order_methods(table["method"].unique().tolist()))}
    return table.assign(_o=table["method"].map(order)).sort_values(
        ["_o", "aux", "k"]).drop(columns="_o").reset_index(drop=True)

def ceiling_level(runs: pd.DataFrame, seed: object = "all",
                  train_setting: str | None = None, score: str = "accuracy") -> float | None:
    """Mean strong-ceiling ``score`` (accuracy, or SLU-F1 for generation) over the seeds (and
    data replicates) in view."""
    df = ceiling_runs(runs)
    if seed != "all" and not df.empty:
        df = df[df["seed"] == seed]
    if train_setting is not None and "train_setting" in df.columns:
        df = df[df["train_setting"] == train_setting]
    acc = pd.to_numeric(df.get(score, pd.Series(dtype=float)), errors="coerce").dropna()
    return float(acc.mean()) if len(acc) else None


def _ci_text(lo: float, hi: float) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no interval"
    return f"95% interval [{lo:.3f}, {hi:.3f}]"


def _series_name(method: str, aux: bool) -> str:
    return f"{method} + aux" if aux else method


def recovery_figure(table: pd.DataFrame, *, metric: str = "pgr", floor: str = "mean",
                    k_selected: int | None = None, method_selected: str | None = None,
                    ceiling: float | None = None, height: int = 480) -> go.Figure:
    """Lines of the mean per method (dashed: with aux) with a translucent CI band; reference
    lines for the weak floor and the strong ceiling; the selected K and method highlighted."""
    if table.empty:
        return empty_figure("No transfer runs in view")
    if "setting" in table.columns and table["setting"].nunique() > 1:
        raise ValueError("recovery_figure draws one option setting: filter the table first")
    table = sorted_table(table)
    fig = go.Figure()
    for (method, aux), g in table.groupby(["method", "aux"], sort=False):
        g = g.sort_values("k")
        color = method_color(method)
        name = _series_name(method, bool(aux))
        # the band only where there is an interval (a group of one unit has none)
        ok = g[np.isfinite(g[["mean", "lo", "hi"]].to_numpy(float)).all(axis=1)]
        if len(ok) > 1 and (ok["hi"] > ok["lo"]).any():
            fig.add_trace(go.Scatter(
                x=np.concatenate([ok["k"], ok["k"][::-1]]),
                y=np.concatenate([ok["hi"], ok["lo"][::-1]]),
                mode="lines", fill="toself", fillcolor=rgba(color, 0.12), line={"width": 0},
                hoverinfo="skip", showlegend=False, legendgroup=name, name=f"{name} CI"))
        chosen = method_selected is None or method == method_selected
        fig.add_trace(go.Scatter(
            x=g["k"], y=g["mean"], mode="lines+markers", name=name, legendgroup=name,
            line={"color": color, "dash": "dash" if aux else "solid",
                  "width": 4.5 if chosen and method_selected else 2.5},
            marker={"size": 11 if chosen and method_selected else 8},
            opacity=1.0 if chosen else 0.75,
            customdata=np.stack([[_ci_text(lo, hi) for lo, hi in zip(g["lo"], g["hi"],
                                                                      strict=True)],
                                 g["n"], g["n_undefined"], g["interval"]], axis=1),
            hovertemplate=(f"<b>{name}</b><br>K=%{{x}}<br>mean %{{y:.3f}}"
                           "<br>%{customdata[0]}<br>n=%{customdata[1]}, undefined="
                           "%{customdata[2]}<br>%{customdata[3]}<extra></extra>")))
    name = METRIC_NAMES.get(metric, metric)
    ylab = f"PGR (floor: {floor})" if metric == "pgr" else f"test {name}"
    if metric == "pgr":
        fig.add_hline(y=0, line={"color": REFERENCE_COLOR, "dash": "dash", "width": 1},
                      annotation_text=f"weak floor ({floor})", annotation_position="bottom left")
        fig.add_hline(y=1, line={"color": REFERENCE_COLOR, "dash": "dot", "width": 1},
                      annotation_text="strong ceiling", annotation_position="top left")
    else:
        fl = table.groupby("k")["floor"].mean().dropna()
        if len(fl):
            fig.add_trace(go.Scatter(x=fl.index, y=fl.values, mode="lines+markers",
                                     name=f"weak floor ({floor})",
                                     line={"color": REFERENCE_COLOR, "dash": "dash", "width": 1.5},
                                     marker={"symbol": "square-open"}))
        if ceiling is not None:
            fig.add_hline(y=ceiling, line={"color": method_color("ceiling"), "dash": "dot"},
                          annotation_text=f"strong ceiling {ceiling:.3f}",
                          annotation_position="top left")
    undef = table.groupby("k")["n_undefined"].sum()
    undef = undef[undef > 0]
    if len(undef):
        y0 = float(np.nanmin(table[["lo", "mean"]].to_numpy(float))) if \
            np.isfinite(table[["lo", "mean"]].to_numpy(float)).any() else 0.0
        fig.add_trace(go.Scatter(
            x=undef.index, y=[y0 - 0.08] * len(undef), mode="text", name="undefined PGR",
            text=[f"⚠ {int(n)} undefined" for n in undef.values], textfont={"color": "#e4572e"},
            hovertemplate="K=%{x}: %{text} (ceiling ≤ floor)<extra></extra>"))
    if k_selected is not None:
        sel = table[(table["k"] == k_selected) & np.isfinite(table["mean"].astype(float))]
        fig.add_vline(x=k_selected, line={"color": REFERENCE_COLOR, "width": 1, "dash": "dot"})
        fig.add_trace(go.Scatter(
            x=sel["k"], y=sel["mean"], mode="markers", name=f"K = {k_selected}",
            marker={"size": 16, "symbol": "circle-open", "line": {"width": 2},
                    "color": [method_color(m) for m in sel["method"]]},
            hoverinfo="skip", showlegend=False))
    fig.update_xaxes(dtick=1)
    return finish(fig, f"{name[0].upper()}{name[1:]} vs ensemble size K",
                  height=height, x="ensemble size K (teachers)", y=ylab)
