"""Scoring generated slot-filling outputs: SLU-F1, span F1, JSON validity, and the counted
fallbacks (invalid JSON scores as an empty prediction; unknown slot types score as FPs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from w2s_core.metrics.slu import Pairs, parse_slots, slu_f1, span_f1


def parse_all(texts: Sequence[str]) -> tuple[list[Pairs], list[bool]]:
    parsed = [parse_slots(t) for t in texts]
    return [p for p, _ in parsed], [ok for _, ok in parsed]


def generation_metrics(gold: Sequence[Pairs], texts: Sequence[str],
                       slot_types: Sequence[str] = ()) -> dict[str, Any]:
    """Metrics of one set of outputs against gold pairs (one output text per utterance).

    slu_f1 (SLURP's, word + char passes), span_f1 (exact), json_validity (share of outputs
    that parse), empty_rate (share with no predicted pair, invalid included), and
    unknown_type_rate (share of predicted pairs whose type is not in ``slot_types``; they stay
    in the scores as false positives — counted, not dropped).
    """
    pred, valid = parse_all(texts)
    s = slu_f1(gold, pred)
    n_pairs = sum(len(p) for p in pred)
    known = set(slot_types)
    unknown = sum(1 for p in pred for t, _ in p if known and t not in known)
    return {"slu_f1": s["slu_f1"], "slu_precision": s["precision"], "slu_recall": s["recall"],
            "slu_defined": s["defined"], "span_f1": span_f1(gold, pred)["span_f1"],
            "json_validity": sum(valid) / len(valid) if valid else 0.0,
            "empty_rate": sum(1 for p in pred if not p) / len(pred) if pred else 0.0,
            "unknown_type_rate": unknown / n_pairs if n_pairs else 0.0,
            "n": len(texts)}


def per_utterance(gold: Sequence[Pairs], texts: Sequence[str]) -> list[dict[str, Any]]:
    """Each utterance's own SLU confusion counts (tp, fp, fn of both passes summed): what it
    adds to the corpus SLU-F1, for per-example tables."""
    pred, valid = parse_all(texts)
    out = []
    for g, p, ok in zip(gold, pred, valid, strict=True):
        s = slu_f1([g], [p])
        out.append({"valid": ok, "n_pred": len(p), "tp": s["tp"], "fp": s["fp"], "fn": s["fn"],
                    "utt_slu_f1": s["slu_f1"] if s["defined"] else None})
    return out
