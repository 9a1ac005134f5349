"""Data layer: the user-file loader, seeded stratified splits and the registry."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from checks import one_line_error

from w2s_core.data.registry import DATASETS, DatasetEntry, load_dataset
from w2s_core.data.schema import DataConfig, TextDataset
from w2s_core.data.splits import make_splits
from w2s_core.errors import W2SError


def _err(cfg: DataConfig, match: str) -> str:
    return one_line_error(lambda: load_dataset(cfg), match)


def _file(path: Path, **kw: object) -> DataConfig:
    return DataConfig(name="file", path=str(path), **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- user files

def test_csv_string_labels(tmp_path: Path) -> None:
    f = tmp_path / "mine.csv"
    f.write_text('text,label\n"good, really",pos\nbad,neg\nfine,pos\n', encoding="utf-8")
    ds = load_dataset(_file(f))
    assert ds.class_names == ("neg", "pos") and ds.labels.tolist() == [1, 0, 1]
    assert ds.texts[0] == "good, really" and ds.ids == ["mine-0", "mine-1", "mine-2"]


def test_jsonl_int_labels_custom_columns(tmp_path: Path) -> None:
    f = tmp_path / "mine.jsonl"
    rows = [{"id": f"r{i}", "body": f"text {i}", "y": i % 3 * 5} for i in range(6)]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = load_dataset(_file(f, text_column="body", label_column="y"))
    assert ds.class_names == ("0", "5", "10")  # numeric order, not "10" < "5"
    assert ds.labels.tolist() == [0, 1, 2, 0, 1, 2] and ds.ids[0] == "r0"


def test_csv_numeric_labels_and_bom(tmp_path: Path) -> None:
    f = tmp_path / "n.csv"
    f.write_bytes("\ufefftext,label\nä,1\nb,0\nc,1\n".encode())
    ds = load_dataset(_file(f))
    assert ds.class_names == ("0", "1") and ds.labels.tolist() == [1, 0, 1] and ds.texts[0] == "ä"


def test_file_errors(tmp_path: Path) -> None:
    _err(DataConfig(name="file"), "needs a path")
    _err(_file(tmp_path / "missing.csv"), "data file not found")
    (tmp_path / "a.xlsx").write_bytes(b"PK")
    _err(_file(tmp_path / "a.xlsx"), "unsupported file type '.xlsx'")
    cols = tmp_path / "cols.csv"
    cols.write_text("sentence,target\nhi,1\nho,0\n")
    assert "columns: sentence, target" in _err(_file(cols), "no text column 'text'")
    assert "label_column=" in _err(_file(cols, text_column="sentence"), "no label column")
    (tmp_path / "empty.csv").write_text("")
    _err(_file(tmp_path / "empty.csv"), "is empty")
    (tmp_path / "head.csv").write_text("text,label\n")
    _err(_file(tmp_path / "head.csv"), "no data rows")
    (tmp_path / "e.jsonl").write_text("\n")
    _err(_file(tmp_path / "e.jsonl"), "no data rows")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncafé,1\nthé,0\n".encode("latin-1"))
    assert "latin.csv is not utf-8 text (byte 0xe9 at offset 14)" in _err(
        _file(latin), "re-save it as UTF-8")
    blank = tmp_path / "blank.csv"
    blank.write_text("text,label\nok,1\n,0\n  ,1\nfine,0\n")
    assert "2 of 4 rows" in _err(_file(blank), "empty 'text'")
    nolab = tmp_path / "nolab.jsonl"
    nolab.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": null}\n')
    _err(_file(nolab), "1 rows have an empty 'label'")
    one = tmp_path / "one.csv"
    one.write_text("text,label\na,x\nb,x\n")
    _err(_file(one), "only one class")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "a", "label": 1}\n{"text": \n')
    _err(_file(broken), "line 2 is not valid JSON")


# ---------------------------------------------------------------- encodings

MAC_TEXTS = ["café naïve ≈ ™ “quoted”", "Ω ∑ π — déjà vu", "plain ascii"]


def test_mac_roman_round_trip(tmp_path: Path) -> None:
    f = tmp_path / "mac.csv"
    body = "text,label\n" + "".join(f'"{t}",{i % 2}\n' for i, t in enumerate(MAC_TEXTS))
    f.write_bytes(body.encode("mac_roman"))
    msg = _err(_file(f), "mac.csv is not utf-8 text")
    assert "encoding: mac_roman" in msg and "encoding: cp1252" in msg
    ds = load_dataset(_file(f, encoding="mac_roman"))
    assert ds.texts == MAC_TEXTS and ds.labels.tolist() == [0, 1, 0]
    assert load_dataset(_file(f, encoding="macroman")).texts == MAC_TEXTS  # codec alias


def test_encodings_cp1252_bom_alias_and_bad_names(tmp_path: Path) -> None:
    win = tmp_path / "win.tsv"
    win.write_bytes("text\tlabel\n5 €\ta\n“smart”\tb\n".encode("cp1252"))
    assert load_dataset(_file(win, encoding="cp1252")).texts == ["5 €", "“smart”"]
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufefftext,label\nx,1\ny,0\n".encode())
    assert load_dataset(_file(bom, encoding="UTF8")).texts == ["x", "y"]  # BOM still dropped
    assert "utf-8" in _err(_file(bom, encoding="klingon"), "unknown encoding 'klingon'")
    _err(_file(bom, encoding="base64"), "'base64' is not a text encoding")


# ---------------------------------------------------------------- deduplication and ids

def test_dedupe_keeps_first_and_counts(tmp_path: Path) -> None:
    f = tmp_path / "dup.csv"
    f.write_text("text,label\n"
                 "Good movie,pos\n"                          # row 1 kept
                 "good   MOVIE,pos\n"                        # duplicate of row 1
                 "meh,pos\n"                                 # conflicting with row 5
                 "Great http://t.co/a,pos\n"                 # row 4 kept
                 "MEH,neg\n"                                 # conflicting with row 3
                 "RT @bob: great http://t.co/b,pos\n"        # retweet of row 4
                 "http://t.co/only,neg\n"                    # nothing left but a link
                 "bad film,neg\n"                            # row 8 kept
                 "Bad film,neg\n")                           # duplicate of row 8
    ds = load_dataset(_file(f))
    assert ds.texts == ["Good movie", "Great http://t.co/a", "bad film"]
    assert ds.labels.tolist() == [1, 1, 0] and ds.ids == ["dup-0", "dup-3", "dup-7"]
    assert ds.info == {"rows": 9, "kept": 3, "duplicates_dropped": 3, "conflicting_dropped": 2,
                       "link_only_dropped": 1, "id_column": None}


def test_dedupe_conflict_drops_every_copy_and_can_remove_a_class(tmp_path: Path) -> None:
    f = tmp_path / "c.csv"
    f.write_text("text,label\nx,a\nX,a\nx ,b\ny,a\nz,c\n")
    ds = load_dataset(_file(f))
    assert ds.texts == ["y", "z"] and ds.class_names == ("a", "c")
    assert (ds.info["conflicting_dropped"], ds.info["duplicates_dropped"]) == (3, 0)
    g = tmp_path / "g.csv"
    g.write_text("text,label\nx,a\nx,b\ny,a\n")
    _err(_file(g), "only one class \\('a'\\) in 'label' after dropping duplicate texts")
    h = tmp_path / "h.csv"
    h.write_text("text,label\nx,a\nx,b\n")
    _err(_file(h), "no row is left")


def test_id_column_default_and_explicit(tmp_path: Path) -> None:
    f = tmp_path / "ids.jsonl"
    rows = [{"id": 7 + i, "key": f"k{i}", "text": f"t{i}", "label": i % 2} for i in range(4)]
    f.write_text("\n".join(json.dumps(r) for r in rows))
    ds = load_dataset(_file(f))
    assert ds.ids == ["7", "8", "9", "10"] and ds.info["id_column"] == "id"
    assert load_dataset(_file(f, id_column="key")).ids == ["k0", "k1", "k2", "k3"]
    dup = tmp_path / "dup.csv"
    dup.write_text("id,key,text,label\n1,a,t0,0\n1,,t1,1\n2,b,t2,0\n")
    ds = load_dataset(_file(dup))  # unusable default "id": quietly number the rows
    assert ds.ids == ["dup-0", "dup-1", "dup-2"] and ds.info["id_column"] is None
    _err(_file(dup, id_column="id"), "id column 'id' repeats 1 ids \\(first: '1' again in row 2\\)")
    _err(_file(dup, id_column="key"), "1 rows have an empty id in 'key' \\(first: row 2\\)")
    assert "columns: id, key, text, label" in _err(_file(dup, id_column="uid"),
                                                   "no id column 'uid'")


# ---------------------------------------------------------------- splits

def _synthetic(n: int = 3000) -> TextDataset:
    labels = np.array([0] * (n * 6 // 10) + [1] * (n * 3 // 10) + [2] * (n - n * 9 // 10))
    return TextDataset("syn", [f"t{i}" for i in range(n)], labels, ("a", "b", "c"))


def test_splits_disjoint_seeded_stratified() -> None:
    ds = _synthetic()
    cfg = DataConfig(name="syn", n_weak=1000, n_transfer=1000, seed=3)
    splits, info = make_splits(ds, cfg)
    sizes = {k: len(v) for k, v in splits.items()}
    assert sizes == {"weak": 1000, "transfer": 1000, "test": 1000} and not info["shrunk"]
    assert info["sizes"] == sizes and info["n_total"] == 3000 and info["seed"] == 3
    allidx = np.concatenate(list(splits.values()))
    assert len(np.unique(allidx)) == 3000  # disjoint and, with n_test unset, complete
    for idx in splits.values():
        assert np.bincount(ds.labels[idx]).tolist() == [600, 300, 100]
    again, _ = make_splits(ds, cfg)
    assert all(np.array_equal(splits[k], again[k]) for k in splits)
    other, _ = make_splits(ds, DataConfig(name="syn", n_weak=1000, n_transfer=1000, seed=4))
    assert not np.array_equal(np.sort(splits["weak"]), np.sort(other["weak"]))


def test_splits_rounding_keeps_exact_sizes() -> None:
    ds = _synthetic(1001)
    splits, _ = make_splits(ds, DataConfig(n_weak=333, n_transfer=317, n_test=101))
    assert [len(splits[k]) for k in ("weak", "transfer", "test")] == [333, 317, 101]
    overall = np.bincount(ds.labels) / len(ds)
    for idx in splits.values():
        frac = np.bincount(ds.labels[idx], minlength=3) / len(idx)
        assert np.all(np.abs(frac - overall) <= 1.0 / len(idx) + 1e-9)


def test_splits_shrink_rule() -> None:
    ds = _synthetic(2000)  # default 5k/5k cannot fit
    splits, info = make_splits(ds, DataConfig())
    assert info["shrunk"] and info["min_test"] == 400
    assert len(splits["test"]) == 400 and len(splits["weak"]) + len(splits["transfer"]) == 1600
    assert len(splits["weak"]) == len(splits["transfer"]) == 800  # proportions kept
    _, big = make_splits(_synthetic(20000), DataConfig())
    assert big["sizes"] == {"weak": 5000, "transfer": 5000, "test": 10000} and not big["shrunk"]
    _, mid = make_splits(_synthetic(10500), DataConfig())
    assert mid["sizes"]["test"] == 1000 and mid["shrunk"]


def test_splits_errors() -> None:
    ds = _synthetic(1000)
    too_big = re.escape("n_transfer=300 + n_test=500 = 1100 exceeds the 1000")
    with pytest.raises(W2SError, match=too_big) as exc:
        make_splits(ds, DataConfig(name="syn", n_weak=300, n_transfer=300, n_test=500))
    assert "leave n_test unset" in str(exc.value)
    for bad in ({"n_weak": 0}, {"n_transfer": -5}, {"n_test": 0}):
        with pytest.raises(W2SError, match="must be positive"):
            make_splits(ds, DataConfig(**bad))  # type: ignore[arg-type]


# ---------------------------------------------------------------- registry

def test_registry_lists_known_names() -> None:
    msg = _err(DataConfig(name="imdb"), "unknown dataset 'imdb'")
    for name in ("tweets", "tweets-3class", "atis-intent", "wordnet-qa", "sciq", "cosmos_qa",
                 "boolq", "file"):
        assert name in msg and name in DATASETS
    entry = DATASETS.get("sciq")
    assert isinstance(entry, DatasetEntry) and not entry.offline and DATASETS.get("tweets").offline
    with pytest.raises(AttributeError):
        entry.name = "x"  # type: ignore[misc]
