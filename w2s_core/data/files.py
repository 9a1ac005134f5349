"""A user's own labelled file (CSV, TSV, JSONL or a JSON list of objects) as a dataset.

Read with the standard library rather than pandas/datasets so every way a file can be
wrong becomes one precise W2SError line that names the file and the fix.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from w2s_core.data.schema import DataConfig, TextDataset
from w2s_core.errors import W2SError

SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")


def _read_text(file: Path) -> str:
    raw = file.read_bytes()
    try:
        return raw.decode("utf-8-sig")  # tolerate the BOM Excel writes
    except UnicodeDecodeError as exc:
        raise W2SError(f"{file} is not UTF-8 (bad byte at offset {exc.start})",
                       "re-save it as UTF-8 (e.g. 'CSV UTF-8' in Excel)") from None


def _read_rows(file: Path) -> list[dict[str, Any]]:
    text = _read_text(file)
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


def _label_key(value: Any) -> str | None:
    """Canonical string for a label: ints, integral floats and numeric strings agree."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    key = str(value).strip()
    return key or None


def _class_order(keys: set[str]) -> list[str]:
    """Numeric labels sort as numbers (so 0..C-1 keep their meaning), others as strings."""
    try:
        return [str(v) for v in sorted(int(k) for k in keys)]
    except ValueError:
        return sorted(keys)


def load_file(cfg: DataConfig) -> TextDataset:
    """Load ``cfg.path`` with ``cfg.text_column`` (default "text") and ``cfg.label_column``
    (default "label"). Class ids follow the sorted unique labels: numeric labels keep their
    order (0, 1, 2 or 1, 5, 10), string labels are sorted alphabetically.
    """
    if not cfg.path:
        raise W2SError("dataset 'file' needs a path", "pass path=<your .csv or .jsonl file>")
    file = Path(cfg.path).expanduser()
    if not file.is_file():
        raise W2SError(f"data file not found: {file}", "check the path (relative paths start "
                       "from the current directory)")
    if file.suffix.lower() not in SUFFIXES:
        raise W2SError(f"{file.name}: unsupported file type '{file.suffix}'",
                       f"save it as one of {', '.join(SUFFIXES)}")
    rows = _read_rows(file)
    if not rows:
        raise W2SError(f"{file} has no data rows", "add rows with a text and a label")
    text_col = cfg.text_column or "text"
    label_col = cfg.label_column or "label"
    columns = list(dict.fromkeys(k for r in rows for k in r))
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
    keys = [_label_key(r.get(label_col)) for r in rows]
    missing = [i for i, k in enumerate(keys) if k is None]
    if missing:
        raise W2SError(f"{file.name}: {len(missing)} rows have an empty '{label_col}' "
                       f"(first: row {missing[0] + 1})", "label or delete those rows")
    class_names = _class_order(set(keys))  # type: ignore[arg-type]
    if len(class_names) < 2:
        raise W2SError(f"{file.name}: only one class ({class_names[0]!r}) in '{label_col}'",
                       "a classification task needs rows of at least two labels")
    index = {k: i for i, k in enumerate(class_names)}
    labels = np.array([index[k] for k in keys], dtype=np.int64)  # type: ignore[index]
    ids = [str(r.get("id", "")) for r in rows]
    if "id" not in columns or any(not i for i in ids) or len(set(ids)) != len(ids):
        ids = [f"{file.stem}-{i}" for i in range(len(rows))]
    return TextDataset(cfg.name, texts, labels, tuple(class_names), ids)
