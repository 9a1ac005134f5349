"""SLU-F1 (SLURP's metric), span F1 and the JSON slot format, on hand-computed cases."""

from __future__ import annotations

import pytest

from w2s_core.errors import W2SError
from w2s_core.metrics.slu import (
    char_distance,
    edit_distance,
    format_slots,
    json_validity,
    normalise,
    parse_slots,
    slu_f1,
    span_f1,
    word_distance,
)


def _counts(res: dict) -> tuple[float, float, float]:
    return res["tp"], res["fp"], res["fn"]


# ---------------------------------------------------------------- distances and normaliser

@pytest.mark.parametrize(("a", "b", "d"), [
    ("kitten", "sitting", 3), ("flaw", "lawn", 2), ("", "abc", 3), ("abc", "", 3),
    ("same", "same", 0), (["a", "b", "c"], ["a", "c"], 1), (["x"], ["y", "z"], 2),
])
def test_edit_distance_known_values(a, b, d) -> None:
    assert edit_distance(a, b) == d
    assert edit_distance(b, a) == d  # symmetric


def test_word_and_char_distance_partial_value() -> None:
    # one of three gold words deleted; " city" = 5 of 13 characters deleted
    assert word_distance("new york city", "new york") == pytest.approx(1 / 3)
    assert char_distance("new york city", "new york") == pytest.approx(5 / 13)
    # gold is the reference: 3 inserted words over 1 gold word, not clipped
    assert word_distance("boston", "boston logan international airport") == 3.0
    assert word_distance("", "") == 0.0 and char_distance("", "") == 0.0
    assert word_distance("", "two words") == 2.0


def test_normalise_is_documented_rule() -> None:
    assert normalise("  St. Louis ") == "st louis"
    assert normalise("Seven O'Clock") == "seven oclock"
    assert normalise("New-York\u2019s\tJFK") == "new yorks jfk"
    assert normalise("\uff21\uff22 $5") == "ab $5"  # full-width letters fold, symbols stay


# ---------------------------------------------------------------- SLU-F1 hand cases

def test_partial_value() -> None:
    res = slu_f1([[("toloc", "new york city")]], [[("toloc", "new york")]])
    assert _counts(res["word"]) == pytest.approx((1, 1 / 3, 1 / 3))
    assert _counts(res["char"]) == pytest.approx((1, 5 / 13, 5 / 13))
    assert _counts(res) == pytest.approx((2, 28 / 39, 28 / 39))
    # P = R = 2 / (2 + 28/39) = 39/53, so F1 = 39/53
    assert res["slu_f1"] == pytest.approx(39 / 53)
    assert res["precision"] == pytest.approx(39 / 53) and res["recall"] == pytest.approx(39 / 53)


def test_repeated_type_matches_the_closer_gold() -> None:
    gold = [[("toloc", "denver"), ("toloc", "san francisco")]]
    res = slu_f1(gold, [[("toloc", "san fran")]])
    # matched to the second gold (word d 1/2, char d 5/13); "denver" stays unmatched (FN 1)
    assert _counts(res["word"]) == pytest.approx((1, 0.5, 1.5))
    assert _counts(res["char"]) == pytest.approx((1, 5 / 13, 1 + 5 / 13))


def test_empty_gold_and_or_empty_prediction() -> None:
    only_pred = slu_f1([[]], [[("date", "monday")]])
    assert _counts(only_pred) == (0, 2, 0) and only_pred["slu_f1"] == 0.0
    only_gold = slu_f1([[("date", "monday")]], [[]])
    assert _counts(only_gold) == (0, 0, 2) and only_gold["slu_f1"] == 0.0
    # 0/0: SLURP's convention scores 0, and "defined" flags it
    nothing = slu_f1([[], []], [[], []])
    assert _counts(nothing) == (0, 0, 0)
    assert nothing["slu_f1"] == 0.0 and nothing["defined"] is False
    assert only_pred["defined"] is True
    # an utterance with neither gold nor prediction adds nothing to a perfect corpus
    mixed = slu_f1([[], [("date", "monday")]], [[], [("date", "monday")]])
    assert mixed["slu_f1"] == 1.0 and _counts(mixed) == (2, 0, 0)


def test_wrong_type_is_a_false_positive_and_a_false_negative() -> None:
    res = slu_f1([[("fromloc", "boston")]], [[("toloc", "boston")]])
    assert _counts(res["word"]) == (0, 1, 1) and _counts(res["char"]) == (0, 1, 1)
    assert res["slu_f1"] == 0.0
    half = slu_f1([[("a", "x"), ("b", "y")]], [[("a", "x"), ("c", "y")]])
    assert _counts(half) == (2, 2, 2) and half["slu_f1"] == pytest.approx(0.5)


def test_word_distance_above_one_is_not_clipped() -> None:
    res = slu_f1([[("toloc", "boston")]], [[("toloc", "boston logan international airport")]])
    assert _counts(res["word"]) == pytest.approx((1, 3, 3))
    # char: 28 inserted characters, longer string has 34
    assert _counts(res["char"]) == pytest.approx((1, 14 / 17, 14 / 17))
    # P = R = 2 / (2 + 3 + 14/17) = 34/99
    assert res["slu_f1"] == pytest.approx(34 / 99)


def test_greedy_matching_follows_prediction_order() -> None:
    gold = [[("t", "a b"), ("t", "c d")]]
    # "a d" ties between both golds (word 1/2, char 1/3) and takes the first, leaving "c d"
    # for "a b" (word 2/2, char 2/3)
    first = slu_f1(gold, [[("t", "a d"), ("t", "a b")]])
    assert _counts(first["word"]) == pytest.approx((2, 1.5, 1.5))
    assert _counts(first["char"]) == pytest.approx((2, 1.0, 1.0))
    # the other order lets "a b" take its exact match first
    second = slu_f1(gold, [[("t", "a b"), ("t", "a d")]])
    assert _counts(second["word"]) == pytest.approx((2, 0.5, 0.5))
    assert _counts(second["char"]) == pytest.approx((2, 1 / 3, 1 / 3))


def test_values_are_normalised_on_both_sides() -> None:
    gold, pred = [[("city", "St. Louis")]], [[("city", "st louis")]]
    assert slu_f1(gold, pred)["slu_f1"] == 1.0
    raw = slu_f1(gold, pred, norm=False)
    # "St. Louis" vs "st louis": words 2 substitutions of 2; chars S→s, delete ".", L→l = 3/9
    assert _counts(raw["word"]) == pytest.approx((1, 1.0, 1.0))
    assert _counts(raw["char"]) == pytest.approx((1, 1 / 3, 1 / 3))


def test_length_mismatch_is_one_line_error() -> None:
    with pytest.raises(W2SError, match="2 gold utterances but 1 predictions"):
        slu_f1([[], []], [[]])


# ---------------------------------------------------------------- span F1

def test_span_f1_exact_multiset() -> None:
    res = span_f1([[("t", "a"), ("t", "a")]], [[("t", "a"), ("t", "a"), ("t", "a")]])
    assert _counts(res) == (2, 1, 0)
    assert res["precision"] == pytest.approx(2 / 3) and res["recall"] == 1.0
    assert res["span_f1"] == pytest.approx(0.8)
    partial = span_f1([[("toloc", "new york city")]], [[("toloc", "new york")]])
    assert _counts(partial) == (0, 1, 1) and partial["span_f1"] == 0.0
    assert span_f1([[("c", "St. Louis")]], [[("c", "st louis")]])["span_f1"] == 1.0


# ---------------------------------------------------------------- JSON format

def test_format_slots_canonical() -> None:
    assert format_slots([]) == "{}"
    pairs = [("toloc", "boston"), ("fromloc", "denver"), ("toloc", "dallas")]
    assert format_slots(pairs) == '{"toloc": "boston & dallas", "fromloc": "denver"}'
    assert format_slots([("city", "zürich")]) == '{"city": "zürich"}'
    with pytest.raises(W2SError, match="contains '&'"):
        format_slots([("airline", "a & b")])


@pytest.mark.parametrize("pairs", [
    [],
    [("fromloc.city_name", "baltimore"), ("toloc.city_name", "dallas"),
     ("round_trip", "round trip")],
    [("date", "monday"), ("date", "tuesday"), ("time", "six thirty")],
    [("city", "zürich"), ("note", 'say "hi" \\ bye')],
])
def test_round_trip(pairs) -> None:
    assert parse_slots(format_slots(pairs)) == (pairs, True)


def test_round_trip_groups_a_repeated_type() -> None:
    pairs = [("a", "x"), ("b", "y"), ("a", "z")]
    assert parse_slots(format_slots(pairs)) == ([("a", "x"), ("a", "z"), ("b", "y")], True)


@pytest.mark.parametrize("text", [
    "", "no json here", '{"a": "b"', '{"a": 1}', '{"a": null}', '{"a": ["x"]}',
    '["a", "b"]', '{"a": {"b": "c"}}', "{'a': 'b'}",
])
def test_invalid_output_is_empty_and_flagged(text) -> None:
    assert parse_slots(text) == ([], False)


def test_parse_tolerates_text_around_the_first_object() -> None:
    assert parse_slots('Slots: {"a": "b"} and then } more {') == ([("a", "b")], True)
    assert parse_slots('```json\n{"a": "b"}\n```') == ([("a", "b")], True)
    assert parse_slots("{}") == ([], True)


def test_parse_splits_joined_values_and_keeps_repeated_keys() -> None:
    assert parse_slots('{"t": "boston & dallas"}') == ([("t", "boston"), ("t", "dallas")], True)
    assert parse_slots('{"t": " x &  & y ", "u": ""}') == ([("t", "x"), ("t", "y")], True)
    assert parse_slots('{"t": "x", "t": "y"}') == ([("t", "x"), ("t", "y")], True)


def test_json_validity_rate() -> None:
    assert json_validity(["{}", "bad", '{"a": "b"}', '{"a": 1}']) == 0.5
    with pytest.raises(W2SError, match="no generated outputs"):
        json_validity([])
