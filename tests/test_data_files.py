"""Data layer: the user-file loader, seeded stratified splits and the registry."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from w2s_core.data.registry import DATASETS, DatasetEntry, load_dataset
from w2s_core.data.schema import DataConfig, TextDataset
from w2s_core.data.splits import make_splits
from w2s_core.errors import W2SError


def _err(cfg: DataConfig, match: str) -> str:
    with pytest.raises(W2SError, match=match) as exc:
        load_dataset(cfg)
    msg = str(exc.value)
    assert "\n" not in msg and " — " in msg, msg
    return msg


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
    assert "latin.csv" in _err(_file(latin), "re-save it as UTF-8")
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
