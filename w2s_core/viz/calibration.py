"""Calibration of every label source on the test split: teachers, their soft vote, each student.

Top-label reliability (confidence = max p) with uniform and equal-mass bins, a confidence
histogram, and a metrics table against gold and against the weak labels (for a student the labels
it was trained toward, for the teachers the subset's soft vote), the latter showing whether a
student merely imitates its supervision.

Generation runs are calibrated per token instead: a run's predictions.parquet holds, for the
first 64 test utterances, the student's confidence in each gold target token under teacher
forcing (``tok_conf``, its max token probability) and whether its argmax was that token
(``tok_correct``); the token reliability diagram and token ECE below read those.
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


# ---------------------------------------------------------------- generation: token calibration
TOKEN_COLUMNS = ["source", "bin", "lo", "hi", "confidence", "accuracy", "count"]


def flat_tokens(preds: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Every scored token of a generation run's predictions: conf (T,) float and correct (T,)
    bool, concatenated over the utterances that carry them (later rows hold [])."""
    if preds.empty or "tok_conf" not in preds.columns:
        return np.zeros(0), np.zeros(0, bool)
    conf = [np.asarray(c, float) for c in preds["tok_conf"] if c is not None and len(c)]
    hit = [np.asarray(h, bool) for h in preds["tok_correct"] if h is not None and len(h)]
    if not conf:
        return np.zeros(0), np.zeros(0, bool)
    return np.concatenate(conf), np.concatenate(hit)


def token_reliability(conf: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Equal-width reliability bins of token confidence: per non-empty bin b of [0, 1] (bins
    (lo, hi], the first also holding 0, as sklearn's ``calibration_curve`` bins), its mean
    confidence, accuracy = mean 1[argmax = gold token], and count |b|."""
    c = np.asarray(conf, float)  # (T,)
    h = np.asarray(correct, bool)  # (T,)
    if c.shape != h.shape:
        raise ValueError(f"conf {c.shape} and correct {h.shape} differ")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], c)  # (T,) bin of each token
    count = np.bincount(ids, minlength=n_bins)
    s_conf = np.bincount(ids, weights=c, minlength=n_bins)
    s_hit = np.bincount(ids, weights=h.astype(float), minlength=n_bins)
    keep = count > 0
    return pd.DataFrame({"bin": np.arange(n_bins)[keep], "lo": edges[:-1][keep],
                         "hi": edges[1:][keep], "confidence": s_conf[keep] / count[keep],
                         "accuracy": s_hit[keep] / count[keep], "count": count[keep]})


def token_ece(conf: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> float:
    """ECE = Σ_b (|b| / T) · |accuracy(b) − confidence(b)| over the equal-width bins of
    ``token_reliability``; NaN for no tokens."""
    t = token_reliability(conf, correct, n_bins)
    n = t["count"].sum()
    return float((t["count"] / n * (t["accuracy"] - t["confidence"]).abs()).sum()) if n \
        else float("nan")


def token_reliability_frame(sources: Mapping[str, tuple[np.ndarray, np.ndarray]],
                            n_bins: int = 10) -> pd.DataFrame:
    """Long table (``TOKEN_COLUMNS``): ``token_reliability`` per source."""
    parts = [token_reliability(c, h, n_bins).assign(source=name)
             for name, (c, h) in sources.items() if len(c)]
    return pd.concat(parts, ignore_index=True)[TOKEN_COLUMNS] if parts else \
        pd.DataFrame(columns=TOKEN_COLUMNS)


def token_calibration_table(sources: Mapping[str, tuple[np.ndarray, np.ndarray]],
                            n_bins: int = 10) -> pd.DataFrame:
    """Per source: tokens, token accuracy, mean confidence, token ECE."""
    rows = [{"source": name, "tokens": len(c),
             "token_accuracy": float(np.mean(h)) if len(h) else np.nan,
             "mean_confidence": float(np.mean(c)) if len(c) else np.nan,
             "ece": token_ece(c, h, n_bins)} for name, (c, h) in sources.items()]
    return pd.DataFrame(rows, columns=["source", "tokens", "token_accuracy", "mean_confidence",
                                       "ece"])


def token_reliability_figure(frame: pd.DataFrame) -> go.Figure:
    """Token reliability (top) over the tokens per bin (bottom), one colour per source."""
    if frame.empty:
        return empty_figure("No token calibration stored for these runs")
    fig = make_subplots(rows=2, cols=1, row_heights=[0.7, 0.3], vertical_spacing=0.1,
                        shared_xaxes=True)
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect",
                             line={"color": REFERENCE_COLOR, "dash": "dot", "width": 1},
                             hoverinfo="skip"), row=1, col=1)
    for name, g in frame.groupby("source", sort=False):
        color = source_color(str(name))
        fig.add_trace(go.Scatter(
            x=g["confidence"], y=g["accuracy"], mode="lines+markers", name=str(name),
            legendgroup=str(name), line={"color": color, "width": 2},
            marker={"size": np.clip(np.sqrt(g["count"].to_numpy(float)), 4, 16)},
            customdata=g["count"],
            hovertemplate=(f"{name}<br>confidence %{{x:.3f}}<br>accuracy %{{y:.3f}}"
                           "<br>tokens %{customdata}<extra></extra>")), row=1, col=1)
        # step outlines over every bin (empty ones too), as the classification histogram
        n_bins = int(round(1.0 / float((g["hi"] - g["lo"]).iloc[0])))
        counts = np.zeros(n_bins)
        counts[g["bin"].to_numpy(int)] = g["count"].to_numpy(float)
        fig.add_trace(go.Scatter(
            x=np.linspace(0.0, 1.0, n_bins + 1), y=np.append(counts, counts[-1]), mode="lines",
            line_shape="hv", name=str(name), legendgroup=str(name), showlegend=False,
            line={"color": color, "width": 2},
            hovertemplate=f"{name}: %{{y}} tokens from confidence %{{x:.2f}}<extra></extra>"),
            row=2, col=1)
    fig.update_xaxes(range=[-0.02, 1.02])
    fig.update_xaxes(title_text="token confidence (max probability, teacher-forced on gold)",
                     row=2, col=1)
    fig.update_yaxes(range=[-0.03, 1.03], title_text="token accuracy", row=1, col=1)
    fig.update_yaxes(title_text="tokens", row=2, col=1)
    return finish(fig, "Token reliability (test, first utterances with token calibration)",
                  height=620, legend="right")
