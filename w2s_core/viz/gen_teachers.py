"""Generation (slot filling) teachers: their SLU-F1 and JSON validity, and slot-level agreement
between them on the test split, read from their top-1 (rank 0) N-best outputs.

Two agreement figures per pair of teachers A, B over the N test utterances:

* **set agreement** = (1/N) Σᵢ 1[S_A(i) = S_B(i)], where S_t(i) is the *set* of (type, value)
  pairs that ``parse_slots`` reads from t's top-1 text for utterance i (values normalised with
  ``normalise``, the SLU scorer's normaliser). Exact set equality, not a Jaccard: two outputs
  agree on an utterance only when they would be scored identically.
* **slot κ** (Cohen's κ over items). Items are (utterance, slot type) for every type T that
  occurs, anywhere on test, in gold or in A's or B's outputs; A's label of item (i, τ) is the
  value(s) A gives type τ on utterance i — several values joined by " & " as in the data
  format (normalised, de-duplicated and sorted, so order does not count, as in the set
  agreement) — or "none". With p_o the share of items labelled alike and
  p_A(ℓ), p_B(ℓ) each teacher's label frequencies,

      κ = (p_o − p_e) / (1 − p_e),   p_e = Σ_ℓ p_A(ℓ) p_B(ℓ)

  (NaN when p_e = 1, as sklearn's ``cohen_kappa_score``). Every (utterance, type) cell counts,
  so two teachers that both leave most types empty agree a lot by chance — κ removes that.

Pure pandas/numpy (no Streamlit); the figures reuse the classification heatmap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from w2s_core.metrics.agreement import cohen_kappa_matrix
from w2s_core.metrics.slu import JOIN, Pairs, normalise, parse_slots
from w2s_core.viz.colors import teacher_color
from w2s_core.viz.common import empty_figure, finish
from w2s_core.viz.teachers import agreement_heatmap

NONE = "none"
MEASURES = {"kappa": "slot κ", "agreement": "set agreement"}
SCORES = {"slu_f1": "SLU-F1", "json_validity": "JSON validity", "span_f1": "span F1"}


# ---------------------------------------------------------------- parsing
def slot_set(pairs: Pairs) -> frozenset[tuple[str, str]]:
    """The (type, normalised value) pairs as a set (order and repeats do not count)."""
    return frozenset((t, normalise(v)) for t, v in pairs)


def top1_slots(nbest: pd.DataFrame, split: str = "test") -> dict[str, Pairs]:
    """example_id → the pairs parsed from the teacher's rank-0 output on ``split`` (an invalid
    output gives no pairs, as the SLU scorer reads it)."""
    df = nbest[(nbest["split"] == split) & (nbest["rank"] == 0)]
    return {str(i): parse_slots(str(t))[0] for i, t in zip(df["example_id"], df["text"],
                                                          strict=True)}


def top1_texts(nbest: pd.DataFrame, split: str = "test") -> dict[str, str]:
    df = nbest[(nbest["split"] == split) & (nbest["rank"] == 0)]
    return dict(zip(df["example_id"].astype(str), df["text"].astype(str), strict=True))


def gold_slots(gold_texts: Mapping[str, str]) -> dict[str, Pairs]:
    """example_id → gold pairs (examples.parquet's gold is the JSON target)."""
    return {str(i): parse_slots(str(g))[0] for i, g in gold_texts.items()}


# ---------------------------------------------------------------- agreement
def set_agreement(a: Sequence[Pairs], b: Sequence[Pairs]) -> float:
    """(1/N) Σᵢ 1[set(aᵢ) = set(bᵢ)] — NaN for no utterances."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} vs {len(b)} utterances")
    if not a:
        return float("nan")
    return float(np.mean([slot_set(x) == slot_set(y) for x, y in zip(a, b, strict=True)]))


def type_labels(pairs: Pairs, types: Sequence[str]) -> list[str]:
    """One label per type: its values (normalised, unique, sorted, joined by " & ") or "none"."""
    by: dict[str, set[str]] = {}
    for t, v in pairs:
        by.setdefault(t, set()).add(normalise(v))
    return [JOIN.join(sorted(by[t])) if t in by else NONE for t in types]


def item_types(*outputs: Sequence[Pairs]) -> list[str]:
    """Every slot type that occurs in any of the given per-utterance outputs, sorted."""
    return sorted({t for out in outputs for pairs in out for t, _ in pairs})


def slot_kappa(a: Sequence[Pairs], b: Sequence[Pairs], gold: Sequence[Pairs] | None = None
               ) -> float:
    """Cohen's κ of two teachers over (utterance, type) items (module docstring); the types are
    those occurring in ``gold`` or in either output. NaN with no items or p_e = 1."""
    if len(a) != len(b) or (gold is not None and len(gold) != len(a)):
        raise ValueError("a, b and gold must hold one entry per utterance")
    types = item_types(a, b, gold or [])
    la = [lab for pairs in a for lab in type_labels(pairs, types)]
    lb = [lab for pairs in b for lab in type_labels(pairs, types)]
    if not la:
        return float("nan")
    codes = {lab: i for i, lab in enumerate(sorted(set(la) | set(lb)))}
    preds = np.array([[codes[x] for x in la], [codes[x] for x in lb]])  # (2, N·T)
    return float(cohen_kappa_matrix(preds, len(codes))[0, 1])


def agreement_matrices(top1: Mapping[str, Mapping[str, Pairs]], ids: Sequence[str],
                       gold: Mapping[str, Pairs] | None = None
                       ) -> dict[str, pd.DataFrame]:
    """``{"agreement": K×K set agreement, "kappa": K×K slot κ}`` over the utterances ``ids``
    (diagonals: 1, or NaN for κ of a teacher that is constant and has no other label)."""
    names = list(top1)
    outs = {t: [top1[t].get(i, []) for i in ids] for t in names}
    g = [gold.get(i, []) for i in ids] if gold is not None else None
    k = len(names)
    agree, kappa = np.ones((k, k)), np.ones((k, k))
    for x in range(k):
        for y in range(x + 1, k):
            a, b = outs[names[x]], outs[names[y]]
            agree[x, y] = agree[y, x] = set_agreement(a, b)
            kappa[x, y] = kappa[y, x] = slot_kappa(a, b, g)
    return {"agreement": pd.DataFrame(agree, index=names, columns=names),
            "kappa": pd.DataFrame(kappa, index=names, columns=names)}


def agreement_figure(mat: pd.DataFrame, kind: str) -> go.Figure:
    """The classification page's heatmap, titled for slot-level agreement."""
    fig = agreement_heatmap(mat, kind)
    fig.update_traces(colorbar_title_text=MEASURES[kind],
                      hovertemplate="%{y} vs %{x}: " + MEASURES[kind] + " %{z:.3f}<extra></extra>")
    return fig.update_layout(title_text=f"Pairwise {MEASURES[kind]} between teachers "
                                        "(test split, top-1 outputs)")


def split_share(top1: Mapping[str, Mapping[str, Pairs]], names: Sequence[str],
                ids: Sequence[str]) -> float:
    """Share of utterances on which the named teachers' top-1 slot sets are not all equal."""
    if not ids or len(names) < 2:
        return 0.0
    return float(np.mean([len({slot_set(top1[t].get(i, [])) for t in names}) > 1
                          for i in ids]))


def split_utterances(ids: Sequence[str], names: Sequence[str],
                     top1_text: Mapping[str, Mapping[str, str]],
                     top1: Mapping[str, Mapping[str, Pairs]], texts: Mapping[str, str],
                     gold_text: Mapping[str, str],
                     students: Mapping[str, Mapping[str, str]] | None = None) -> pd.DataFrame:
    """Test utterances where the named teachers' top-1 slot sets differ: example_id, text,
    gold, each teacher's top-1 text, then ``→ method`` columns with each student's output."""
    rows = []
    for i in ids:
        if len({slot_set(top1[t].get(i, [])) for t in names}) <= 1:
            continue
        row = {"example_id": i, "text": texts.get(i, ""), "gold": gold_text.get(i, "")}
        row.update({t: top1_text[t].get(i, "") for t in names})
        row.update({f"→ {m}": out.get(i, "") for m, out in (students or {}).items()})
        rows.append(row)
    cols = ["example_id", "text", "gold", *names, *[f"→ {m}" for m in (students or {})]]
    return pd.DataFrame(rows, columns=cols)


# ---------------------------------------------------------------- scores
def teacher_scores(summaries: Mapping[str, Mapping[str, object]]) -> pd.DataFrame:
    """teacher, split, slu_f1, json_validity, span_f1, n — from ``teachers/<stem>.json``."""
    rows = []
    for name, s in summaries.items():
        for split in ("transfer", "test"):
            if f"slu_f1_{split}" not in s:
                continue
            rows.append({"teacher": name, "split": split,
                         **{m: _num(s.get(f"{m}_{split}")) for m in SCORES},
                         "n": s.get(f"n_{split}")})
    return pd.DataFrame(rows, columns=["teacher", "split", *SCORES, "n"])


def _num(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def teacher_scores_figure(scores: pd.DataFrame, subset: Sequence[str] | None = None
                          ) -> go.Figure:
    """Test SLU-F1 (solid) and JSON validity (hatched) per teacher, in the teacher's colour;
    faded outside the chosen subset."""
    test = scores[scores["split"] == "test"] if len(scores) else scores
    if test.empty:
        return empty_figure("No teacher summaries")
    chosen = set(subset or test["teacher"])
    fig = go.Figure()
    for metric, shape in (("slu_f1", ""), ("json_validity", "/")):
        fig.add_trace(go.Bar(
            x=test["teacher"], y=test[metric], name=SCORES[metric], offsetgroup=metric,
            marker={"color": [teacher_color(t) for t in test["teacher"]],
                    "opacity": [1.0 if t in chosen else 0.35 for t in test["teacher"]],
                    "pattern": {"shape": shape}},
            text=[f"{v:.2f}" for v in test[metric]], textposition="outside",
            hovertemplate=f"%{{x}}: test {SCORES[metric]} %{{y:.3f}}<extra></extra>"))
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1.1])
    return finish(fig, "Teachers on test: SLU-F1 (solid) and JSON validity (hatched); faded: "
                  "not in the chosen subset", height=400, y="score")
