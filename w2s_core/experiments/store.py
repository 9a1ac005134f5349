"""The workspace: where experiments keep their per-example predictions, configs and metrics.

Format (documented for users in docs/STORAGE.md): JSON for configs and metrics, parquet for
per-example predictions, every write atomic (temp file + ``os.replace``) so an interrupted
sweep never leaves a half-written file under a final name. A run is complete exactly when its
``metrics.json`` exists; that file is written last. No pickle anywhere. The atomic file helpers
themselves are in ``atomic.py``; callers reach them through this module (``store.read_json``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from w2s_core import catalog
from w2s_core.errors import W2SError
from w2s_core.experiments.atomic import (
    json_default,
    nan_to_none,
    read_json,
    read_parquet,
    write_json,
    write_parquet,
)
from w2s_core.experiments.runspec import OPTION_COLUMNS, RunSpec, config_hash

EXPERIMENTS = "experiments"
RUN_INDEX = "runs.parquet"


# ---------------------------------------------------------------- layout
@dataclass(frozen=True)
class ExperimentDir:
    """Paths inside one experiment's folder."""

    root: Path

    @property
    def id(self) -> str:
        return self.root.name

    @property
    def meta(self) -> Path:
        return self.root / "experiment.json"

    @property
    def examples(self) -> Path:
        return self.root / "examples.parquet"

    @property
    def progress(self) -> Path:
        return self.root / "progress.jsonl"

    @property
    def run_index(self) -> Path:
        return self.root / RUN_INDEX

    def teacher_preds(self, stem: str) -> Path:
        """``stem`` from ``teacher_stem``: never a raw teacher name, which may be a path."""
        return self.root / "teachers" / f"{stem}.parquet"

    def teacher_meta(self, stem: str) -> Path:
        return self.root / "teachers" / f"{stem}.json"

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def run_complete(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / "metrics.json").exists()

    def run_done(self, spec: RunSpec) -> bool:
        """Complete and computed by the method's current revision: a sweep redoes the rest."""
        now = catalog.revision(spec.task, spec.method, spec.options)
        if not self.run_complete(spec.run_id) or now == 1:  # never revised: no config read
            return self.run_complete(spec.run_id)
        stored = read_json(self.run_dir(spec.run_id) / "config.json").get("revision") or 1
        return int(stored) >= now


def teacher_stem(name: str, identity: dict[str, Any]) -> str:
    """File stem of a teacher's cache: a slug of its name plus a hash of its full identity
    (model, mode, training config, data replicate, resolved precision). A local-path teacher
    (``/models/x``, ``../x``) thus stays inside the workspace, and a teacher trained another
    way never reuses another's predictions."""
    slug = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name).strip("-.")
    return f"{slug[-40:].lstrip('-.') or 'teacher'}-{config_hash(identity)[:10]}"


def dataset_label(data: dict[str, Any]) -> str:
    """How an experiment's data is named to a user: a user file by its file name (not the
    generic dataset name ``file``), a built-in data set by its registry name."""
    if data.get("name") == "file" and data.get("path"):
        return Path(str(data["path"])).name
    return str(data.get("name"))


def experiment_dir(workspace: Path, exp_id: str) -> ExperimentDir:
    if not exp_id or "/" in exp_id or "\\" in exp_id or exp_id.startswith("."):
        # ids come from URLs in the dashboard: never let one escape the workspace
        raise W2SError(f"invalid experiment id {exp_id!r}", "pick one listed by `w2s report`")
    return ExperimentDir(Path(workspace) / EXPERIMENTS / exp_id)


def iter_experiments(workspace: Path) -> Iterator[ExperimentDir]:
    base = Path(workspace) / EXPERIMENTS
    if not base.is_dir():
        return
    for d in sorted(base.iterdir()):
        if d.is_dir() and (d / "experiment.json").exists():
            yield ExperimentDir(d)


# ---------------------------------------------------------------- per-example tables
def prob_columns(n_classes: int, prefix: str = "p") -> list[str]:
    return [f"{prefix}_{c}" for c in range(n_classes)]


def predictions_frame(ids: list[str], gold: np.ndarray, probs: np.ndarray,
                      alpha: np.ndarray | None = None,
                      split: str | list[str] | None = None,
                      weak: np.ndarray | None = None) -> pd.DataFrame:
    """example_id, [split], gold, p_0..p_{C-1}, [alpha_0..], [w_0..] (float32). ``weak``: the
    labels the student was trained toward, made the same way on these examples."""
    cols: dict[str, Any] = {"example_id": ids}
    if split is not None:
        cols["split"] = split if isinstance(split, list) else [split] * len(ids)
    cols["gold"] = np.asarray(gold, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float32)
    for c, name in enumerate(prob_columns(probs.shape[1])):
        cols[name] = probs[:, c]
    for prefix, arr in (("alpha", alpha), ("w", weak)):
        if arr is not None:
            arr = np.asarray(arr, dtype=np.float32)
            for c, name in enumerate(prob_columns(arr.shape[1], prefix)):
                cols[name] = arr[:, c]
    return pd.DataFrame(cols)


def probs_of(df: pd.DataFrame, prefix: str = "p") -> np.ndarray:
    cols = [c for c in df.columns if c.startswith(prefix + "_") and c[len(prefix) + 1:].isdigit()]
    cols.sort(key=lambda c: int(c.rsplit("_", 1)[1]))
    return df[cols].to_numpy(dtype=np.float64)


# ---------------------------------------------------------------- runs
def save_run(exp: ExperimentDir, run_id: str, config: dict[str, Any], preds: pd.DataFrame,
             metrics: dict[str, Any], extra: dict[str, pd.DataFrame] | None = None) -> None:
    """``extra``: further parquet files of the run (name → frame), written before metrics.json
    so a run that has its metrics has all of them."""
    d = exp.run_dir(run_id)
    # a stale run being recomputed must read as incomplete until its new metrics are written,
    # or an interrupt would leave the new config beside the old results
    (d / "metrics.json").unlink(missing_ok=True)
    exp.run_index.unlink(missing_ok=True)  # the index is derived: stale once a run is added
    write_json(d / "config.json", config)
    write_parquet(d / "predictions.parquet", preds)
    for name, df in (extra or {}).items():
        write_parquet(d / name, df)
    write_json(d / "metrics.json", nan_to_none(metrics))  # last: marks the run complete


def load_runs(exp: ExperimentDir, use_index: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """One row per complete, current run (config fields + metrics) and a list of warnings.

    Uses the run index when allowed and newer than every run folder, else reads the run
    folders; a corrupt run is skipped with a warning that names it, the rest still loads.
    Stale runs (``split_stale``) are left out with a warning.
    """
    df, warns = _load_rows(exp, use_index)
    df, stale = split_stale(df)
    return df, warns + stale


def _load_rows(exp: ExperimentDir, use_index: bool) -> tuple[pd.DataFrame, list[str]]:
    runs_root = exp.root / "runs"
    warns: list[str] = []
    if not runs_root.is_dir():
        return pd.DataFrame(), warns
    if use_index and exp.run_index.exists() \
            and exp.run_index.stat().st_mtime >= runs_root.stat().st_mtime:
        try:
            return read_parquet(exp.run_index), warns
        except W2SError as e:
            warns.append(str(e))
    rows = []
    for d in sorted(runs_root.iterdir()):
        if not (d / "metrics.json").exists():
            continue
        try:
            cfg = read_json(d / "config.json")
            met = read_json(d / "metrics.json")
        except (W2SError, FileNotFoundError) as e:
            warns.append(f"run {d.name} skipped: {e}")
            continue
        rows.append(run_row(cfg, met))
    return pd.DataFrame(rows), warns


# the words every stale-run warning carries (the dashboard shows these apart from unreadable runs)
STALE = "computed by an older revision of the method"


def split_stale(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Runs whose method has been revised since they were computed (``catalog``'s revision,
    bumped by a fix that changes results) are left out, with one warning per method: their
    run id is unchanged, so the next sweep of the same config recomputes them in place."""
    if df.empty or "method" not in df:
        return df, []
    # an index written before revisions existed has no column: those runs are revision 1
    rev = df["revision"].fillna(1) if "revision" in df else pd.Series(1, index=df.index)
    task = df["task"].fillna("classification") if "task" in df else \
        pd.Series("classification", index=df.index)
    # a conditional bump reads the run's options from their opt_<name> columns
    opts = df[[c for c in df.columns if c.startswith("opt_")]].rename(columns=lambda c: c[4:])
    now = [catalog.revision(str(t), str(m), o) for t, m, o in
           zip(task, df["method"], opts.to_dict("records"), strict=True)]
    stale = rev.to_numpy() < np.asarray(now)
    warns = []
    for (task, method), g in df[stale].groupby(["task", "method"], sort=True):
        info = catalog.method_info(str(task), str(method))
        why = f" ({info.revision_note})" if info is not None and info.revision_note else ""
        warns.append(f"{len(g)} {task} run(s) of {method} left out: {STALE}{why}; rerun "
                     "`w2s sweep` with the same config to recompute them")
    return df[~stale].reset_index(drop=True), warns


def run_spec(cfg: dict[str, Any]) -> RunSpec:
    """The RunSpec of a stored ``config.json``; configs written before RunSpec existed
    (format 1: no ``data_seed``) are read with their equivalent identity."""
    if "data_seed" in cfg:
        return RunSpec.from_dict(cfg)
    train = {"student": cfg.get("student"), "student_mode": cfg.get("student_mode"),
             **(cfg.get("train") or {}), "precision": cfg.get("precision")}
    options = None
    if cfg["kind"] == "transfer":  # a mapping, or (early format 1) loose top-level keys
        options = cfg.get("options") or {k: cfg[k] for k in OPTION_COLUMNS if k in cfg}
    return RunSpec(experiment_id=cfg.get("experiment_id", ""), kind=cfg["kind"],
                   method=cfg["method"], subset=tuple(cfg.get("subset") or ()),
                   aux=bool(cfg.get("aux")), seed=int(cfg["seed"]),
                   data_seed=int((cfg.get("data") or {}).get("seed", 0)), train=train,
                   options=options)


def run_row(cfg: dict[str, Any], met: dict[str, Any]) -> dict[str, Any]:
    """One run-index row: the RunSpec's identifying columns, then the scalar metrics. The
    stored run id (the folder name) is kept as is."""
    row = run_spec(cfg).index_row()
    row["run_id"] = cfg.get("run_id", row["run_id"])
    row.update({k: v for k, v in met.items() if not isinstance(v, (dict, list))})
    row["revision"] = int(cfg.get("revision") or 1)
    return row


def write_run_index(exp: ExperimentDir) -> pd.DataFrame:
    """Rebuild the index from the run folders; returns the current runs. Stale runs stay in
    the index (with their revision), so every reader of it still leaves them out and warns."""
    df, warns = _load_rows(exp, use_index=False)
    for w in warns:
        warnings.warn(w, stacklevel=2)
    if len(df):
        write_parquet(exp.run_index, df)
    else:
        exp.run_index.unlink(missing_ok=True)
    current, stale = split_stale(df)
    for w in stale:
        warnings.warn(w, stacklevel=2)
    return current


def load_run_predictions(exp: ExperimentDir, run_id: str) -> pd.DataFrame:
    return read_parquet(exp.run_dir(run_id) / "predictions.parquet")


def teacher_files(meta: dict[str, Any], data_seed: int | None = None) -> dict[str, str]:
    """Teacher name → cache file stem for one data replicate (default: the first), in config
    order; teachers not computed yet are absent."""
    files = meta.get("teacher_files")
    if files is None:  # format 1: one replicate, files named after the teachers
        return {t: t for t in meta["config"]["teachers"] if "/" not in t and "\\" not in t}
    if not files:
        return {}
    key = str(data_seed) if data_seed is not None else sorted(files, key=int)[0]
    by_name = files.get(key, {})
    return {t: by_name[t] for t in meta["config"]["teachers"] if t in by_name}


def load_teachers(exp: ExperimentDir, data_seed: int | None = None) -> dict[str, pd.DataFrame]:
    """Teacher name → its per-example soft labels on transfer and test for one data replicate
    (default: the first), in config order."""
    meta = read_json(exp.meta)
    return {t: read_parquet(exp.teacher_preds(stem))
            for t, stem in teacher_files(meta, data_seed).items()
            if exp.teacher_preds(stem).exists()}


def append_progress(exp: ExperimentDir, event: dict[str, Any]) -> None:
    """One JSON line per event; the dashboard polls this file. Appends are line-atomic enough
    for a single writer, and readers skip a torn last line."""
    exp.root.mkdir(parents=True, exist_ok=True)
    with open(exp.progress, "a", encoding="utf-8") as f:
        f.write(json.dumps(event, default=json_default) + "\n")


def read_progress(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line while the writer is mid-append
    return out
