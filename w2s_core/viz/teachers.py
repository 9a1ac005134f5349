"""The weak teachers: accuracy, agreement / Cohen's κ, vote entropy, where they split, and
Dawid–Skene's gold-free accuracy estimates against the truth."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from w2s_core.experiments.store import probs_of
from w2s_core.metrics.agreement import cohen_kappa_matrix, pairwise_agreement, vote_entropy
from w2s_core.viz.colors import OUTCOME_COLORS, method_color, teacher_color
from w2s_core.viz.common import diagonal, empty_figure, finish


def teacher_stack(teachers: Mapping[str, pd.DataFrame], split: str = "test",
                  names: list[str] | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Example ids, gold (N,) and soft labels (K, N, C) on one split, rows aligned by id."""
    names = [n for n in (names or list(teachers)) if n in teachers]
    if not names:
        return [], np.zeros(0, int), np.zeros((0, 0, 0))
    ref = teachers[names[0]]
    ref = ref[ref["split"] == split] if "split" in ref.columns else ref
    ids = ref["example_id"].tolist()
    stack = []
    for n in names:
        df = teachers[n].set_index("example_id").loc[ids]
        stack.append(probs_of(df))
    return ids, ref["gold"].to_numpy(int), np.stack(stack)  # (K, N, C)


def teacher_accuracy(teachers: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """teacher, split, accuracy, n — from the stored soft labels and gold."""
    rows = []
    for name, df in teachers.items():
        hit = probs_of(df).argmax(1) == df["gold"].to_numpy(int)
        for split in ("transfer", "test"):
            m = (df["split"] == split).to_numpy() if "split" in df.columns \
                else np.ones(len(df), bool)
            if m.any():
                rows.append({"teacher": name, "split": split, "accuracy": float(hit[m].mean()),
                             "n": int(m.sum())})
    return pd.DataFrame(rows, columns=["teacher", "split", "accuracy", "n"])


def teacher_accuracy_figure(acc: pd.DataFrame, subset: list[str] | None = None) -> go.Figure:
    """Test accuracy per teacher (bars; faded when outside the chosen subset), transfer accuracy
    as diamonds."""
    if acc.empty:
        return empty_figure("No teacher predictions")
    test = acc[acc["split"] == "test"]
    chosen = set(subset or test["teacher"])
    fig = go.Figure(go.Bar(
        x=test["teacher"], y=test["accuracy"], name="test",
        marker={"color": [teacher_color(t) for t in test["teacher"]],
                "opacity": [1.0 if t in chosen else 0.35 for t in test["teacher"]]},
        text=[f"{a:.3f}" for a in test["accuracy"]], textposition="inside",
        insidetextanchor="end",  # inside the bar top: clear of the transfer diamonds
        hovertemplate="%{x}: test accuracy %{y:.3f}<extra></extra>"))
    tr = acc[acc["split"] == "transfer"]
    if len(tr):
        fig.add_trace(go.Scatter(x=tr["teacher"], y=tr["accuracy"], mode="markers",
                                 name="transfer", marker={"symbol": "diamond", "size": 11,
                                                          "color": "#7f7f7f"},
                                 hovertemplate="%{x}: transfer accuracy %{y:.3f}<extra></extra>"))
    lo = max(0.0, float(acc["accuracy"].min()) - 0.1)
    fig.update_yaxes(range=[lo, min(1.0, float(acc["accuracy"].max()) + 0.06)])
    return finish(fig, "Teacher accuracy (bars: test; faded: not in the chosen subset)",
                  height=380, y="accuracy")


def agreement_matrix(probs: np.ndarray, names: list[str], kind: str = "kappa") -> pd.DataFrame:
    """K × K pairwise agreement or Cohen's κ of the teachers' hard labels."""
    preds = probs.argmax(-1)  # (K, N)
    if kind == "kappa":
        m = cohen_kappa_matrix(preds, probs.shape[-1])
    elif kind == "agreement":
        m = pairwise_agreement(preds)
    else:
        raise ValueError(f"kind must be 'kappa' or 'agreement', got {kind!r}")
    return pd.DataFrame(m, index=names, columns=names)


def agreement_heatmap(mat: pd.DataFrame, kind: str = "kappa") -> go.Figure:
    if mat.empty:
        return empty_figure("No teachers")
    label = "Cohen's κ" if kind == "kappa" else "agreement"
    z = mat.to_numpy(float)
    # κ < 0 (worse than chance) gets a diverging scale; otherwise 0..1 keeps the contrast
    diverging = kind == "kappa" and bool(np.nanmin(z) < 0)
    fig = go.Figure(go.Heatmap(
        z=z, x=list(mat.columns), y=list(mat.index),
        zmin=-1 if diverging else 0, zmax=1, zmid=0 if diverging else None,
        colorscale="RdBu" if diverging else "Blues", texttemplate="%{z:.2f}",
        colorbar={"title": {"text": label}},
        hovertemplate="%{y} vs %{x}: " + label + " %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    return finish(fig, f"Pairwise {label} between teachers (test split)", height=420,
                  legend=False)


def vote_table(ids: list[str], probs: np.ndarray) -> pd.DataFrame:
    """Per example: vote entropy (nats) and the split pattern of the K hard votes ("3–2")."""
    c = probs.shape[-1]
    preds = probs.argmax(-1)  # (K, N)
    counts = (preds[:, :, None] == np.arange(c)).sum(0)  # (N, C)
    pattern = ["–".join(str(v) for v in sorted(row[row > 0], reverse=True)) for row in counts]
    return pd.DataFrame({"example_id": ids, "entropy": vote_entropy(preds, c),
                         "votes": pattern})


def entropy_histogram(votes: pd.DataFrame) -> go.Figure:
    """How often the teachers split each way: count of examples per vote pattern."""
    if votes.empty:
        return empty_figure("No examples")
    g = votes.groupby("votes").agg(entropy=("entropy", "first"), count=("entropy", "size"))
    g = g.sort_values("entropy").reset_index()
    fig = go.Figure(go.Bar(
        x=g["votes"], y=g["count"], marker={"color": "#4e79a7"},
        customdata=g["entropy"], text=g["count"], textposition="outside",
        hovertemplate="votes %{x}: %{y} examples (entropy %{customdata:.2f} nats)<extra></extra>"))
    fig.update_xaxes(type="category")
    return finish(fig, "Vote entropy: how the teachers split (0 = unanimous)", height=360,
                  x="vote split (ordered by entropy)", y="examples", legend=False)


def split_examples(ids: list[str], gold: np.ndarray, probs: np.ndarray, names: list[str],
                   texts: Mapping[str, str], class_names: list[str],
                   students: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Examples where the teachers' hard labels disagree, most split first.

    Teacher columns hold each teacher's probability of the gold label; student columns hold
    each student method's predicted class, marked ✓ / ✗ against gold.
    """
    votes = vote_table(ids, probs)
    df = votes.assign(text=[texts.get(i, "") for i in ids],
                      gold=[class_names[g] for g in gold])
    p_gold = probs[:, np.arange(len(ids)), gold]  # (K, N)
    for name, row in zip(names, p_gold, strict=True):
        df[name] = row
    for method, sp in (students or {}).items():
        pred = sp.argmax(1)
        df[f"→ {method}"] = [("✓ " if p == g else "✗ ") + class_names[p]
                             for p, g in zip(pred, gold, strict=True)]
    df = df[df["entropy"] > 0].sort_values(["entropy", "example_id"], ascending=[False, True])
    return df[["example_id", "text", "gold", "votes", "entropy", *names,
               *[c for c in df.columns if c.startswith("→ ")]]].reset_index(drop=True)


def example_probs(teacher_p: Mapping[str, np.ndarray], student_p: Mapping[str, np.ndarray],
                  class_names: list[str]) -> pd.DataFrame:
    """Long table: source, kind (teacher | student), class, probability — for one example."""
    rows = [{"source": s, "kind": kind, "class": class_names[c], "probability": float(p[c])}
            for kind, group in (("teacher", teacher_p), ("student", student_p))
            for s, p in group.items() for c in range(len(class_names))]
    return pd.DataFrame(rows, columns=["source", "kind", "class", "probability"])


def example_figure(long: pd.DataFrame, title: str) -> go.Figure:
    """Grouped bars: for each class, every teacher's and student's probability."""
    if long.empty:
        return empty_figure("No example selected")
    fig = go.Figure()
    for (source, kind), g in long.groupby(["source", "kind"], sort=False):
        color = teacher_color(source) if kind == "teacher" else method_color(source)
        fig.add_trace(go.Bar(
            x=g["class"], y=g["probability"], name=source if kind == "teacher" else f"→ {source}",
            marker={"color": color, "pattern": {"shape": "" if kind == "teacher" else "/"}},
            hovertemplate=f"{source} ({kind})<br>%{{x}}: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1])
    return finish(fig, title, height=400, y="probability", legend="right")


def ds_frame(names: list[str], true_acc: np.ndarray, est_acc: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"teacher": names, "true_accuracy": np.asarray(true_acc, float),
                         "ds_estimate": np.asarray(est_acc, float)}).assign(
        error=lambda d: d["ds_estimate"] - d["true_accuracy"])


def ds_figure(df: pd.DataFrame) -> go.Figure:
    """Dawid–Skene's accuracy estimate (no gold) against each teacher's true accuracy."""
    if df.empty:
        return empty_figure("Dawid–Skene needs at least two teachers")
    lo = float(min(df["true_accuracy"].min(), df["ds_estimate"].min())) - 0.05
    hi = float(max(df["true_accuracy"].max(), df["ds_estimate"].max())) + 0.05
    fig = go.Figure()
    diagonal(fig, lo, hi, name="estimate = truth")
    fig.add_trace(go.Scatter(
        x=df["true_accuracy"], y=df["ds_estimate"], mode="markers+text", text=df["teacher"],
        textposition="top center", name="teachers", showlegend=False,
        marker={"size": 14, "color": [teacher_color(t) for t in df["teacher"]],
                "line": {"width": 1, "color": OUTCOME_COLORS["correct"]}},
        hovertemplate="%{text}<br>true %{x:.3f}<br>Dawid–Skene %{y:.3f}<extra></extra>"))
    fig.update_xaxes(range=[lo, hi])
    fig.update_yaxes(range=[lo, hi])
    return finish(fig, "Dawid–Skene estimated accuracy vs true accuracy (transfer split)",
                  height=420, x="true accuracy (uses gold)", y="Dawid–Skene estimate (no gold)")
