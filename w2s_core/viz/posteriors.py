"""The Bayesian (EDL) student's Dirichlet: per-example densities and dataset-level read-outs.

A run's predictions carry α in ``alpha_0..alpha_{C-1}`` (STORAGE.md). Read-outs follow
METHOD.md §2: S = Σα, vacuity u = C / S, expected probability α / S.

Generation runs have no class Dirichlet; their bayes runs store a token Dirichlet's read-outs
per target token in targets.parquet (``evidence`` = Σ(α − 1), ``vacuity`` = C / S, ``correct``
= the student's argmax is the target token), summarised per method here.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from w2s_core.experiments.store import probs_of
from w2s_core.metrics.dirichlet import beta_density, dirichlet_density_simplex, dirichlet_readouts
from w2s_core.viz.colors import OUTCOME_COLORS
from w2s_core.viz.common import diagonal, empty_figure, finish


def has_alpha(preds: pd.DataFrame) -> bool:
    return any(c.startswith("alpha_") for c in preds.columns)


def edl_frame(edl: pd.DataFrame, naive: pd.DataFrame | None, texts: Mapping[str, str],
              class_names: list[str]) -> pd.DataFrame:
    """One row per test example: gold, EDL prediction, S, vacuity, EDL confidence (max α/S)
    and — when a naive student's run is given — its softmax confidence, aligned by id."""
    alpha = probs_of(edl, "alpha")  # (N, C)
    r = dirichlet_readouts(alpha)
    gold = edl["gold"].to_numpy(int)
    pred = alpha.argmax(1)
    ids = edl["example_id"].tolist()
    df = pd.DataFrame({
        "example_id": ids, "text": [texts.get(i, "") for i in ids],
        "gold": [class_names[g] for g in gold], "pred": [class_names[p] for p in pred],
        "correct": pred == gold, "S": r["S"], "vacuity": r["vacuity"],
        "conf_edl": r["prob"].max(1)})
    if naive is not None and len(naive):
        npb = probs_of(naive.set_index("example_id").loc[ids].reset_index())
        df["conf_naive"] = npb.max(1)
        df["naive_correct"] = npb.argmax(1) == gold
    return df


def alpha_of(edl: pd.DataFrame, example_id: str) -> np.ndarray:
    row = edl[edl["example_id"] == example_id]
    return probs_of(row, "alpha")[0] if len(row) else np.zeros(0)


def density_figure(alpha: np.ndarray, class_names: list[str], *, title: str,
                   markers: Mapping[str, tuple[np.ndarray, str]] | None = None
                   ) -> tuple[go.Figure, pd.DataFrame]:
    """Beta density for 2 classes, ternary simplex density for 3, top-class bars otherwise.

    ``markers`` maps a label (a teacher, the naive student) to its probability vector and
    colour, drawn on top so the posterior can be read against the teachers' opinions.
    Returns the figure and the data behind it.
    """
    a = np.asarray(alpha, dtype=float)
    markers = markers or {}
    if a.size == 0:
        return empty_figure("No Dirichlet for this example"), pd.DataFrame()
    if a.size == 2:
        grid = np.linspace(0.0005, 0.9995, 400)
        dens = beta_density(a[1], a[0], grid)  # P(class 1) ~ Beta(α₁, α₀)
        top = float(np.nanmax(dens)) if np.isfinite(dens).any() else 1.0
        fig = go.Figure(go.Scatter(x=grid, y=dens, mode="lines", fill="tozeroy",
                                   name="student Dirichlet (Beta)",
                                   line={"color": "#d62728", "width": 3}))
        for label, (p, color) in markers.items():
            fig.add_trace(go.Scatter(x=[p[1], p[1]], y=[0, top], mode="lines", name=label,
                                     line={"color": color, "dash": "dash", "width": 2}))
        fig.update_xaxes(range=[0, 1])
        finish(fig, title, height=400, x=f"P({class_names[1]})", y="density")
        return fig, pd.DataFrame({f"p_{class_names[1]}": grid, "density": dens})
    if a.size == 3:
        pts, dens = dirichlet_density_simplex(a, n_grid=45)
        cap = float(np.nanpercentile(dens, 99)) or 1.0  # a peaked α would wash out the scale
        fig = go.Figure(go.Scatterternary(
            a=pts[:, 0], b=pts[:, 1], c=pts[:, 2], mode="markers", name="density",
            marker={"color": np.minimum(dens, cap), "colorscale": "Viridis", "size": 6,
                    "symbol": "triangle-up", "colorbar": {"title": {"text": "density"}}},
            hovertemplate="p=(%{a:.2f}, %{b:.2f}, %{c:.2f})<extra></extra>", showlegend=False))
        for label, (p, color) in markers.items():
            fig.add_trace(go.Scatterternary(
                a=[p[0]], b=[p[1]], c=[p[2]], mode="markers", name=label,
                marker={"size": 14, "color": color, "symbol": "diamond",
                        "line": {"width": 1.5, "color": "white"}}))
        fig.update_layout(ternary={"aaxis": {"title": {"text": class_names[0]}},
                                   "baxis": {"title": {"text": class_names[1]}},
                                   "caxis": {"title": {"text": class_names[2]}}})
        finish(fig, title, height=480)
        cols = {f"p_{n}": pts[:, i] for i, n in enumerate(class_names)}
        return fig, pd.DataFrame({**cols, "density": dens})
    s = a.sum()
    mean = a / s
    std = np.sqrt(mean * (1 - mean) / (s + 1))  # marginal Beta(α_c, S − α_c) std
    top_idx = np.argsort(-mean)[:6]
    names = [class_names[i] for i in top_idx]
    fig = go.Figure(go.Bar(x=names, y=mean[top_idx], name="E[p] under the Dirichlet",
                           error_y={"type": "data", "array": std[top_idx]},
                           marker={"color": "#d62728"}))
    finish(fig, title, height=400, y="probability")
    return fig, pd.DataFrame({"class": names, "mean": mean[top_idx], "std": std[top_idx],
                              "alpha": a[top_idx]})


def evidence_figure(frame: pd.DataFrame) -> go.Figure:
    """Distributions of total evidence S (log scale) and vacuity u, correct vs wrong."""
    if frame.empty:
        return empty_figure("No Bayesian run in view")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("total evidence S (log₁₀)",
                                                         "vacuity u = C / S"))
    for outcome, mask in (("correct", frame["correct"]), ("wrong", ~frame["correct"])):
        sub = frame[mask.to_numpy(bool)]
        color = OUTCOME_COLORS[outcome]
        fig.add_trace(go.Histogram(x=np.log10(sub["S"]), name=f"{outcome} ({len(sub)})",
                                   legendgroup=outcome, marker={"color": color}, opacity=0.65,
                                   histnorm="percent", nbinsx=30), row=1, col=1)
        fig.add_trace(go.Histogram(x=sub["vacuity"], name=outcome, legendgroup=outcome,
                                   marker={"color": color}, opacity=0.65, histnorm="percent",
                                   nbinsx=30, showlegend=False), row=1, col=2)
    fig.update_layout(barmode="overlay")
    fig.update_yaxes(title_text="% of group", row=1, col=1)
    return finish(fig, "Evidence and vacuity, split by correct / wrong", height=400,
                  legend="bottom")


def vacuity_ranking(frame: pd.DataFrame, top: int = 25) -> pd.DataFrame:
    cols = ["example_id", "text", "gold", "pred", "correct", "vacuity", "S", "conf_edl"]
    cols += [c for c in ("conf_naive",) if c in frame.columns]
    return frame.sort_values("vacuity", ascending=False).head(top)[cols].reset_index(drop=True)


def confidence_figure(frame: pd.DataFrame) -> go.Figure:
    """EDL confidence (max α/S) against the naive student's max softmax, per example."""
    if frame.empty or "conf_naive" not in frame.columns:
        return empty_figure("No naive student run to compare with")
    fig = go.Figure()
    lo = float(min(frame["conf_naive"].min(), frame["conf_edl"].min()))
    diagonal(fig, lo, 1.0, name="equal confidence")
    for outcome, mask in (("correct", frame["correct"]), ("wrong", ~frame["correct"])):
        sub = frame[mask.to_numpy(bool)]
        fig.add_trace(go.Scatter(
            x=sub["conf_naive"], y=sub["conf_edl"], mode="markers",
            name=f"EDL {outcome}", text=sub["example_id"],
            marker={"color": OUTCOME_COLORS[outcome], "size": 6, "opacity": 0.7},
            hovertemplate="%{text}<br>naive %{x:.3f}<br>EDL %{y:.3f}<extra></extra>"))
    return finish(fig, "EDL confidence vs naive softmax confidence", height=420,
                  x="naive student: max softmax", y="Bayesian student: max α / S")


# ---------------------------------------------------------------- generation: token Dirichlet
TOKEN_SUMMARY = ["method", "label", "targets", "tokens", "mean_evidence", "mean_vacuity",
                 "vacuity_correct", "vacuity_wrong", "token_accuracy"]


def _flat(col: pd.Series) -> np.ndarray:
    parts = [np.asarray(v, float) for v in col if v is not None and len(v)]
    return np.concatenate(parts) if parts else np.zeros(0)


def _token_row(method: str, label: str, df: pd.DataFrame) -> dict[str, object] | None:
    ok = df[df["evidence"].map(lambda v: v is not None and len(v) > 0)]
    if ok.empty:
        return None
    ev, vac = _flat(ok["evidence"]), _flat(ok["vacuity"])  # (T,), (T,)
    hit = _flat(ok["correct"]).astype(bool) if "correct" in ok.columns else np.zeros(0, bool)
    hit = hit if hit.shape == vac.shape else np.zeros(0, bool)
    nan = float("nan")
    return {"method": method, "label": label, "targets": len(ok), "tokens": len(vac),
            "mean_evidence": float(ev.mean()), "mean_vacuity": float(vac.mean()),
            "vacuity_correct": float(vac[hit].mean()) if hit.any() else nan,
            "vacuity_wrong": float(vac[~hit].mean()) if hit.size and (~hit).any() else nan,
            "token_accuracy": float(hit.mean()) if hit.size else nan}


def token_evidence_summary(targets: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per method (its run's targets.parquet) and target label (a teacher, "joint", or "all"
    pooled): targets and tokens with Dirichlet read-outs, mean evidence Σ(α − 1), mean vacuity
    C / S, mean vacuity on tokens the student gets right / wrong, and its token accuracy.
    Runs without read-outs (non-bayes methods store []) give no rows."""
    rows = []
    for method, df in targets.items():
        if df is None or df.empty or "evidence" not in df.columns:
            continue
        labels = sorted(df["label"].astype(str).unique()) if "label" in df.columns else []
        if len(labels) > 1:  # one row per target label, then all pooled
            rows += [_token_row(method, lab, df[df["label"].astype(str) == lab])
                     for lab in labels]
        rows.append(_token_row(method, "all", df))
    return pd.DataFrame([r for r in rows if r is not None], columns=TOKEN_SUMMARY)


def token_vacuity_figure(summary: pd.DataFrame) -> go.Figure:
    """Mean token vacuity per method on the tokens the student gets right vs wrong (all
    targets pooled)."""
    pooled = summary[summary["label"] == "all"] if len(summary) else summary
    if pooled.empty:
        return empty_figure("No token Dirichlet read-outs stored")
    fig = go.Figure()
    for outcome in ("correct", "wrong"):
        fig.add_trace(go.Bar(
            x=pooled["method"], y=pooled[f"vacuity_{outcome}"], name=f"tokens {outcome}",
            marker={"color": OUTCOME_COLORS[outcome]},
            hovertemplate=f"%{{x}}: mean vacuity %{{y:.4f}} on {outcome} tokens<extra></extra>"))
    fig.update_layout(barmode="group")
    return finish(fig, "Token Dirichlet: mean vacuity C / S on right vs wrong target tokens",
                  height=380, y="mean vacuity")
