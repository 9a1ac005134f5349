"""Calibration of every label source on the test split: teachers, their soft vote, each student.

Top-label reliability (confidence = max p) with uniform and equal-mass bins, a confidence
histogram, and a metrics table against gold and against the weak labels (for a student the labels
it was trained toward, for the teachers the subset's soft vote), the latter showing whether a
student merely imitates its supervision.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from w2s_core.metrics.classification import (
    accuracy,
    brier,
    ece,
    ece_equal_mass,
    mce,
    nll,
    reliability_table,
)
from w2s_core.viz.colors import REFERENCE_COLOR, source_color
from w2s_core.viz.common import empty_figure, finish

STRATEGIES = {"uniform": "uniform bins", "quantile": "equal-mass bins"}


def _norm(p: np.ndarray) -> np.ndarray:
    # float32 storage can leave rows summing to 1 ± 1e-6; the metrics demand a tight sum
    p = np.clip(np.asarray(p, dtype=float), 0.0, None)
    return p / p.sum(axis=1, keepdims=True)


def reliability_frame(sources: Mapping[str, np.ndarray], y: np.ndarray, n_bins: int = 10
                      ) -> pd.DataFrame:
    """Long table: source, strategy (uniform | quantile), bin, lo, hi, confidence, accuracy,
    count — per non-empty bin, for both binning strategies."""
    parts = []
    for name, p in sources.items():
        for strategy in STRATEGIES:
            t = reliability_table(_norm(p), y, n_bins, strategy)  # type: ignore[arg-type]
            parts.append(t.assign(source=name, strategy=strategy))
    if not parts:
        return pd.DataFrame(columns=["source", "strategy", "bin", "lo", "hi", "confidence",
                                     "accuracy", "count"])
    df = pd.concat(parts, ignore_index=True)
    return df[["source", "strategy", "bin", "lo", "hi", "confidence", "accuracy", "count"]]


def reliability_figure(frame: pd.DataFrame, sources: Mapping[str, np.ndarray],
                       n_classes: int) -> go.Figure:
    """Reliability diagrams (uniform | equal-mass) over a shared confidence histogram."""
    if frame.empty:
        return empty_figure("No label sources selected")
    fig = make_subplots(rows=2, cols=2, row_heights=[0.68, 0.32], vertical_spacing=0.12,
                        specs=[[{}, {}], [{"colspan": 2}, None]],
                        subplot_titles=(STRATEGIES["uniform"], STRATEGIES["quantile"],
                                        "confidence histogram"))
    lo = 1.0 / n_classes
    y_lo = min(lo, float(frame["accuracy"].min())) - 0.05  # room below chance, no empty band
    for col, strategy in enumerate(STRATEGIES, start=1):
        fig.add_trace(go.Scatter(x=[lo, 1], y=[lo, 1], mode="lines", name="perfect",
                                 line={"color": REFERENCE_COLOR, "dash": "dot", "width": 1},
                                 showlegend=col == 1, hoverinfo="skip"), row=1, col=col)
        for name, g in frame[frame["strategy"] == strategy].groupby("source", sort=False):
            fig.add_trace(go.Scatter(
                x=g["confidence"], y=g["accuracy"], mode="lines+markers", name=name,
                legendgroup=name, showlegend=col == 1,
                line={"color": source_color(name), "width": 2},
                marker={"size": np.clip(np.sqrt(g["count"].to_numpy(float)) * 1.2, 4, 16)},
                customdata=g["count"],
                hovertemplate=(f"{name}<br>confidence %{{x:.3f}}<br>accuracy %{{y:.3f}}"
                               "<br>n=%{customdata}<extra></extra>")), row=1, col=col)
        fig.update_xaxes(range=[lo - 0.02, 1.02], title_text="confidence", row=1, col=col)
        fig.update_yaxes(range=[y_lo, 1.03], row=1, col=col)
    fig.update_yaxes(title_text="accuracy", row=1, col=1)
    edges = np.linspace(lo, 1.0, 21)
    for name, p in sources.items():
        # step outlines, not filled bars: with several sources, overlaid bars turn to mud
        counts, _ = np.histogram(np.asarray(p).max(1), bins=edges)
        fig.add_trace(go.Scatter(
            x=edges, y=np.append(counts, counts[-1]), mode="lines", line_shape="hv",
            name=name, legendgroup=name, showlegend=False,
            line={"color": source_color(name), "width": 2},
            hovertemplate=f"{name}: %{{y}} examples from confidence %{{x:.3f}}<extra></extra>"),
            row=2, col=1)
    fig.update_xaxes(range=[lo - 0.02, 1.02], title_text="confidence (max probability)",
                     row=2, col=1)
    fig.update_yaxes(title_text="examples", row=2, col=1)
    return finish(fig, "Reliability diagrams (test split, top-label confidence)", height=700,
                  legend="right")


def calibration_table(sources: Mapping[str, np.ndarray], kinds: Mapping[str, str],
                      y: np.ndarray, y_weak: np.ndarray | Mapping[str, np.ndarray] | None,
                      n_bins: int = 15, references: Mapping[str, str] | None = None
                      ) -> pd.DataFrame:
    """Per source: accuracy, ECE (uniform), ECE (equal mass), MCE, Brier, NLL against gold, and
    agreement / ECE / Brier against hard weak labels.

    ``y_weak``: one set of weak labels for every source, or source → its own weak labels (a
    student is measured against the labels it was trained toward, as its metrics.json is); a
    source missing from the mapping gets no weak-label metrics. ``references`` adds a
    ``weak_reference`` column saying which weak labels each row was measured against.
    """
    rows = []
    for name, p in sources.items():
        q = _norm(p)
        row = {"source": name, "kind": kinds.get(name, ""), "accuracy": accuracy(q, y),
               "ece": ece(q, y, n_bins), "ece_em": ece_equal_mass(q, y, n_bins),
               "mce": mce(q, y, n_bins), "brier": brier(q, y), "nll": nll(q, y)}
        if references is not None:  # next to the numbers it qualifies
            row["weak_reference"] = references.get(name, "")
        ref = y_weak.get(name) if isinstance(y_weak, Mapping) else y_weak
        if ref is not None:
            row.update(weak_agreement=accuracy(q, ref), ece_vs_weak=ece(q, ref, n_bins),
                       brier_vs_weak=brier(q, ref))
        elif y_weak is not None:
            row.update(weak_agreement=np.nan, ece_vs_weak=np.nan, brier_vs_weak=np.nan)
        rows.append(row)
    return pd.DataFrame(rows)
