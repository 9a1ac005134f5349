"""Runs side by side: their metrics, a bar chart of the headline ones, and a config diff."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from w2s_core.experiments.runspec import ID_COLUMNS, OPTION_COLUMNS
from w2s_core.viz.colors import method_color
from w2s_core.viz.common import empty_figure, finish

# the headline metrics of both tasks (a run has only its own task's: the others are absent)
HEADLINE = ["accuracy", "slu_f1", "pgr_mean", "pgr_best", "pgr_vote", "pgr_joint",
            "json_validity", "span_f1", "delta_slu_f1", "ece", "brier", "auroc",
            "weak_agreement"]
# identity, not metrics: a data seed or kl_scale is numeric but belongs in the config diff
ID_FIELDS = {*ID_COLUMNS, *(f"opt_{o}" for o in OPTION_COLUMNS), "label"}
_PATTERNS = ["", "/", "x", ".", "\\", "+", "-", "|"]


def metrics_side_by_side(rows: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Metrics as rows, one column per run (numeric metrics only, run-identity fields dropped)."""
    if rows.empty:
        return pd.DataFrame()
    num = rows.drop(columns=[c for c in rows.columns if c in ID_FIELDS], errors="ignore")
    num = num.apply(pd.to_numeric, errors="coerce")
    num = num.loc[:, num.notna().any()]
    out = num.T
    out.columns = labels
    first = [m for m in HEADLINE if m in out.index]
    out = out.loc[first + [m for m in out.index if m not in first]]
    out.index.name = "metric"
    return out.reset_index()


def compare_figure(side: pd.DataFrame, methods: list[str]) -> go.Figure:
    """Grouped bars of the headline metrics, one bar per run (method colour; the pattern tells
    apart two runs of one method)."""
    if side.empty:
        return empty_figure("Pick at least one run")
    head = side[side["metric"].isin(HEADLINE)]
    fig = go.Figure()
    seen: dict[str, int] = {}
    for label, method in zip(side.columns[1:], methods, strict=True):
        i = seen.get(method, 0)
        seen[method] = i + 1
        fig.add_trace(go.Bar(
            x=head["metric"], y=head[label], name=label,
            marker={"color": method_color(method),
                    "pattern": {"shape": _PATTERNS[i % len(_PATTERNS)]}},
            hovertemplate=f"{label}<br>%{{x}}: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(barmode="group", legend={"orientation": "v", "y": -0.25, "x": 0,
                                               "xanchor": "left", "yanchor": "top"})
    return finish(fig, "Headline metrics", height=460, y="value")


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config → {"training.lr": 1e-3, ...}; lists become comma-joined strings."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = ", ".join(str(x) for x in v)
        else:
            out[key] = v
    return out


def config_diff(configs: Mapping[str, Mapping[str, Any]], only_diff: bool = False
                ) -> pd.DataFrame:
    """Config keys as rows, one column per run; ``only_diff`` keeps keys whose values differ."""
    flat = {label: flatten(c) for label, c in configs.items()}
    keys = sorted(set().union(*[f.keys() for f in flat.values()])) if flat else []
    df = pd.DataFrame({label: [f.get(k) for k in keys] for label, f in flat.items()},
                      index=pd.Index(keys, name="key"))
    if only_diff and len(df.columns) > 1:
        # repr, not astype(str): pandas ≥ 3 turns None into a missing value that nunique skips
        as_text = df.map(repr)
        df = df[as_text.nunique(axis=1, dropna=False) > 1]
    # one dtype per column so the table renders (and exports) the same way everywhere
    return df.map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v))
                  else str(v)).reset_index()


def contrast_table(con: pd.DataFrame) -> pd.DataFrame:
    """``tables.setting_contrasts`` as shown: one row per (contrast, method, aux, K)."""
    if con.empty:
        return pd.DataFrame()
    out = con.assign(contrast=con["label"], aux=con["aux"].map({True: "yes", False: "no"}),
                     K=con["k"], difference=con["mean"])
    return out[["contrast", "method", "aux", "K", "difference", "lo", "hi", "pairs", "n_units",
                "unit"]].reset_index(drop=True)


def contrast_figure(table: pd.DataFrame, metric: str) -> go.Figure:
    """A forest plot of one-option contrasts: each row's paired mean difference a − b with its
    interval (none when one unit), and a line at 0 (no effect)."""
    if table.empty:
        return empty_figure("No two option settings differ in exactly one option")
    names = [f"{r.contrast} · {r.method} · K={r.K}" + (" · aux" if r.aux == "yes" else "")
             for r in table.itertuples()]
    mean = table["difference"].astype(float)
    lo = pd.to_numeric(table["lo"], errors="coerce")
    hi = pd.to_numeric(table["hi"], errors="coerce")
    fig = go.Figure(go.Scatter(
        x=mean, y=names, mode="markers",
        marker={"color": [method_color(m) for m in table["method"]], "size": 10},
        error_x={"type": "data", "symmetric": False, "array": (hi - mean).fillna(0),
                 "arrayminus": (mean - lo).fillna(0)},
        customdata=np.stack([lo, hi, table["pairs"]], axis=1),
        hovertemplate="%{y}<br>a − b = %{x:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}]"
                      "<br>%{customdata[2]} pairs<extra></extra>"))
    fig.add_vline(x=0, line={"color": "grey", "dash": "dot"})
    fig.update_yaxes(autorange="reversed")
    return finish(fig, f"One option changed, all else equal: {metric} difference a − b",
                  height=max(260, 60 + 36 * len(table)), x=f"{metric} difference",
                  legend=False)
