"""Recovery vs ensemble size: PGR or accuracy against K per method, mean with a bootstrap CI.

Each point aggregates every transfer run with that (method, ± aux, K) in view: all teacher
subsets of size K and all seeds (or one seed). An undefined PGR (ceiling ≤ floor, stored as
null) is not averaged in but counted, and the count is drawn on the chart and kept in the table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from w2s_core.metrics.stats import summarize
from w2s_core.viz.colors import REFERENCE_COLOR, method_color, order_methods, rgba
from w2s_core.viz.common import empty_figure, finish
from w2s_core.viz.runs import ceiling_runs, transfer_runs

TABLE_COLUMNS = ["method", "aux", "k", "mean", "std", "lo", "hi", "n", "n_undefined", "floor",
                 "metric"]


def value_column(metric: str, floor: str) -> str:
    if metric == "pgr":
        return f"pgr_{floor}"
    if metric == "accuracy":
        return "accuracy"
    raise ValueError(f"metric must be 'pgr' or 'accuracy', got {metric!r}")


def recovery_table(view: pd.DataFrame, metric: str = "pgr", floor: str = "mean",
                   n_boot: int = 1000) -> pd.DataFrame:
    """One row per (method, aux, K): mean, std, 95 % bootstrap CI, n defined, n undefined.

    ``view`` is a run index already filtered to the runs in view (aux, seed); ceilings are
    ignored. ``floor`` is the PGR floor convention (mean | best | vote) and also picks which
    weak floor the ``floor`` column reports.
    """
    df = transfer_runs(view)
    col = value_column(metric, floor)
    if df.empty or col not in df.columns:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    df = df.assign(aux=df["aux"].fillna(False).astype(bool),
                   _v=pd.to_numeric(df[col], errors="coerce"))
    out = summarize(df, ["method", "aux", "k"], "_v", n_boot=n_boot)
    fcol = f"floor_{floor}"
    if fcol in df.columns:
        floors = df.groupby(["method", "aux", "k"])[fcol].mean().rename("floor").reset_index()
        out = out.merge(floors, on=["method", "aux", "k"], how="left")
    else:
        out["floor"] = np.nan
    out["metric"] = col
    order = {m: i for i, m in enumerate(order_methods(out["method"].unique().tolist()))}
    out = out.assign(_o=out["method"].map(order)).sort_values(["_o", "aux", "k"])
    return out.drop(columns="_o").reset_index(drop=True)[TABLE_COLUMNS]


def ceiling_level(runs: pd.DataFrame, seed: object = "all") -> float | None:
    """Mean strong-ceiling accuracy over the seeds in view."""
    df = ceiling_runs(runs)
    if seed != "all" and not df.empty:
        df = df[df["seed"] == seed]
    acc = pd.to_numeric(df.get("accuracy", pd.Series(dtype=float)), errors="coerce").dropna()
    return float(acc.mean()) if len(acc) else None


def _series_name(method: str, aux: bool) -> str:
    return f"{method} + aux" if aux else method


def recovery_figure(table: pd.DataFrame, *, metric: str = "pgr", floor: str = "mean",
                    k_selected: int | None = None, method_selected: str | None = None,
                    ceiling: float | None = None, height: int = 480) -> go.Figure:
    """Lines of the mean per method (dashed: with aux) with a translucent CI band; reference
    lines for the weak floor and the strong ceiling; the selected K and method highlighted."""
    if table.empty:
        return empty_figure("No transfer runs in view")
    fig = go.Figure()
    for (method, aux), g in table.groupby(["method", "aux"], sort=False):
        g = g.sort_values("k")
        color = method_color(method)
        name = _series_name(method, bool(aux))
        ok = g[np.isfinite(g["mean"].astype(float))]
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
            customdata=np.stack([g["lo"], g["hi"], g["n"], g["n_undefined"]], axis=1),
            hovertemplate=(f"<b>{name}</b><br>K=%{{x}}<br>mean %{{y:.3f}}"
                           "<br>95% CI [%{customdata[0]:.3f}, %{customdata[1]:.3f}]"
                           "<br>n=%{customdata[2]}, undefined=%{customdata[3]}<extra></extra>")))
    ylab = f"PGR (floor: {floor})" if metric == "pgr" else "test accuracy"
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
    return finish(fig, f"{'PGR' if metric == 'pgr' else 'Accuracy'} vs ensemble size K",
                  height=height, x="ensemble size K (teachers)", y=ylab)
