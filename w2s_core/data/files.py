"""A user's own labelled file (CSV, TSV, JSONL or a JSON list of objects) as a dataset.

Read with the standard library rather than pandas/datasets so every way a file can be
wrong becomes one precise W2SError line that names the file and the fix. Texts are
deduplicated like the built-in data (so a text never lands in two splits), and given
teachers' weak labels (``weak_labels``, in the file or in ``weak_labels_path``) follow the
kept rows; ``TextDataset.info`` records what loading dropped.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from w2s_core.data.builtin import _norm, dedupe
from w2s_core.data.schema import DataConfig, TextDataset
from w2s_core.data.weak_labels import (
    align_by_id,
    label_key,
    parse_weak_labels,
    repeats,
    teacher_columns,
)
from w2s_core.errors import W2SError

SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")
_ENCODING_FIX = ("set its encoding, e.g. encoding: cp1252 (Windows) or encoding: mac_roman "
                 "(old Mac), or re-save it as UTF-8")


def _read_text(file: Path, encoding: str = "utf-8") -> str:
    raw = file.read_bytes()
    try:
        codec = codecs.lookup(encoding).name
    except (LookupError, TypeError):
        raise W2SError(f"unknown encoding {encoding!r}", "set encoding: to a codec name such "
                       "as utf-8, cp1252, latin-1 or mac_roman") from None
    try:  # "utf-8" also accepts the BOM Excel writes
        return raw.decode("utf-8-sig" if codec == "utf-8" else codec)
    except LookupError:  # a codec that is not a text encoding, e.g. base64
        raise W2SError(f"{encoding!r} is not a text encoding", "set encoding: to a codec "
                       "name such as utf-8, cp1252, latin-1 or mac_roman") from None
    except UnicodeDecodeError as exc:
        raise W2SError(f"{file.name} is not {encoding} text (byte 0x{raw[exc.start]:02x} at "
                       f"offset {exc.start})", _ENCODING_FIX) from None


def _read_rows(file: Path, encoding: str = "utf-8") -> list[dict[str, Any]]:
    text = _read_text(file, encoding)
    suffix = file.suffix.lower()
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(text, newline=""),
                                delimiter="\t" if suffix == ".tsv" else ",")
        try:
            rows = list(reader)
        except csv.Error as exc:
            raise W2SError(f"{file.name}: malformed CSV near line {reader.line_num} ({exc})",
                           "fix the quoting on that line") from None
        if reader.fieldnames is None:
            raise W2SError(f"{file} is empty", "add a header row and at least two classes of rows")
        return rows
    if suffix == ".json" and text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise W2SError(f"{file.name}: invalid JSON at line {exc.lineno} ({exc.msg})",
                           "fix the JSON or save one object per line as .jsonl") from None
        rows = data
    else:
        rows = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise W2SError(f"{file.name}: line {lineno} is not valid JSON ({exc.msg})",
                               "write one JSON object per line") from None
    if not all(isinstance(r, dict) for r in rows):
        raise W2SError(f"{file.name}: every record must be a JSON object",
                       'write records like {"text": "...", "label": "..."}')
    return rows


def _class_order(keys: set[str]) -> list[str]:
    """Numeric labels sort as numbers (so 0..C-1 keep their meaning), others as strings."""
    try:
        return [str(v) for v in sorted(int(k) for k in keys)]
    except ValueError:
        return sorted(keys)



def _source(path: str, what: str) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        raise W2SError(f"{what} not found: {file}", "check the path (relative paths start "
                       "from the current directory)")
    if file.suffix.lower() not in SUFFIXES:
        raise W2SError(f"{file.name}: unsupported file type '{file.suffix}'",
                       f"save it as one of {', '.join(SUFFIXES)}")
    return file


def _ids(rows: list[dict[str, Any]], columns: list[str], id_column: str | None,
         file: Path) -> tuple[list[str], str | None]:
    """Each row's id and the column they came from (None: numbered ``{stem}-{row}``).

    Unset ``id_column`` quietly falls back to row numbers when "id" is absent, has gaps or
    repeats; a named one is the user's promise, so the same flaws are errors.
    """
    col = id_column or "id"
    keys = [label_key(r.get(col)) for r in rows]
    repeated = repeats(keys)
    empty = [i for i, k in enumerate(keys) if k is None]
    if col in columns and not empty and not repeated:
        return keys, col  # type: ignore[return-value]
    if id_column is None:
        return [f"{file.stem}-{i}" for i in range(len(rows))], None
    if col not in columns:
        raise W2SError(f"{file.name} has no id column '{col}' (columns: "
                       f"{', '.join(map(str, columns))})",
                       "pass id_column=<one of those>, or leave it unset to number the rows")
    if empty:
        raise W2SError(f"{file.name}: {len(empty)} rows have an empty id in '{col}' (first: "
                       f"row {empty[0] + 1})", "give every row an id, or leave id_column unset")
    raise W2SError(f"{file.name}: id column '{col}' repeats {len({keys[i] for i in repeated})} "
                   f"ids (first: {keys[repeated[0]]!r} again in row {repeated[0] + 1})",
                   "make the ids unique, or leave id_column unset")


def _dedupe(texts: list[str], keys: list[str]) -> tuple[list[int], dict[str, int]]:
    """Kept row indices (in file order) and how many rows each rule dropped.

    ``builtin.dedupe`` decides, so a user file and the built-in data follow one rule; the
    counts are recomputed from the same ``_norm`` key for ``TextDataset.info``.
    """
    rows = [(i, t, k) for i, (t, k) in enumerate(zip(texts, keys, strict=True))]
    kept = [i for i, _, _ in dedupe(rows)]
    norms = [_norm(t) for t in texts]
    labels_of: defaultdict[str, set[str]] = defaultdict(set)
    for norm, key in zip(norms, keys, strict=True):
        labels_of[norm].add(key)
    conflicting = sum(1 for n in norms if n and len(labels_of[n]) > 1)  # every copy goes
    link_only = sum(1 for n in norms if not n)  # nothing left once links/"RT @x:" are cut
    return kept, {"duplicates_dropped": len(texts) - len(kept) - conflicting - link_only,
                  "conflicting_dropped": conflicting, "link_only_dropped": link_only}


def _given_teachers(cfg: DataConfig, file: Path, rows: list[dict[str, Any]], kept: list[int],
                    ids: list[str], id_col: str | None, class_names: list[str],
                    gold_columns: tuple[str, str], info: dict[str, Any]) -> dict[str, np.ndarray]:
    """``cfg.weak_labels`` parsed for the kept rows, from the data file or weak_labels_path."""
    spec = cfg.weak_labels
    if not spec:
        raise W2SError("weak_labels_path is set but weak_labels names no teacher",
                       "name each teacher's column(s): weak_labels: {name: column}")
    kept_ids = [ids[i] for i in kept]
    if not cfg.weak_labels_path:
        for name, cols in teacher_columns(spec, class_names).items():
            gold = [c for c in cols if c in gold_columns]
            if gold:  # reading the text or the gold label is a configuration slip
                raise W2SError(f"weak label '{name}' reads the data column '{gold[0]}'",
                               "name the column holding that teacher's own labels")
        where = [f"row {i + 1}" + (f", id {ids[i]!r}" if id_col else "") for i in kept]
        return parse_weak_labels([rows[i] for i in kept], spec, class_names,
                                 source=file.name, where=where)
    if id_col is None:
        raise W2SError(f"weak_labels_path is keyed by id, but {file.name} has no usable id "
                       "column ('id' missing, with empty values or repeats)",
                       "add a unique id column to both files, or set id_column to it")
    pfile = _source(cfg.weak_labels_path, "weak-label file")
    prows = _read_rows(pfile, cfg.encoding)
    if not prows:
        raise W2SError(f"{pfile} has no data rows", "add one row of weak labels per example")
    position, info["extra_prediction_rows"] = align_by_id(prows, kept_ids, id_col,
                                                          source=pfile.name)
    where = [f"row {p + 1}, id {i!r}" for p, i in zip(position, kept_ids, strict=True)]
    return parse_weak_labels([prows[p] for p in position], spec, class_names,
                             source=pfile.name, where=where)


def load_file(cfg: DataConfig) -> TextDataset:
    """Load ``cfg.path`` with ``cfg.text_column`` (default "text") and ``cfg.label_column``
    (default "label"), decoded with ``cfg.encoding``. Class ids follow the sorted unique
    labels: numeric labels keep their order (0, 1, 2 or 1, 5, 10), string labels are sorted
    alphabetically. Duplicate texts keep their first row; texts seen with conflicting labels
    are dropped. ``.weak`` holds the given teachers (``cfg.weak_labels``) for the kept rows.
    """
    if not cfg.path:
        raise W2SError("dataset 'file' needs a path", "pass path=<your .csv or .jsonl file>")
    file = _source(cfg.path, "data file")
    rows = _read_rows(file, cfg.encoding)
    if not rows:
        raise W2SError(f"{file} has no data rows", "add rows with a text and a label")
    text_col = cfg.text_column or "text"
    label_col = cfg.label_column or "label"
    columns = list(dict.fromkeys(k for r in rows for k in r if k is not None))
    for role, col, opt in (("text", text_col, "text_column"), ("label", label_col,
                                                              "label_column")):
        if col not in columns:
            raise W2SError(f"{file.name} has no {role} column '{col}' (columns: "
                           f"{', '.join(map(str, columns))})", f"pass {opt}=<one of those>")
    texts = [str(r.get(text_col) or "").strip() for r in rows]
    empty = [i for i, t in enumerate(texts) if not t]
    if empty:
        raise W2SError(f"{file.name}: {len(empty)} of {len(rows)} rows have an empty "
                       f"'{text_col}' (first: row {empty[0] + 1})", "fill or delete those rows")
    keys = [label_key(r.get(label_col)) for r in rows]
    missing = [i for i, k in enumerate(keys) if k is None]
    if missing:
        raise W2SError(f"{file.name}: {len(missing)} rows have an empty '{label_col}' "
                       f"(first: row {missing[0] + 1})", "label or delete those rows")
    ids, id_col = _ids(rows, columns, cfg.id_column, file)
    kept, dropped = _dedupe(texts, keys)  # type: ignore[arg-type]
    if not kept:
        raise W2SError(f"{file.name}: no row is left after dropping duplicate, conflicting "
                       f"and link-only texts ({dropped})", "check the text column")
    class_names = _class_order({keys[i] for i in kept})  # type: ignore[misc]
    if len(class_names) < 2:
        after = " after dropping duplicate texts" if len(kept) < len(rows) else ""
        raise W2SError(f"{file.name}: only one class ({class_names[0]!r}) in "
                       f"'{label_col}'{after}",
                       "a classification task needs rows of at least two labels")
    index = {k: i for i, k in enumerate(class_names)}
    labels = np.array([index[keys[i]] for i in kept], dtype=np.int64)  # type: ignore[index]
    info: dict[str, Any] = {"rows": len(rows), "kept": len(kept), **dropped,
                            "id_column": id_col}
    weak: dict[str, np.ndarray] = {}
    if cfg.weak_labels or cfg.weak_labels_path:
        weak = _given_teachers(cfg, file, rows, kept, ids, id_col, class_names,
                               (text_col, label_col), info)
        info["weak_labels"] = {n: "hard" if np.isin(w, (0.0, 1.0)).all() else "soft"
                               for n, w in weak.items()}
    return TextDataset(cfg.name, [texts[i] for i in kept], labels, tuple(class_names),
                       [ids[i] for i in kept], weak=weak, info=info)
