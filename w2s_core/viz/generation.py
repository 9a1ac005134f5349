"""Generation (slot filling), one utterance at a time: how much the teachers disagree, each
teacher's N-best with word probabilities, the jointly decoded target, and the student's output
against gold. Pure pandas / HTML; no Streamlit. Token-level targets: ``gen_tokens``; DPO:
``gen_dpo``."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from w2s_core.methods.gen_methods import joint_matrix, teacher_weights
from w2s_core.metrics.slu import normalise, parse_slots
from w2s_core.viz.colors import OUTCOME_COLORS
from w2s_core.viz.gen_teachers import slot_set as pair_set

SlotSet = frozenset[tuple[str, str]]
# probability 0 → the "wrong" colour, 1 → the "correct" one (mid-tones: readable on light and
# dark themes); translucent, so the theme's text colour stays legible on top
LOW, HIGH, ALPHA = OUTCOME_COLORS["wrong"], OUTCOME_COLORS["correct"], 0.45
COLORSCALE = [[0.0, LOW], [1.0, HIGH]]  # the same scale for plotly figures
# the spans' fixed look lives in CSS classes, written once per page (``SPAN_CSS``): an inline
# style repeated on every word and token made the token strips ~3x larger to send and parse
SPAN_CSS = (".w2s-word{padding:1px 3px;margin:1px 0;border-radius:3px;line-height:1.9}"
            ".w2s-tok{white-space:pre;padding:1px 1px;margin:0 1px;border-radius:3px;"
            "line-height:2;outline:1px solid rgba(127,127,127,0.25)}")


# ---------------------------------------------------------------- runs like another
def _is_na(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def like(runs: pd.DataFrame, row: pd.Series | Mapping[str, object],
         cols: Sequence[str]) -> pd.DataFrame:
    """The rows of ``runs`` equal to ``row`` on every column of ``cols`` that both have,
    compared as text; a missing value (None / NaN, as the index stores an unset option)
    matches only a missing value."""
    keep = pd.Series(True, index=runs.index)
    for col in cols:
        if col not in runs.columns or col not in row:
            continue
        v = row[col]
        keep &= runs[col].isna() if _is_na(v) else runs[col].astype(str) == str(v)
    return runs[keep]


# ---------------------------------------------------------------- colours and spans
def _rgb(hex_color: str) -> tuple[int, int, int]:
    h = hex_color.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def prob_color(p: float, alpha: float = ALPHA) -> str:
    """'rgba(r,g,b,a)' for a probability: linear in RGB from LOW (p = 0) to HIGH (p = 1),
    each channel rounded half up; p is clipped to [0, 1], NaN → transparent."""
    if p is None or not math.isfinite(p):
        return "rgba(0,0,0,0)"
    p = min(max(float(p), 0.0), 1.0)
    lo, hi = _rgb(LOW), _rgb(HIGH)
    r, g, b = (math.floor(a + p * (z - a) + 0.5) for a, z in zip(lo, hi, strict=True))
    return f"rgba({r},{g},{b},{alpha})"


def span(text: str, p: float, tooltip: str) -> str:
    """One coloured, escaped HTML span with a hover tooltip (the ``title`` attribute)."""
    return (f'<span class="w2s-word" style="background-color:{prob_color(p)}" '
            f'title="{html.escape(tooltip, quote=True)}">{html.escape(text)}</span>')


def word_spans(text: str, word_logps: Sequence[float] | None) -> str:
    """The text's whitespace words, each coloured by its probability exp(log p) with the
    log-prob on hover. Words without a score (a list shorter than the text) stay uncoloured."""
    words = str(text).split()
    lps = list(word_logps) if word_logps is not None else []
    out = []
    for i, w in enumerate(words):
        if i < len(lps) and math.isfinite(float(lps[i])):
            lp = float(lps[i])
            out.append(span(w, math.exp(lp), f"log p = {lp:.3f} · p = {math.exp(lp):.3f}"))
        else:
            out.append(span(w, float("nan"), "no score"))
    return " ".join(out) if out else "<i>(empty output)</i>"


def nbest_html(nb: pd.DataFrame, names: Sequence[str], subset: set[str]) -> str:
    """One block per teacher of ``nbest``'s frame: whether it is in the run's subset, then
    each candidate's log p, per-token score, JSON validity and its words coloured by
    probability. One HTML string: one element for the browser to draw, not one per teacher."""
    blocks = []
    for name in names:
        rows = nb[nb["teacher"] == name]
        tag = "in the run's subset" if name in subset else "not in the run's subset"
        blocks.append(f"<b>{html.escape(name)}</b> · {tag} · {len(rows)}-best" + "".join(
            f"<br><small>#{int(r.rank) + 1} · log p = {r.logp:.2f} · per token {r.norm:.3f} · "
            f"{'valid' if r.valid else 'invalid'} JSON</small><br>"
            + word_spans(r.text, r.word_logps) for r in rows.itertuples()))
    return "<br>".join(blocks)


def slot_chips(text: str) -> str:
    """An output's slots as one line of HTML chips "type = value" (escaped); "{}" → no slots,
    invalid JSON says so."""
    pairs, valid = parse_slots(str(text))
    if not valid:
        return "<i>invalid JSON: no slots</i>"
    if not pairs:
        return "<i>no slots</i>"
    chip = ('<span style="border:1px solid rgba(127,127,127,0.45);border-radius:4px;'
            'padding:1px 5px;margin:2px;display:inline-block"><small>{}</small> = <b>{}</b></span>')
    return " ".join(chip.format(html.escape(t), html.escape(v)) for t, v in pairs)


# ---------------------------------------------------------------- disagreement and ranking
def slot_set(text: str) -> SlotSet:
    """The (type, normalised value) pairs of an output; invalid JSON → the empty set."""
    return pair_set(parse_slots(str(text))[0])


def jaccard(a: SlotSet, b: SlotSet) -> float:
    """|a ∩ b| / |a ∪ b|; two empty sets agree completely (1)."""
    union = a | b
    return 1.0 if not union else len(a & b) / len(union)


def disagreement(texts: Sequence[str]) -> tuple[int, float]:
    """(number of distinct slot sets, 1 − mean pairwise Jaccard) of the teachers' top-1
    outputs; one output → (1, 0)."""
    sets = [slot_set(t) for t in texts]
    if not sets:
        return 0, 0.0
    pairs = list(combinations(sets, 2))
    mean_j = float(np.mean([jaccard(a, b) for a, b in pairs])) if pairs else 1.0
    return len(set(sets)), 1.0 - mean_j


def top1_texts(teachers: Mapping[str, pd.DataFrame], names: Sequence[str],
               split: str = "test") -> pd.DataFrame:
    """example_id × teacher → the teacher's rank-0 text on ``split`` (ids in the first
    teacher's order)."""
    cols = {}
    for n in names:
        df = teachers[n]
        top = df[(df["split"] == split) & (df["rank"] == 0)]
        cols[n] = top.drop_duplicates("example_id").set_index("example_id")["text"].astype(str)
    return pd.DataFrame(cols).reindex(columns=list(names)).fillna("")


def rank_utterances(teachers: Mapping[str, pd.DataFrame], names: Sequence[str],
                    texts: Mapping[str, str], split: str = "test") -> pd.DataFrame:
    """One row per utterance of ``split``: example_id, text, distinct, disagreement — sorted
    most-disagreed first (more distinct slot sets, then lower mean Jaccard; ties keep the
    stored order)."""
    names = [n for n in names if n in teachers]
    cols = ["example_id", "text", "distinct", "disagreement"]
    if not names:
        return pd.DataFrame(columns=cols)
    tops = top1_texts(teachers, names, split)
    rows = []
    for i, (eid, r) in enumerate(tops.iterrows()):
        n, d = disagreement(r.tolist())
        rows.append((str(eid), str(texts.get(str(eid), "")), n, d, i))
    out = pd.DataFrame(rows, columns=[*cols, "_order"])
    out = out.sort_values(["distinct", "disagreement", "_order"], ascending=[False, False, True],
                          kind="stable")
    return out.drop(columns="_order").reset_index(drop=True)


def search(ranked: pd.DataFrame, query: str) -> pd.DataFrame:
    """Rows whose text or id contains ``query`` (case-insensitive); an empty query keeps all."""
    q = (query or "").strip().casefold()
    if not q:
        return ranked
    hit = ranked["text"].astype(str).str.casefold().str.contains(q, regex=False) | \
        ranked["example_id"].astype(str).str.casefold().str.contains(q, regex=False)
    return ranked[hit]


# ---------------------------------------------------------------- teachers' N-best
def nbest(teachers: Mapping[str, pd.DataFrame], example_id: str, names: Sequence[str],
          split: str = "test") -> pd.DataFrame:
    """teacher, rank, text, logp, norm, p_seq = exp(logp), valid, word_logps — every listed
    teacher's N-best for one utterance, best first."""
    parts = []
    for n in names:
        df = teachers.get(n)
        if df is None:
            continue
        rows = df[(df["example_id"] == example_id) & (df["split"] == split)]
        if len(rows):
            parts.append(rows.sort_values("rank").assign(teacher=n))
    cols = ["teacher", "rank", "text", "logp", "norm", "p_seq", "valid", "word_logps"]
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)
    return out.assign(p_seq=np.exp(out["logp"].astype(float)))[cols]


def mean_word_logp(word_logps: Sequence[float] | None, norm: float) -> float:
    """A candidate's mean word log-prob (its length-normalised score when it has no word) —
    the self-confidence the "dynamic" λ reads."""
    lps = list(word_logps) if word_logps is not None else []
    return float(np.mean(lps)) if lps else float(norm)


def ensemble_weights(mode: str | Sequence[float], top1: pd.DataFrame,
                     names: Sequence[str], all_teachers: Sequence[str] = ()) -> dict[str, float]:
    """λ per teacher for one utterance, as the run made it (``gen_options.lam``): "mean",
    "dynamic" (softmax of each teacher's top-1 mean word log-prob) or fixed weights given per
    experiment teacher (``all_teachers`` order). ``top1``: ``nbest`` rows of rank 0."""
    first = top1.drop_duplicates("teacher").set_index("teacher")
    mw = np.array([[mean_word_logp(first.at[n, "word_logps"], first.at[n, "norm"])
                    if n in first.index else 0.0 for n in names]])
    if not isinstance(mode, str):
        fixed = dict(zip(all_teachers, mode, strict=True))
        mode = [fixed[n] for n in names]
    return dict(zip(names, teacher_weights(mode, mw)[0].tolist(), strict=True))


def joint_candidates(pool: pd.DataFrame, example_id: str, lam: Mapping[str, float],
                     split: str = "test", mode: str = "sum") -> pd.DataFrame:
    """The pooled candidates of λ's teachers for one utterance with each teacher's score and
    the ensemble's Σ_k λ_k s_k, best first; ``joint`` marks the jointly decoded target (the
    argmax, the first on ties — what the joint method trains toward). ``mode``: the run's
    ``joint_score`` (s_k = logp_k for "sum"; see ``gen_methods.joint_matrix``)."""
    names = list(lam)
    cols = ["text", "sources", "score", *(f"logp__{n}" for n in names),
            *(f"norm__{n}" for n in names), "joint"]
    if pool.empty or not all(f"logp__{n}" in pool.columns for n in names):
        return pd.DataFrame(columns=cols)
    rows = pool[(pool["example_id"] == example_id) & (pool["split"] == split)]
    rows = rows[[bool(set(s) & set(names)) for s in rows["sources"]]]
    if "cand" in rows.columns:
        rows = rows.sort_values("cand")
    w = np.array([lam[n] for n in names])
    s_k = joint_matrix(mode, rows[[f"logp__{n}" for n in names]].to_numpy(float).T,
                       rows[[f"norm__{n}" for n in names]].to_numpy(float).T,
                       rows["text"].astype(str).tolist())  # (K, C)
    score = w @ s_k  # (C,)
    out = rows.assign(score=score, sources=[", ".join(s) for s in rows["sources"]],
                      joint=False).reset_index(drop=True)
    if len(out):
        out.loc[int(np.argmax(score)), "joint"] = True
    return out.sort_values("score", ascending=False, kind="stable")[cols].reset_index(drop=True)


# ---------------------------------------------------------------- the student vs gold
def slot_comparison(gold: str, pred: str) -> pd.DataFrame:
    """slot type, gold, predicted, match — one row per slot type in either (gold's order,
    then the prediction's extras). match: "✓" same normalised values, "≈" the type is in both
    with other values, "missed" / "extra" when only one side has it."""
    g, p = parse_slots(str(gold))[0], parse_slots(str(pred))[0]
    gd: dict[str, list[str]] = {}
    pdict: dict[str, list[str]] = {}
    for t, v in g:
        gd.setdefault(t, []).append(v)
    for t, v in p:
        pdict.setdefault(t, []).append(v)
    rows = []
    for t in [*gd, *(t for t in pdict if t not in gd)]:
        gv, pv = gd.get(t, []), pdict.get(t, [])
        if not pv:
            match = "missed"
        elif not gv:
            match = "extra"
        else:
            same = sorted(map(normalise, gv)) == sorted(map(normalise, pv))
            match = "✓" if same else "≈"
        rows.append((t, " & ".join(gv), " & ".join(pv), match))
    return pd.DataFrame(rows, columns=["slot type", "gold", "predicted", "match"])


def _f1(tp: float, fp: float, fn: float) -> float:
    """SLU-F1 from summed counts: 2PR/(P+R) = 2TP/(2TP+FP+FN); NaN when nothing was scored."""
    den = 2 * tp + fp + fn
    return 2 * tp / den if den > 0 else float("nan")


def utterance_contribution(preds: pd.DataFrame, example_id: str) -> dict[str, float]:
    """This utterance's SLU counts and what it does to the run's SLU-F1: ``utt_slu_f1``, tp,
    fp, fn, ``corpus`` (micro SLU-F1 of all rows), ``without`` (of all but this one) and
    ``contribution`` = corpus − without (positive: the utterance raises the score)."""
    tot = preds[["tp", "fp", "fn"]].astype(float).sum()
    row = preds.loc[preds["example_id"] == example_id].iloc[0]
    tp, fp, fn = (float(row[c]) for c in ("tp", "fp", "fn"))
    corpus = _f1(tot["tp"], tot["fp"], tot["fn"])
    without = _f1(tot["tp"] - tp, tot["fp"] - fp, tot["fn"] - fn)
    return {"utt_slu_f1": float(row["utt_slu_f1"]), "tp": tp, "fp": fp, "fn": fn,
            "corpus": corpus, "without": without, "contribution": corpus - without}
