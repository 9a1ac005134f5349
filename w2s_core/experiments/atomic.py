"""Atomic JSON and parquet files: every write goes to a temp file renamed over the final name
(``os.replace``), so an interrupted sweep never leaves a half-written file under a final name;
a torn or corrupt file is named on read with its fix. Strict JSON: NaN is written as null."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from w2s_core.errors import W2SError


def _atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        # Ctrl-C or disk full mid-write: drop the temp file, keep whatever was there before.
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    def _w(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            # no fsync: the rename already makes Ctrl-C/crash safe, and a file torn by a power
            # cut is detected on read (corrupt JSON → named, skipped, recomputed)
            json.dump(nan_to_none(obj), f, indent=1, sort_keys=True, default=json_default)

    _atomic(path, _w)


def write_parquet(path: Path, df: pd.DataFrame) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    _atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise W2SError(f"corrupt JSON file {path} ({e.__class__.__name__})",
                       "delete it; the sweep recomputes it on the next run") from None


def read_parquet(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    try:
        return pq.read_table(path, columns=columns).to_pandas()
    except FileNotFoundError:
        raise
    except (pa.ArrowInvalid, OSError) as e:
        raise W2SError(f"corrupt or truncated parquet file {path} ({str(e)[:80]})",
                       "delete it; the sweep recomputes it on the next run") from None



def nan_to_none(obj: Any) -> Any:
    """Strict JSON has no NaN: an undefined metric (e.g. PGR with ceiling ≤ floor) is null."""
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    if isinstance(obj, (float, np.floating)) and not np.isfinite(obj):
        return None
    return obj
