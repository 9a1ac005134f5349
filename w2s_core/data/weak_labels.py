"""Bring-your-own teachers: a user's weak labels, parsed into (N, C) soft labels.

Pure functions over already-read rows (dicts), so the same checks serve weak-label columns
in the data file and a separate predictions file. Every way a column can be wrong is one
W2SError line naming the teacher, the column, how many rows and the first one, and the fix:
a silently misread weak label would corrupt every result computed from it.

A teacher is given as one column (a hard label, or for a binary task P(class 1)) or as one
probability column per class, in class order.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from w2s_core.errors import W2SError

SUM_TOL = 1e-3  # per-class probabilities are usually rounded in the file; 1e-3 allows that


def label_key(value: Any) -> str | None:
    """Canonical string for a label or id: ints, integral floats and numeric strings agree.

    Shared by the gold labels, the weak labels and the ids, so a teacher's ``1`` (CSV text)
    matches a gold ``1.0`` (JSON number); ``None`` means missing.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    key = str(value).strip()
    return key or None


def repeats(keys: Sequence[str | None]) -> list[int]:
    """Indices of the rows whose key already occurred earlier (missing keys ignored)."""
    seen: set[str] = set()
    out = []
    for i, key in enumerate(keys):
        if key is not None:
            if key in seen:
                out.append(i)
            seen.add(key)
    return out


def _number(value: Any) -> float | None:
    """A probability cell as a float; ``None`` when it is not a number (booleans are not)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _reserved_names() -> list[str]:
    # The model registry is torch-free (only ModelSpec data), so the data layer may read it.
    from w2s_core.models.registry import MODELS

    return MODELS.names()


def teacher_columns(spec: Mapping[str, Any], class_names: Sequence[str], *,
                    reserved: Collection[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Validate ``weak_labels`` (name → column or per-class columns) into name → columns.

    A name may not be a built-in model's name (default ``reserved``): results are keyed by
    teacher name, so a given ``minilm-l6`` would be confused with the trained one.
    """
    if not isinstance(spec, Mapping):
        raise W2SError(f"weak_labels must map teacher names to columns, got {spec!r}",
                       "write weak_labels: {my_teacher: its_column}")
    taken = {n.casefold() for n in (_reserved_names() if reserved is None else reserved)}
    n_classes = len(class_names)
    out: dict[str, tuple[str, ...]] = {}
    for name, value in spec.items():
        if not isinstance(name, str) or not name.strip():
            raise W2SError(f"weak_labels has an empty or non-text teacher name ({name!r})",
                           "name each teacher, e.g. weak_labels: {llm_judge: its_column}")
        if name.casefold() in taken:
            raise W2SError(f"weak label name '{name}' is also a built-in model's name",
                           f"rename the teacher (e.g. '{name}-given') so its results cannot "
                           "be mixed up with the trained model's")
        columns = (value,) if isinstance(value, str) else value
        if not isinstance(columns, list | tuple) or not columns or not all(
                isinstance(c, str) and c for c in columns):
            raise W2SError(f"weak label '{name}': expected a column name or a list of "
                           f"{n_classes} columns, got {value!r}",
                           f"write {name}: a_column, or {name}: [one column per class]")
        if not isinstance(value, str) and len(columns) != n_classes:  # a list means per class
            raise W2SError(f"weak label '{name}' lists {len(columns)} columns but the task "
                           f"has {n_classes} classes ({', '.join(class_names)})",
                           "give one probability column per class in that order, or one "
                           "column holding a hard label")
        if len(set(columns)) != len(columns):
            raise W2SError(f"weak label '{name}' names a column twice ({list(columns)})",
                           "give a different probability column for each class")
        out[name] = tuple(columns)
    return out


def _first(name: str, col: str, source: str, bad: list[int], where: Sequence[str],
           what: str) -> str:
    return (f"weak label '{name}', column '{col}' in {source}: {len(bad)} {what} "
            f"(first: {where[bad[0]]})")


def _missing(name: str, col: str, values: list[Any], source: str,
             where: Sequence[str]) -> None:
    bad = [i for i, v in enumerate(values) if label_key(v) is None]
    if bad:
        raise W2SError(_first(name, col, source, bad, where, "missing rows"),
                       "give every row a weak label, or drop this teacher")


def _probabilities(name: str, col: str, values: list[Any], source: str,
                   where: Sequence[str], fix: str) -> np.ndarray:
    nums = [_number(v) for v in values]
    bad = [i for i, x in enumerate(nums) if x is None]
    if bad:
        raise W2SError(_first(name, col, source, bad, where, "values are not numbers")
                       + f", {values[bad[0]]!r}", "write probabilities as numbers like 0.25")
    p = np.array(nums, dtype=np.float64)
    bad = np.flatnonzero(~((p >= 0) & (p <= 1))).tolist()  # also rejects nan
    if bad:
        raise W2SError(_first(name, col, source, bad, where, "probabilities outside [0, 1]")
                       + f", {values[bad[0]]!r}", fix)
    return p


def _single_column(name: str, col: str, values: list[Any], class_names: Sequence[str],
                   source: str, where: Sequence[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(class_names)}
    keys = [label_key(v) for v in values]
    not_class = [i for i, k in enumerate(keys) if k not in index]
    if not not_class:  # a hard label per row
        return np.eye(len(class_names))[[index[k] for k in keys]]  # type: ignore[index]
    if len(class_names) == 2:
        numeric = [_number(v) is not None for v in values]
        if all(numeric):  # P(class 1); class labels 0/1 among them mean the same
            p = _probabilities(name, col, values, source, where,
                               f"a binary column holds a class ({', '.join(class_names)}) "
                               f"or P('{class_names[1]}') in [0, 1] per row")
            return np.column_stack([1.0 - p, p])
        if all(numeric[i] for i in not_class):  # e.g. "pos" next to 0.8
            raise W2SError(_first(name, col, source, not_class, where, "numbers among class "
                                  "names") + f", {values[not_class[0]]!r}",
                           f"write either class names or P('{class_names[1]}') in every row")
        not_class = [i for i in not_class if not numeric[i]]  # the cells that fit neither
    soft = (f"P('{class_names[1]}') in [0, 1]" if len(class_names) == 2 else
            f"one probability column per class, {name}: [{', '.join(class_names)} columns]")
    raise W2SError(_first(name, col, source, not_class, where, "values are not a class")
                   + f", {values[not_class[0]]!r}; classes: {', '.join(class_names)}",
                   f"use one of the classes, or give {soft}")


def _per_class(name: str, cols: tuple[str, ...], rows: Sequence[Mapping[str, Any]],
               source: str, where: Sequence[str]) -> np.ndarray:
    mat = np.empty((len(rows), len(cols)))
    for j, col in enumerate(cols):
        values = [r.get(col) for r in rows]
        _missing(name, col, values, source, where)
        mat[:, j] = _probabilities(name, col, values, source, where,
                                   "give probabilities between 0 and 1 (percentages? "
                                   "divide by 100)")
    sums = mat.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > SUM_TOL).tolist()
    if bad:
        raise W2SError(f"weak label '{name}' in {source}: {len(bad)} rows' class "
                       f"probabilities do not sum to 1 (first: {where[bad[0]]}, sum "
                       f"{sums[bad[0]]:.6g})",
                       f"make {', '.join(cols)} sum to 1 in every row (within {SUM_TOL:g})")
    return mat / sums[:, None]  # exact rows, after the tolerance allowed for rounding


def parse_weak_labels(rows: Sequence[Mapping[str, Any]], spec: Mapping[str, Any],
                      class_names: Sequence[str], *, source: str = "the file",
                      where: Sequence[str] | None = None,
                      reserved: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """Teacher name → (len(rows), C) float64 soft labels, rows summing to 1.

    ``class_names`` are the canonical gold keys (see ``label_key``) in class order;
    ``where`` describes each row in messages (default "row i", 1-based); ``reserved`` are
    names a teacher may not take (default: the built-in models).
    """
    teachers = teacher_columns(spec, class_names, reserved=reserved)
    where = [f"row {i + 1}" for i in range(len(rows))] if where is None else where
    columns = list(dict.fromkeys(str(k) for r in rows for k in r))
    out: dict[str, np.ndarray] = {}
    for name, cols in teachers.items():
        for col in cols:
            if col not in columns:
                raise W2SError(f"weak label '{name}': no column '{col}' in {source} "
                               f"(columns: {', '.join(columns)})",
                               f"set weak_labels: {{{name}: <one of those columns>}}")
        if len(cols) == 1:
            values = [r.get(cols[0]) for r in rows]
            _missing(name, cols[0], values, source, where)
            out[name] = _single_column(name, cols[0], values, class_names, source, where)
        else:
            out[name] = _per_class(name, cols, rows, source, where)
    return out


def align_by_id(rows: Sequence[Mapping[str, Any]], ids: Sequence[str], id_column: str, *,
                source: str) -> tuple[list[int], int]:
    """Index into ``rows`` of each of ``ids``' predictions, and how many rows were unused.

    Every id needs exactly one row: a duplicate would be an arbitrary choice between two
    predictions, a missing one would leave an example without a teacher label. Extra rows
    (e.g. predictions for examples the dataset dropped as duplicates) are ignored.
    """
    columns = list(dict.fromkeys(str(k) for r in rows for k in r))
    if id_column not in columns:
        raise W2SError(f"{source} has no id column '{id_column}' (columns: "
                       f"{', '.join(columns)})",
                       "add the data file's ids to it, or set id_column to the shared column")
    keys = [label_key(r.get(id_column)) for r in rows]
    empty = [i for i, k in enumerate(keys) if k is None]
    if empty:
        raise W2SError(f"{source}: {len(empty)} rows have an empty '{id_column}' (first: row "
                       f"{empty[0] + 1})", "give every prediction the id of its example")
    repeated = repeats(keys)
    if repeated:
        raise W2SError(f"{source}: {len({keys[i] for i in repeated})} ids appear more than "
                       f"once in '{id_column}' (first: {keys[repeated[0]]!r} again in row "
                       f"{repeated[0] + 1})", "keep one prediction row per example")
    position = {k: i for i, k in enumerate(keys)}
    missing = [i for i in ids if i not in position]
    if missing:
        raise W2SError(f"{source}: {len(missing)} of {len(ids)} examples have no prediction "
                       f"(first id: {missing[0]!r})",
                       f"add a row for every example of the data file, keyed by '{id_column}'")
    return [position[i] for i in ids], len(rows) - len(ids)
