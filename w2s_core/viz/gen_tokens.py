"""What a generation run trained toward, token by token (``targets.parquet``): the bridged
soft labels over the student's tokens with the top of the target distribution, the bridge
target mode's sibling runs, and the token Dirichlet read-outs of Bayesian runs. Pure
pandas / plotly / HTML; no Streamlit."""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from w2s_core.viz.colors import method_color, teacher_color
from w2s_core.viz.common import empty_figure, finish
from w2s_core.viz.generation import COLORSCALE, like, prob_color

MODES = ("detached", "frozen", "live")  # docs/STORAGE.md: how the bridged q was made
TOKEN_COLUMNS = ["label", "mode", "weight", "pos", "token", "word_id", "q", "topk",
                 "conf", "correct", "evidence", "vacuity"]
_IDENTITY = ("method", "subset", "k", "aux", "seed", "data_seed")


# ---------------------------------------------------------------- bridge modes
def mode_runs(runs: pd.DataFrame, row: pd.Series | dict) -> dict[str, str]:
    """Bridge target mode → run id of the transfer runs that differ from ``row`` only in
    ``opt_target_mode`` (same method, subset, K, aux, seed, data seed), in MODES order.

    ``row``'s own run stands for its mode; for another mode the run agreeing with ``row`` on
    the most other ``opt_*`` options wins (an ablation of something else is a worse match).
    """
    if runs.empty or "opt_target_mode" not in runs.columns:
        return {}
    df = runs[runs["kind"] == "transfer"] if "kind" in runs.columns else runs
    df = like(df, row, _IDENTITY)
    opts = [c for c in df.columns if c.startswith("opt_") and c != "opt_target_mode"]
    same = sum((df.index.isin(like(df, row, [c]).index) for c in opts),
               np.zeros(len(df), dtype=int))
    out: dict[str, str] = {}
    own = str(row.get("opt_target_mode"))
    for mode, g in df.assign(_same=same).groupby(df["opt_target_mode"].astype(str)):
        if mode == own:
            out[mode] = str(row["run_id"])
        else:
            out[mode] = str(g.sort_values("_same", ascending=False, kind="stable")
                            .iloc[0]["run_id"])
    order = {m: i for i, m in enumerate(MODES)}
    return dict(sorted(out.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


# ---------------------------------------------------------------- the token frame
def _list(v: object) -> list:
    return [] if v is None else list(v)  # parquet lists arrive as numpy arrays


def show_token(tok: str) -> str:
    """A token as it is drawn: newlines and tabs made visible, spaces kept (``white-space:
    pre``), an empty token as ∅."""
    return str(tok).replace("\n", "⏎").replace("\t", "⇥") or "∅"


def topk_text(tokens: Sequence[str], probs: Sequence[float]) -> str:
    """'tok 0.80 · tok 0.15 · …' — the top of the target distribution at one position."""
    return " · ".join(f"{show_token(t)!r} {float(p):.3f}" for t, p in
                      zip(tokens, probs, strict=False))


def token_frame(targets: pd.DataFrame, example_id: str) -> pd.DataFrame:
    """One row per (label, student token) of one utterance's targets, in the stored label
    order: label, mode, weight (λ), pos, token, word_id, q (bridged probability of the label
    token), topk (text), conf / correct (the student on this target), evidence / vacuity
    (NaN for non-Bayesian runs)."""
    rows = targets[targets["example_id"] == example_id]
    out = []
    for _, r in rows.iterrows():
        toks, q = _list(r["tokens"]), _list(r["q"])
        tk, tp = _list(r.get("topk_tokens")), _list(r.get("topk_probs"))
        ev, va = _list(r.get("evidence")), _list(r.get("vacuity"))
        conf, corr, wid = _list(r.get("conf")), _list(r.get("correct")), _list(r.get("word_ids"))
        for i, t in enumerate(toks):
            out.append((str(r["label"]), str(r.get("mode", "")), float(r.get("weight", 1.0)),
                        i, str(t), int(wid[i]) if i < len(wid) else -1,
                        float(q[i]) if i < len(q) else np.nan,
                        topk_text(_list(tk[i]), _list(tp[i])) if i < len(tk) else "",
                        float(conf[i]) if i < len(conf) else np.nan,
                        bool(corr[i]) if i < len(corr) else None,
                        float(ev[i]) if i < len(ev) else np.nan,
                        float(va[i]) if i < len(va) else np.nan))
    return pd.DataFrame(out, columns=TOKEN_COLUMNS)


def label_scores(targets: pd.DataFrame, example_id: str) -> pd.DataFrame:
    """label, text, weight and each subset teacher's logp / norm of the label's text (NaN when
    it was not in the candidate pool) for one utterance."""
    rows = targets[targets["example_id"] == example_id]
    keep = ["label", "text", "weight", *(c for c in rows.columns
                                         if c.startswith(("logp__", "norm__")))]
    return rows[[c for c in keep if c in rows.columns]].reset_index(drop=True)


# ---------------------------------------------------------------- drawing
def _token_span(token: str, p: float, tip: str) -> str:
    return (f'<span class="w2s-tok" style="background-color:{prob_color(p)}" '
            f'title="{html.escape(tip, quote=True)}">{html.escape(show_token(token))}</span>')


def token_spans(tokens: pd.DataFrame) -> str:
    """One label's tokens (``token_frame`` rows) as HTML spans coloured by q; hover: q and the
    top of the target distribution."""
    return "".join(
        _token_span(tok, q, f"q = {q:.3f} · target top-{len(topk.split(' · '))}: {topk}")
        for tok, q, topk in zip(tokens["token"], tokens["q"], tokens["topk"], strict=True))


def dirichlet_spans(tokens: pd.DataFrame) -> str:
    """A Bayesian label's token Dirichlet along its target: each token coloured by 1 − vacuity
    (C / S: 1 = no evidence at all, so a red token is one the student knew nothing about);
    hover: total evidence Σ(α − 1) and vacuity. Empty for tokens without read-outs."""
    return "".join(
        _token_span(tok, 1.0 - float(v), f"evidence Σ(α − 1) = {e:.4g} · vacuity C/S = {v:.3f}")
        for tok, e, v in zip(tokens["token"], tokens["evidence"], tokens["vacuity"],
                             strict=True) if not (pd.isna(e) or pd.isna(v)))


def _esc(text: str) -> str:
    """Plotly hover labels read <, > and & as markup ("<unk>" would vanish); quotes are fine."""
    return html.escape(str(text), quote=False)


def label_name(label: str, weight: float) -> str:
    return f"{label} (λ = {weight:.2f})"


def label_strips(tokens: pd.DataFrame) -> str:
    """Every label of a ``token_frame``: its name, λ and bridge mode, then its token strip;
    for a Bayesian run, a second strip of the token Dirichlet (``dirichlet_spans``)."""
    out = []
    for lab, g in tokens.groupby("label", sort=False):
        head = (f"<b>{html.escape(label_name(str(lab), float(g['weight'].iloc[0])))}</b> · "
                f"mode {html.escape(str(g['mode'].iloc[0]))}<br>{token_spans(g)}")
        ev = dirichlet_spans(g)
        out.append(head + (f"<br><small>Dirichlet 1 − vacuity:</small> {ev}" if ev else ""))
    return "<br>".join(out)


def q_heatmap(tokens: pd.DataFrame, title: str) -> go.Figure:
    """A strip per label: the student's tokens of its target left to right, colour = q (the
    same 0–1 scale as the word spans), the token written in the cell, hover = top-k of the
    target distribution."""
    if tokens.empty:
        return empty_figure("No stored targets for this utterance")
    labels = list(dict.fromkeys(tokens["label"]))
    width = int(tokens["pos"].max()) + 1
    z = np.full((len(labels), width), np.nan)
    text = np.full((len(labels), width), "", dtype=object)
    hover = np.full((len(labels), width), "", dtype=object)
    row_of = {lab: i for i, lab in enumerate(labels)}
    weight = tokens.groupby("label", sort=False)["weight"].first()
    names = [label_name(lab, float(weight[lab])) for lab in labels]
    for lab, j, tok, q, topk in zip(tokens["label"], tokens["pos"], tokens["token"],
                                    tokens["q"], tokens["topk"], strict=True):
        i, shown = row_of[lab], show_token(tok)
        z[i, j], text[i, j] = q, shown
        hover[i, j] = (f"{_esc(names[i])} · token {j}: {_esc(repr(shown))}<br>q = {q:.3f}"
                       f"<br>target top-k: {_esc(topk)}")
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(width)), y=names, text=text, hovertext=hover, hoverinfo="text",
        texttemplate="%{text}" if width <= 40 else None, textfont={"size": 10},
        colorscale=COLORSCALE, zmin=0.0, zmax=1.0, xgap=1, ygap=3,
        colorbar={"title": {"text": "q"}, "thickness": 12}))
    fig.update_yaxes(autorange="reversed")
    return finish(fig, title, height=140 + 60 * len(labels), x="student token", legend=False)


def _label_color(label: str) -> str:
    return method_color("joint") if label == "joint" else teacher_color(label)


def evidence_figure(tokens: pd.DataFrame, title: str) -> go.Figure:
    """Bayesian runs: total evidence Σ(α − 1) (log scale) and vacuity C/S of the token
    Dirichlet along each label's target tokens."""
    ok = tokens.dropna(subset=["evidence"])
    if ok.empty:
        return empty_figure("This run stores no Dirichlet read-outs (not a Bayesian method)")
    # two stacked y axes on one x axis (built directly: make_subplots costs ~100 ms a call)
    traces = []
    for lab, g in ok.groupby("label", sort=False):
        hover = [_esc(repr(show_token(t))) for t in g["token"]]
        for axis, col in (("y", "evidence"), ("y2", "vacuity")):
            traces.append(go.Scatter(
                x=g["pos"], y=g[col], yaxis=axis, mode="lines+markers", name=str(lab),
                legendgroup=str(lab), showlegend=axis == "y", text=hover,
                line={"color": _label_color(str(lab))},
                hovertemplate=f"{_esc(lab)} · token %{{x}}: %{{text}}<br>{col} = %{{y:.4g}}"
                              "<extra></extra>"))
    fig = go.Figure(traces, layout={
        "yaxis": {"domain": [0.54, 1.0], "type": "log", "title": {"text": "evidence Σ(α − 1)"}},
        "yaxis2": {"domain": [0.0, 0.46], "anchor": "x", "title": {"text": "vacuity C / S"}},
        "xaxis": {"anchor": "y2", "title": {"text": "student token"}}})
    return finish(fig, title, height=520, legend="top")
