"""The small Python API over the engine and the workspace (for notebooks and the dashboard).

Reading never trains; ``run_experiment`` is the only entry point that computes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from w2s_core.experiments import store
from w2s_core.paths import workspace_dir

PathLike = str | os.PathLike[str] | None


def list_experiments(workspace: PathLike = None) -> pd.DataFrame:
    """One row per experiment folder: id, name, dataset, teachers, student, status, n_runs.

    ``dataset`` is what the user calls the data: a user file's experiments are listed under the
    file's name (``my_data.csv``), not under the generic dataset name ``file``.
    """
    ws = workspace_dir(workspace)
    rows: list[dict[str, Any]] = []
    for exp in store.iter_experiments(ws):
        try:
            meta = store.read_json(exp.meta)
        except Exception as e:  # a corrupt experiment must not hide the others
            rows.append({"id": exp.id, "name": exp.id, "status": f"corrupt: {e}"})
            continue
        cfg = meta.get("config", {})
        data = cfg.get("data") or {}
        runs_dir = exp.root / "runs"
        n_runs = sum(1 for d in runs_dir.iterdir() if (d / "metrics.json").exists()) \
            if runs_dir.is_dir() else 0
        rows.append({
            "id": exp.id, "name": meta.get("name", exp.id),
            "dataset": store.dataset_label(data) if data.get("name") else None,
            "teachers": ", ".join(cfg.get("teachers", [])), "student": cfg.get("student"),
            "status": meta.get("status"), "n_runs": n_runs, "created": meta.get("created"),
        })
    return pd.DataFrame(rows, columns=["id", "name", "dataset", "teachers", "student", "status",
                                       "n_runs", "created"])


def _exp(workspace: PathLike, exp_id: str) -> store.ExperimentDir:
    return store.experiment_dir(workspace_dir(workspace), exp_id)


def experiment(exp_id: str, workspace: PathLike = None) -> dict[str, Any]:
    """The experiment's ``experiment.json`` (config, splits, class names, status)."""
    return store.read_json(_exp(workspace, exp_id).meta)


def runs(exp_id: str, workspace: PathLike = None) -> tuple[pd.DataFrame, list[str]]:
    """Run index (one row per complete run) and warnings naming any corrupt run."""
    return store.load_runs(_exp(workspace, exp_id))


def teacher_predictions(exp_id: str, workspace: PathLike = None,
                        data_seed: int | None = None) -> dict[str, pd.DataFrame]:
    """Teacher name → soft labels on transfer and test of one data replicate (default: the
    first). Each replicate retrains its teachers on its own splits, so two replicates' teacher
    files must never be mixed."""
    return store.load_teachers(_exp(workspace, exp_id), data_seed)


def run_predictions(exp_id: str, run_id: str, workspace: PathLike = None) -> pd.DataFrame:
    return store.load_run_predictions(_exp(workspace, exp_id), run_id)


def teacher_summaries(exp_id: str, workspace: PathLike = None,
                      data_seed: int | None = None) -> dict[str, dict[str, Any]]:
    """Teacher name → its ``teachers/<stem>.json`` (generation: SLU-F1, span F1, JSON validity
    per split, training stats) for one data replicate (default: the first)."""
    exp = _exp(workspace, exp_id)
    files = store.teacher_files(store.read_json(exp.meta), data_seed)
    return {t: store.read_json(exp.teacher_meta(s)) for t, s in files.items()
            if exp.teacher_meta(s).exists()}


def candidate_pool(exp_id: str, workspace: PathLike = None,
                   data_seed: int | None = None) -> pd.DataFrame:
    """Generation: every teacher's score of every pooled N-best candidate of one data replicate
    (default: the first); empty when not computed yet (docs/STORAGE.md, "Generation")."""
    exp = _exp(workspace, exp_id)
    meta = store.read_json(exp.meta)
    seeds = sorted((meta.get("teacher_files") or {"0": {}}), key=int)
    seed = data_seed if data_seed is not None else int(seeds[0])
    found = sorted((exp.root / "teachers").glob(f"pool-{seed}-*.parquet"),
                   key=lambda p: p.stat().st_mtime)
    return store.read_parquet(found[-1]) if found else pd.DataFrame()


def run_file(exp_id: str, run_id: str, name: str, workspace: PathLike = None
             ) -> pd.DataFrame | None:
    """One of a run's further parquet files (generation: ``targets.parquet`` of transfer runs,
    ``pairs.parquet`` of DPO runs), or None when the run has none."""
    path = _exp(workspace, exp_id).run_dir(run_id) / name
    return store.read_parquet(path) if path.exists() else None


def examples(exp_id: str, workspace: PathLike = None, data_seed: int | None = None,
             columns: list[str] | None = None) -> pd.DataFrame:
    """The examples (``data_seed, example_id, split, gold, text``), of every data replicate or
    of one: a replicate re-draws the splits, so one example id can be test in one replicate
    and transfer in another. An experiment stored before replicates has one, whatever
    ``data_seed`` says."""
    path = _exp(workspace, exp_id).examples
    if columns is not None:
        present = set(pq.read_schema(path).names)  # format 1 has no data_seed column
        columns = [c for c in columns if c in present]
        df = store.read_parquet(path, columns=list(dict.fromkeys(
            [*columns, *(["data_seed"] if "data_seed" in present else [])])))
    else:
        df = store.read_parquet(path)
    if data_seed is not None and "data_seed" in df.columns:
        df = df[df["data_seed"] == int(data_seed)]
    return df if columns is None else df[columns]


def progress(exp_id: str, workspace: PathLike = None) -> list[dict[str, Any]]:
    return store.read_progress(_exp(workspace, exp_id).progress)


def experiment_path(exp_id: str, workspace: PathLike = None) -> Path:
    return _exp(workspace, exp_id).root


def run_experiment(config: Any, workspace: PathLike = None, *, progress: bool = True) -> str:
    """Run (or resume) an experiment; returns its id. ``config``: an ExperimentConfig, a dict in
    the config-file format, or a path to a YAML/TOML file."""
    from w2s_core.experiments.config import ExperimentConfig
    from w2s_core.experiments.config_files import from_dict, load_config
    from w2s_core.experiments.sweep import Sweep

    if isinstance(config, (str, Path)):
        cfg = load_config(config)
    elif isinstance(config, dict):
        cfg = from_dict(ExperimentConfig, config).validate()
    else:
        cfg = config
    return Sweep(cfg, workspace_dir(workspace), progress=progress).run()


def report(exp_id: str, workspace: PathLike = None, floor: str = "mean") -> dict[str, Any]:
    """The data behind `w2s report` for one experiment."""
    from w2s_core.experiments.report import report as _report

    return _report(_exp(workspace, exp_id), floor)
