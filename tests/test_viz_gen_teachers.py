"""Slot-level agreement between generation teachers (w2s_core.viz.gen_teachers): set agreement
and the κ over (utterance, slot type) items against hand-computed cases and sklearn's
cohen_kappa_score; the teacher scores and the "where they split" table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from w2s_core.viz import gen_teachers as gt

# three utterances; gold, teacher A, teacher B (see the hand computation below)
GOLD = [[("city", "boston")], [("date", "monday")], [("city", "dallas")]]
A = [[("city", "Boston")], [], [("city", "dallas")]]
B = [[("city", "denver")], [("date", "monday"), ("city", "boston")], [("city", "Dallas.")]]


def test_set_agreement_is_exact_equality_of_normalised_sets() -> None:
    # u1: {boston} vs {denver} differ; u2: {} vs {monday, boston} differ; u3: dallas = dallas
    # after normalisation ("Dallas." → "dallas")
    assert gt.set_agreement(A, B) == pytest.approx(1 / 3)
    # order and repeats do not count
    assert gt.set_agreement([[("a", "x"), ("b", "y"), ("a", "x")]], [[("b", "y"), ("a", "x")]]) \
        == 1.0
    assert math.isnan(gt.set_agreement([], []))
    with pytest.raises(ValueError):
        gt.set_agreement(A, B[:2])


def test_slot_kappa_by_hand() -> None:
    """Types {city, date}; items (u, type), labels A / B:
    (1,city) boston/denver · (1,date) none/none · (2,city) none/boston · (2,date) none/monday ·
    (3,city) dallas/dallas · (3,date) none/none  →  p_o = 3/6.
    p_A: boston 1/6, none 4/6, dallas 1/6; p_B: denver, boston, monday, dallas 1/6 each, none 2/6
    → p_e = 1/36 + 8/36 + 1/36 = 10/36;  κ = (1/2 − 5/18) / (1 − 5/18) = 4/13."""
    assert gt.slot_kappa(A, B, GOLD) == pytest.approx(4 / 13)
    assert gt.slot_kappa(A, B, GOLD) == pytest.approx(cohen_kappa_score(
        ["boston", "none", "none", "none", "dallas", "none"],
        ["denver", "none", "boston", "monday", "dallas", "none"]))
    # a type only gold holds still adds items (both say "none" there): κ changes
    with_gold_type = [*GOLD[:2], [("city", "dallas"), ("time", "noon")]]
    assert gt.slot_kappa(A, B, with_gold_type) != pytest.approx(4 / 13)
    assert gt.slot_kappa(A, A, GOLD) == pytest.approx(1.0)


def test_slot_kappa_matches_sklearn_on_random_outputs() -> None:
    rng = np.random.default_rng(0)
    types, values = ["a", "b", "c", "d"], ["x", "y", "z"]

    def draw() -> list[tuple[str, str]]:
        return [(t, str(rng.choice(values))) for t in types if rng.random() < 0.5]

    a, b, g = ([draw() for _ in range(40)] for _ in range(3))
    present = sorted({t for src in (a, b, g) for p in src for t, _ in p})

    def labels(out: list[list[tuple[str, str]]]) -> list[str]:
        return [next((v for tt, v in p if tt == t), "none") for p in out for t in present]

    # one value per type here, so a label is that value
    assert gt.slot_kappa(a, b, g) == pytest.approx(cohen_kappa_score(labels(a), labels(b)))


def test_type_labels_join_repeated_types_like_the_data_format() -> None:
    pairs = [("city", "Denver"), ("date", "monday"), ("city", "boston"), ("city", "boston")]
    assert gt.type_labels(pairs, ["city", "date", "time"]) == ["boston & denver", "monday",
                                                               "none"]


def test_constant_teachers_have_undefined_kappa() -> None:
    empty = [[], []]
    assert math.isnan(gt.slot_kappa(empty, empty, [[("a", "x")], []]))  # all "none": p_e = 1
    assert math.isnan(gt.slot_kappa(empty, empty))  # no items at all


def test_agreement_matrices_are_symmetric_with_unit_diagonal() -> None:
    ids = ["u1", "u2", "u3"]
    top1 = {"A": dict(zip(ids, A, strict=True)), "B": dict(zip(ids, B, strict=True))}
    mats = gt.agreement_matrices(top1, ids, dict(zip(ids, GOLD, strict=True)))
    for kind, off in (("agreement", 1 / 3), ("kappa", 4 / 13)):
        m = mats[kind].to_numpy()
        assert np.allclose(np.diag(m), 1.0) and m[0, 1] == m[1, 0] == pytest.approx(off)
    fig = gt.agreement_figure(mats["kappa"], "kappa")
    assert "slot κ" in fig.layout.title.text


def test_split_utterances_lists_only_disagreements() -> None:
    ids = ["u1", "u2", "u3"]
    top1 = {"A": dict(zip(ids, A, strict=True)), "B": dict(zip(ids, B, strict=True))}
    texts = {t: {i: f"{t}-{i}" for i in ids} for t in top1}
    split = gt.split_utterances(ids, ["A", "B"], texts, top1, {"u1": "fly to boston"},
                                {i: f"gold-{i}" for i in ids}, {"bayes": {"u1": "{}"}})
    assert split["example_id"].tolist() == ["u1", "u2"]  # u3 agrees after normalisation
    assert split.columns.tolist() == ["example_id", "text", "gold", "A", "B", "→ bayes"]
    assert split.iloc[0].tolist() == ["u1", "fly to boston", "gold-u1", "A-u1", "B-u1", "{}"]
    assert gt.split_share(top1, ["A", "B"], ids) == pytest.approx(2 / 3)
    assert gt.split_share(top1, ["A"], ids) == 0.0


def test_top1_reads_rank_zero_of_the_split() -> None:
    nbest = pd.DataFrame({"example_id": ["u1", "u1", "u2", "u9"],
                          "split": ["test"] * 3 + ["transfer"], "rank": [0, 1, 0, 0],
                          "text": ['{"city": "boston"}', '{"city": "x"}', "not json", "{}"]})
    assert gt.top1_slots(nbest) == {"u1": [("city", "boston")], "u2": []}
    assert gt.top1_texts(nbest)["u2"] == "not json"


def test_teacher_scores_from_summaries() -> None:
    summ = {"t1": {"slu_f1_test": 0.5, "json_validity_test": 0.9, "span_f1_test": 0.4,
                   "n_test": 8, "slu_f1_transfer": 0.6, "json_validity_transfer": 1.0},
            "t2": {"slu_f1_test": 0.1, "json_validity_test": None}}
    df = gt.teacher_scores(summ)
    test = df[df["split"] == "test"].set_index("teacher")
    assert test.loc["t1", "slu_f1"] == 0.5 and test.loc["t1", "n"] == 8
    assert math.isnan(test.loc["t2", "json_validity"]) and math.isnan(test.loc["t2", "span_f1"])
    assert len(df[df["split"] == "transfer"]) == 1
    fig = gt.teacher_scores_figure(df, ["t1"])
    bars = {t.name: t for t in fig.data}
    assert list(bars["SLU-F1"].y) == [0.5, 0.1]
    assert list(bars["SLU-F1"].marker.opacity) == [1.0, 0.35]  # t2 is outside the subset
