"""Slot-filling metrics: SLURP's SLU-F1, exact span F1, and the JSON slot format.

A prediction or a gold annotation is a list of (slot type, value) pairs per utterance.

SLU-F1 (Bastianelli et al. 2020, the SLURP scorer). Per utterance, predictions are taken in
order; each one whose type occurs among the still-unmatched gold pairs is matched to the gold
pair g of that type with the smallest distance d(g, p) (the first such gold on ties), which is
then removed:

    matched p:      TP += 1,  FP += d,  FN += d
    unmatched p:    FP += 1            (no remaining gold of its type)
    unmatched g:    FN += 1

The pass is run twice, with the word distance and with the character distance

    d_word(g, p) = lev(words(g), words(p)) / |words(g)|     (WER of p against g; NOT clipped, > 1
                                                               when p adds many words)
    d_char(g, p) = lev(g, p) / max(|g|, |p|)                 (in [0, 1])

and the two runs' counts are summed: TP = TP_w + TP_c, FP = FP_w + FP_c, FN = FN_w + FN_c;
P = TP / (TP + FP), R = TP / (TP + FN), SLU-F1 = 2PR / (P + R) (micro over all types).

Edit distances are written here rather than taken from jiwer/rapidfuzz: one 10-line DP
serves words and characters exactly, values are a few words long (speed is irrelevant), no
dependency is added, and jiwer raises on an empty reference where we need a defined value.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from w2s_core.errors import W2SError

Pairs = list[tuple[str, str]]
Distance = Callable[[str, str], float]

JOIN = " & "  # a repeated slot type's values share one JSON key, joined by this
_APOSTROPHES = "'\u2019\u02bc`"


# ---------------------------------------------------------------- normalisation, distances

def normalise(value: str) -> str:
    """Deterministic English normaliser applied to gold and predicted values before scoring.

    NFKC (full-width and ligature forms become plain letters), case-fold, delete apostrophes
    ("o'clock" = "oclock", so a dropped apostrophe costs nothing), turn every other Unicode
    punctuation character into a space ("st.louis" = "st louis"), collapse whitespace. Symbols
    such as "$" and digits are kept: they carry meaning in slot values.
    """
    text = unicodedata.normalize("NFKC", value).casefold()
    text = "".join("" if ch in _APOSTROPHES
                   else " " if unicodedata.category(ch).startswith("P") else ch
                   for ch in text)
    return " ".join(text.split())


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Levenshtein distance (unit insert/delete/substitute) between two sequences.

    Works on strings (characters) and on word lists alike; two rows of the DP table.
    """
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def word_distance(gold: str, pred: str) -> float:
    """WER of ``pred`` against ``gold``: word edits / gold words (not clipped).

    An empty gold value has no WER; we divide by max(1, |gold words|), so empty vs empty is 0
    and empty gold vs k predicted words is k (consistent with "not clipped").
    """
    g, p = gold.split(), pred.split()
    return edit_distance(g, p) / max(1, len(g))


def char_distance(gold: str, pred: str) -> float:
    """Character Levenshtein / length of the longer string (0 when both are empty)."""
    longest = max(len(gold), len(pred))
    return edit_distance(gold, pred) / longest if longest else 0.0


# ---------------------------------------------------------------- scores

def _prf(tp: float, fp: float, fn: float) -> dict[str, Any]:
    """Precision, recall, F1 with SLURP's convention: 0/0 = 0 (then ``defined`` is False).

    A corpus with no gold and no predicted slot scores 0, as SLURP's scorer reports it;
    ``defined`` lets callers flag that instead of reading it as a failure.
    """
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"f1": f1, "precision": precision, "recall": recall,
            "tp": float(tp), "fp": float(fp), "fn": float(fn), "defined": tp + fp + fn > 0}


def _check_pairs(gold: Sequence[Pairs], pred: Sequence[Pairs],
                 norm: bool) -> list[tuple[Pairs, Pairs]]:
    if len(gold) != len(pred):
        raise W2SError(f"{len(gold)} gold utterances but {len(pred)} predictions",
                       "pass one (possibly empty) prediction list per gold utterance")
    fix = normalise if norm else (lambda v: v)
    return [([(t, fix(v)) for t, v in g], [(t, fix(v)) for t, v in p])
            for g, p in zip(gold, pred, strict=True)]


def distance_counts(gold: Sequence[Pairs], pred: Sequence[Pairs], distance: Distance,
                    norm: bool = True) -> dict[str, Any]:
    """One SLURP pass (greedy per-type matching, see the module docstring) with ``distance``."""
    tp = fp = fn = 0.0
    for g_pairs, p_pairs in _check_pairs(gold, pred, norm):
        left = list(g_pairs)
        for p_type, p_val in p_pairs:
            best, best_d = -1, float("inf")
            for i, (g_type, g_val) in enumerate(left):
                if g_type == p_type:
                    d = distance(g_val, p_val)
                    if d < best_d:  # strict: the first gold wins ties, as in SLURP
                        best, best_d = i, d
            if best < 0:
                fp += 1
                continue
            tp += 1
            fp += best_d
            fn += best_d
            left.pop(best)
        fn += len(left)
    return _prf(tp, fp, fn)


def slu_f1(gold: Sequence[Pairs], pred: Sequence[Pairs], norm: bool = True) -> dict[str, Any]:
    """SLURP's SLU-F1: word and character passes, confusion counts summed, micro F1.

    Returns ``{"slu_f1", "precision", "recall", "tp", "fp", "fn", "defined", "word", "char"}``
    where ``word``/``char`` hold each pass's own f1/precision/recall/tp/fp/fn. ``norm``
    applies :func:`normalise` to both sides' values (types are compared exactly).
    """
    word = distance_counts(gold, pred, word_distance, norm)
    char = distance_counts(gold, pred, char_distance, norm)
    total = _prf(word["tp"] + char["tp"], word["fp"] + char["fp"], word["fn"] + char["fn"])
    return {"slu_f1": total.pop("f1"), **total, "word": word, "char": char}


def span_f1(gold: Sequence[Pairs], pred: Sequence[Pairs], norm: bool = True) -> dict[str, Any]:
    """Exact-match span F1: a predicted (type, value) is a TP if an unused identical gold pair
    exists in the same utterance (multiset counting), else an FP; leftover gold are FNs."""
    tp = fp = fn = 0
    for g_pairs, p_pairs in _check_pairs(gold, pred, norm):
        g_count, p_count = Counter(g_pairs), Counter(p_pairs)
        hit = sum((g_count & p_count).values())
        tp += hit
        fp += len(p_pairs) - hit
        fn += len(g_pairs) - hit
    total = _prf(tp, fp, fn)
    return {"span_f1": total.pop("f1"), **total}


# ---------------------------------------------------------------- the JSON slot format

def format_slots(pairs: Sequence[tuple[str, str]]) -> str:
    """Canonical generation target: a JSON object slot type → value, keys in first-appearance
    order, a repeated type's values joined with " & ", ``{}`` when there is no slot.

    ``parse_slots(format_slots(p))`` returns ``p`` grouped stably by type (identical when each
    type's pairs are already contiguous) for stripped, non-empty types and values. A value
    containing " & " cannot round-trip, so it is an error.
    """
    grouped: dict[str, list[str]] = {}
    for slot_type, value in pairs:
        if JOIN in value:
            raise W2SError(f"slot value {value!r} contains {JOIN.strip()!r} surrounded by spaces",
                           "that separator joins repeated slot types; write 'and' instead")
        grouped.setdefault(slot_type, []).append(value)
    return json.dumps({t: JOIN.join(vs) for t, vs in grouped.items()}, ensure_ascii=False)


def parse_slots(text: str) -> tuple[Pairs, bool]:
    """Parse generated text into (type, value) pairs and whether it was valid.

    Rule: the first "{" starts the object and it must decode as one complete JSON object
    (``json.JSONDecoder.raw_decode``); text before it (e.g. "Slots:" or a ```json fence) and
    after it (the model rambling on past the closing brace) is ignored, because a causal LM
    often keeps generating and only the object is the answer. Valid means: such an object
    exists, every key is a string and every value a string. Anything else (no "{", a
    truncated object, a list, a number or null as a value) is invalid and gives no pairs.
    Values split on " & " into one pair each; blank parts are dropped; a key that repeats
    inside the object keeps all its values (json.loads would keep only the last).
    """
    start = text.find("{")
    if start < 0:
        return [], False
    try:
        obj, _ = json.JSONDecoder(object_pairs_hook=list).raw_decode(text, start)
    except json.JSONDecodeError:
        return [], False
    if not isinstance(obj, list) or not all(isinstance(v, str) for _, v in obj):
        return [], False  # nested objects decode to lists too, and fail the value check
    pairs = [(key.strip(), part.strip()) for key, value in obj for part in value.split(JOIN)]
    return [(k, v) for k, v in pairs if k and v], True


def json_validity(texts: Sequence[str]) -> float:
    """Fraction of generated texts that :func:`parse_slots` accepts as valid."""
    if not texts:
        raise W2SError("no generated outputs to score", "pass at least one output text")
    return sum(parse_slots(t)[1] for t in texts) / len(texts)
