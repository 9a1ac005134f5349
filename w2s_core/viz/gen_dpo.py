"""DPO / cDPO after a generation transfer run: its child runs per ε, SLU-F1 before → after with
a paired interval over seeds, and the preference pairs with the ensemble's scores. Pure
pandas / plotly; no Streamlit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from w2s_core.metrics.intervals import summarize_runs
from w2s_core.viz.colors import REFERENCE_COLOR, method_color
from w2s_core.viz.common import empty_figure, finish
from w2s_core.viz.generation import like

SUMMARY_COLUMNS = ["eps", "seeds", "before", "after", "delta", "lo", "hi", "interval"]
# which DPO runs continue a transfer run: same student identity (seed aside) and options
_PARENT_KEYS = ("method", "subset", "k", "aux", "data_seed", "train_setting")


def eps_key(eps: object) -> tuple[int, float, str]:
    """Sort key: numeric ε ascending, then named rules ("confidence")."""
    try:
        return 0, float(str(eps)), ""
    except ValueError:
        return 1, 0.0, str(eps)


def dpo_runs(runs: pd.DataFrame, parent: pd.Series | dict, seed: object = "all"
             ) -> pd.DataFrame:
    """The DPO runs started from transfer runs like ``parent``: same method, subset, K, aux,
    data seed, training setting and every ``opt_*`` option except ``opt_dpo_eps`` — every
    seed (``seed`` "all") or one. Sorted by ε then seed."""
    if runs.empty or "kind" not in runs.columns:
        return runs.iloc[0:0]
    df = runs[runs["kind"] == "dpo"]
    opts = [c for c in df.columns if c.startswith("opt_") and c != "opt_dpo_eps"]
    df = like(df, parent, [*_PARENT_KEYS, *opts])
    if seed != "all" and "seed" in df.columns:
        df = df[df["seed"].astype(str) == str(seed)]
    if df.empty:
        return df
    df = df.assign(eps=df["opt_dpo_eps"].astype(str))
    order = df["eps"].map(eps_key)
    return df.assign(_o=order).sort_values(["_o", "seed"]).drop(columns="_o")


def dpo_summary(dpo: pd.DataFrame) -> pd.DataFrame:
    """Per ε: seeds, mean SLU-F1 before (the parent's) and after, the mean paired difference
    Δ = after − before of each DPO run against its own parent, and its interval over the
    seeds (``summarize_runs``: a t-interval over seed means; seeds only re-draw the student's
    training order, so it says nothing about new data or teachers; one seed: none)."""
    if dpo.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    d = dpo.assign(_d=pd.to_numeric(dpo["delta_slu_f1"], errors="coerce"))
    s = summarize_runs(d, ["eps"], "_d")
    means = d.groupby("eps").agg(seeds=("seed", "nunique"),
                                 before=("before_slu_f1", "mean"), after=("slu_f1", "mean"))
    out = s.merge(means.reset_index(), on="eps").rename(columns={"mean": "delta"})
    out["interval"] = np.where(out["seeds"] > 1, out["interval"], "one seed: no interval")
    out = out.assign(_o=out["eps"].map(eps_key)).sort_values("_o").drop(columns="_o")
    return out[SUMMARY_COLUMNS].reset_index(drop=True)


def dpo_figure(summary: pd.DataFrame, method: str, title: str) -> go.Figure:
    """SLU-F1 before (grey) and after DPO (the method's colour) per ε, the after marker with
    the paired interval of Δ shifted onto it (before + [lo, hi])."""
    if summary.empty:
        return empty_figure("No DPO runs for this selection")
    x = [f"ε = {e}" for e in summary["eps"]]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=summary["before"], mode="markers", name="before DPO",
                             marker={"color": REFERENCE_COLOR, "size": 11, "symbol": "circle"},
                             hovertemplate="%{x}<br>before: %{y:.3f}<extra></extra>"))
    has = summary["lo"].notna()
    err = {"type": "data", "symmetric": False, "visible": bool(has.any()),
           "array": np.where(has, summary["before"] + summary["hi"] - summary["after"], 0),
           "arrayminus": np.where(has, summary["after"] - summary["before"] - summary["lo"], 0)}
    fig.add_trace(go.Scatter(
        x=x, y=summary["after"], mode="markers", name="after DPO", error_y=err,
        marker={"color": method_color(method), "size": 11, "symbol": "diamond"},
        customdata=np.stack([summary["delta"], summary["seeds"]], axis=1),
        hovertemplate="%{x}<br>after: %{y:.3f}<br>Δ = %{customdata[0]:+.3f} over "
                      "%{customdata[1]} seed(s)<extra></extra>"))
    fig.update_yaxes(rangemode="tozero")
    return finish(fig, title, height=380, x="DPO label-noise ε", y="SLU-F1 (test)")


def pairs_view(pairs: pd.DataFrame) -> pd.DataFrame:
    """The preference pairs for reading: example_id, chosen, rejected, the ensemble's scores
    and margin, ε, then each teacher's length-normalised score of both."""
    if pairs is None or pairs.empty:
        return pd.DataFrame(columns=["example_id", "chosen", "rejected", "score_chosen",
                                     "score_rejected", "margin", "pair_eps", "eps"])
    per_teacher = [c for c in pairs.columns if c.startswith(("chosen__", "rejected__"))]
    out = pairs.assign(margin=pairs["score_chosen"] - pairs["score_rejected"])
    cols = ["example_id", "chosen", "rejected", "score_chosen", "score_rejected", "margin",
            "pair_eps", "eps", *sorted(per_teacher, key=lambda c: (c.split("__")[1], c))]
    return out[[c for c in cols if c in out.columns]].reset_index(drop=True)
