"""Reading slot-filling files into (id, text, pairs) rows, which ``slots`` deduplicates into a
SlotDataset: SLURP-format records (a local JSONL or a hub copy, one row function for both) and
a user's slot JSONL (ids, text encoding, an optional header that declares the slot types).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from w2s_core.data.files import _read_rows, _source
from w2s_core.data.hub import hub_split
from w2s_core.data.weak_labels import label_key, repeats
from w2s_core.errors import W2SError

Pairs = list[tuple[str, str]]
Row = tuple[str, str, Pairs]  # (example id, text, gold (type, value) pairs)
HUB = "hub:"

# "[time : five am]": the type has no colon or bracket; the filler runs to the closing bracket.
_BRACKET = re.compile(r"\[([^\[\]:]+):([^\[\]]*)\]")
_REPO = re.compile(r"[\w.-]+/[\w.-]+")
_HEADER = "slot_types"


def parse_annotation(annotation: str) -> Pairs:
    """SLURP's ``sentence_annotation`` ("wake me up at [time : five am]") → pairs, in order."""
    return [(" ".join(t.split()), " ".join(v.split())) for t, v in _BRACKET.findall(annotation)]


# ---------------------------------------------------------------- SLURP format (file or hub)

def hub_spec(path: str) -> tuple[str, str] | None:
    """``hub:OWNER/NAME[@SPLIT]`` → (repo id, split, default "train"); None for a local path."""
    if not path.startswith(HUB):
        return None
    repo, at, split = path[len(HUB):].strip().partition("@")
    if not _REPO.fullmatch(repo) or (at and not split.strip()):
        raise W2SError(f"data.path {path!r} is not a hub dataset name",
                       "write hub:OWNER/NAME or hub:OWNER/NAME@SPLIT (e.g. hub:owner/slurp@test)")
    return repo, split.strip() or "train"


def slurp_records(path: str) -> tuple[Iterable[Mapping[str, Any]], str]:
    """The records of a SLURP-format source and its name for messages.

    Both a hub dataset (``hub:OWNER/NAME[@SPLIT]``) and a local JSONL are read by
    ``datasets.load_dataset``, so ``slurp_rows`` sees the same kind of rows from either (the
    local path is how the hub path is tested: our machines cannot reach the hub).
    """
    spec = hub_spec(path)
    if spec is not None:
        repo, split = spec
        source = f"{HUB}{repo}@{split}"
        return hub_split(repo, split, f"could not load {source}: the Hugging Face hub is "
                         "unreachable (offline?) or has no such dataset/split",
                         "download the split elsewhere and set data.path to that local JSONL "
                         "copy (SLURP's format, or set text_column/label_column)"), source
    file = Path(path).expanduser()
    if not file.is_file():
        raise W2SError(f"SLURP file not found: {file}", "check data.path (relative paths start "
                       "from the current directory), or name a hub copy as hub:OWNER/NAME")
    if file.suffix.lower() not in (".jsonl", ".json"):
        raise W2SError(f"{file.name}: unsupported file type '{file.suffix}' for SLURP",
                       "give SLURP's JSONL (one record per line, .jsonl)")
    import datasets

    try:
        return datasets.load_dataset("json", data_files=str(file), split="train"), file.name
    except Exception as exc:  # malformed line, mixed types: datasets' traceback is no help
        raise W2SError(f"could not read {file.name} as JSON lines ({type(exc).__name__})",
                       "write one JSON object per line, each field of one type") from exc


def slurp_rows(records: Iterable[Mapping[str, Any]], source: str,
               text_field: str = "sentence",
               annotation_field: str = "sentence_annotation") -> tuple[list[Row], int]:
    """Rows of SLURP-format records, and how many disagree with their ``entities``.

    Text = ``text_field``; pairs come from the brackets of ``annotation_field``, which hold
    the filler text itself (``entities`` hold only token ids into ``tokens``). When
    ``entities`` is present, its type sequence is compared with the brackets' and the
    disagreements are counted rather than fatal, so one odd line does not lose a split. Ids are
    ``slurp-{slurp_id}`` (the record number where it is absent, e.g. MASSIVE).
    """
    rows, mismatches = [], 0
    for n, rec in enumerate(records, 1):
        for key in (text_field, annotation_field):
            if not isinstance(rec.get(key), str):
                raise W2SError(f"{source}: record {n} has no string '{key}'",
                               "give every record SLURP's sentence and sentence_annotation, or "
                               "set data.text_column / data.label_column to the fields used")
        pairs = parse_annotation(rec[annotation_field])
        entities = rec.get("entities")
        if isinstance(entities, list):
            types = [e.get("type") if isinstance(e, Mapping) else None for e in entities]
            mismatches += types != [t for t, _ in pairs]
        # datasets fills a field absent from some lines with None
        ident = rec.get("slurp_id")
        rows.append((f"slurp-{n if ident is None else ident}",
                     " ".join(rec[text_field].split()), pairs))
    return rows, mismatches


# ---------------------------------------------------------------- a user's slot JSONL

def user_rows(path: str | Path, text_field: str = "text", slots_field: str = "slots",
              allowed_types: Sequence[str] | None = None, id_field: str | None = None,
              encoding: str = "utf-8") -> tuple[list[Row], tuple[str, ...], Path]:
    """Rows of a user's slot JSONL, the declared slot types (empty: none) and the file.

    Records are numbered from 1 in file order, an optional first-line header
    ``{"slot_types": [...]}`` included (it is record 1), and messages name that number.
    """
    file = _source(str(path), "slot file")
    records = _read_rows(file, encoding)
    numbers = list(range(1, len(records) + 1))
    # a file whose own fields include "slot_types" cannot have the header
    used = (text_field, slots_field, id_field)
    declared = None if _HEADER in used else _header(records, file)
    if declared is not None:
        records, numbers = records[1:], numbers[1:]
    allowed, how = _declared_types(declared, allowed_types, file)
    ids = _record_ids(records, numbers, id_field, file)
    rows = []
    for ident, n, rec in zip(ids, numbers, records, strict=True):
        where = f"{file.name}: record {n}"
        if not isinstance(rec.get(text_field), str):
            raise W2SError(f"{where} has no string field '{text_field}'",
                           "add it, or set text_column to the field holding the text")
        rows.append((ident, " ".join(rec[text_field].split()),
                     _pairs(rec.get(slots_field), where, slots_field, allowed, how)))
    return rows, tuple(sorted(allowed or ())), file


def _header(records: list[dict[str, Any]], file: Path) -> list[str] | None:
    """The slot types the first line declares (``{"slot_types": [...]}`` alone), else None."""
    for n, rec in enumerate(records, 1):
        if n > 1 and set(rec) == {_HEADER}:
            raise W2SError(f"{file.name}: record {n} declares slot_types, but only line 1 may",
                           'move the {"slot_types": [...]} header to the first line')
    if not records or _HEADER not in records[0]:
        return None
    head = records[0]
    if len(head) > 1:
        raise W2SError(f"{file.name}: the slot_types header on line 1 has other fields "
                       f"({', '.join(sorted(k for k in head if k != _HEADER))})",
                       'put {"slot_types": [...]} alone on line 1, the first record after it')
    types = head[_HEADER]
    if not (isinstance(types, list) and types
            and all(isinstance(t, str) and t.strip() for t in types)):
        raise W2SError(f"{file.name}: the slot_types header must list slot type names",
                       'write {"slot_types": ["date", "time", ...]} on line 1')
    return [t.strip() for t in types]


def _declared_types(declared: list[str] | None, allowed_types: Sequence[str] | None,
                    file: Path) -> tuple[set[str] | None, str]:
    """The allowed slot types (None: any) and where they were declared, for the fix."""
    if declared is None:
        return (None if allowed_types is None else set(allowed_types)), "allowed_types"
    if allowed_types is not None and set(allowed_types) != set(declared):
        raise W2SError(f"{file.name}: its slot_types header differs from allowed_types",
                       "declare the slot types in one place only")
    return set(declared), f"the slot_types header on line 1 of {file.name}"


def _record_ids(records: list[dict[str, Any]], numbers: list[int], id_field: str | None,
                file: Path) -> list[str]:
    """Each record's id: ``id_field`` (named: every record must have one, all different,
    since it is the user's promise), else "id" when every record has a unique one (as a
    classification file), else ``{stem}-{record number}``."""
    col = id_field or "id"
    keys = [label_key(r.get(col)) for r in records]
    dup = repeats(keys)
    if id_field is None and (None in keys or dup):
        return [f"{file.stem}-{n}" for n in numbers]
    fix = "make it unique in every record, or leave data.id_column unset to number the records"
    for n, key in zip(numbers, keys, strict=True):
        if key is None:
            raise W2SError(f"{file.name}: record {n} has no id in '{col}'", fix)
    if dup:
        first = keys.index(keys[dup[0]])
        raise W2SError(f"{file.name}: record {numbers[dup[0]]} repeats the id {keys[dup[0]]!r} "
                       f"of record {numbers[first]} ('{col}')", fix)
    return keys  # type: ignore[return-value]  # no None left


def _pairs(slots: Any, where: str, slots_field: str, allowed: set[str] | None,
           how: str) -> Pairs:
    if not isinstance(slots, list):
        raise W2SError(f"{where} has no list field '{slots_field}'",
                       'add "slots": [] (empty when the text has no slot) or set label_column')
    pairs = []
    for slot in slots:
        if not (isinstance(slot, dict) and isinstance(slot.get("type"), str)
                and isinstance(slot.get("filler"), str)
                and slot["type"].strip() and slot["filler"].strip()):
            raise W2SError(f"{where}: slot {slot!r} lacks a non-empty 'type' or 'filler'",
                           'write each slot as {"type": "...", "filler": "..."}')
        slot_type, filler = slot["type"].strip(), " ".join(slot["filler"].split())
        if allowed is not None and slot_type not in allowed:
            # a typo (TOLOC.CITY for toloc.city) would otherwise become a new slot type
            lower = {a.lower(): a for a in allowed}
            near = difflib.get_close_matches(slot_type.lower(), list(lower), n=1)
            hint = f" (did you mean '{lower[near[0]]}'?)" if near else ""
            raise W2SError(f"{where}: unknown slot type '{slot_type}'{hint}",
                           f"fix it, or add it to {how} (declared: {', '.join(sorted(allowed))})")
        pairs.append((slot_type, filler))
    return pairs
