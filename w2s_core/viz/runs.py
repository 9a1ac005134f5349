"""Selecting runs from an experiment's run index (one row per complete run, see STORAGE.md).

The sidebar's choices (K, subset, method, ± aux, seed view) become filters here, so every page
picks "the run in view" the same way. Pure pandas; no Streamlit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from w2s_core.experiments.runspec import setting_labels
from w2s_core.experiments.tables import transfer as transfer_runs
from w2s_core.viz.colors import order_methods

AUX_CHOICES = ("off", "on", "both")
FLOORS = ("mean", "best", "vote")  # classification's PGR floors
GEN_FLOORS = ("mean", "best", "joint")  # generation: the teachers' joint-decoded outputs


def is_generation(meta: dict[str, Any]) -> bool:
    """An experiment.json (``api.experiment``) of a generation experiment."""
    return meta.get("task") == "generation"


def floors_for(meta: dict[str, Any]) -> tuple[str, ...]:
    return GEN_FLOORS if is_generation(meta) else FLOORS


def score_of(meta: dict[str, Any]) -> str:
    """The run index column of the task's main test score."""
    return "slu_f1" if is_generation(meta) else "accuracy"


def _col(runs: pd.DataFrame, name: str) -> pd.Series:
    return runs[name] if name in runs.columns else pd.Series([None] * len(runs), index=runs.index)


def ceiling_runs(runs: pd.DataFrame) -> pd.DataFrame:
    if runs.empty or "kind" not in runs.columns:
        return runs.iloc[0:0]
    return runs[runs["kind"] == "ceiling"]


def _aux_mask(runs: pd.DataFrame, aux: str) -> pd.Series:
    flag = _col(runs, "aux").fillna(False).astype(bool)
    if aux == "on":
        return flag
    if aux == "off":
        return ~flag
    return pd.Series(True, index=runs.index)


def filter_view(runs: pd.DataFrame, aux: str = "both", seed: Any = "all",
                setting: str | None = None) -> pd.DataFrame:
    """Transfer runs with the chosen aux setting, seed view ("all" or one seed) and option
    setting (None: every setting, for callers that group by it themselves)."""
    df = transfer_runs(runs)
    df = df[_aux_mask(df, aux)]
    if seed != "all":
        df = df[_col(df, "seed") == seed]
    if setting is not None:
        df = df[df["setting"] == setting]
    return df


def setting_options(runs: pd.DataFrame, known: Sequence[str] = ()) -> list[str]:
    """The option settings of an experiment's transfer runs, the most-run first; ties in the
    order the experiment first ran them (``known``: experiment.json's ``settings``), so an
    ablation opens on its first item, usually the baseline."""
    df = transfer_runs(runs)
    if df.empty:
        return []
    counts = df["setting"].value_counts(sort=False)
    first = {k: i for i, k in enumerate(known)}
    return sorted(counts.index, key=lambda s: (-counts[s], first.get(s, len(first)), str(s)))


def setting_names(runs: pd.DataFrame, settings: dict[str, Any]) -> dict[str, str]:
    """Setting hash → short label of what differs (``experiment.json``'s ``settings``)."""
    opts = setting_options(runs)
    return setting_labels({s: settings.get(s, {}) for s in opts})


def view_runs(runs: pd.DataFrame, setting: str | None = None,
              data_seed: Any = "all") -> pd.DataFrame:
    """The runs one option setting (and one data replicate) stands for: the setting's transfer
    runs and the ceilings of its training setting — the ceilings a transfer run's PGR uses.

    ``setting`` None keeps every setting; ``data_seed`` "all" keeps every replicate. Columns an
    old run index lacks count as constant, so such an index passes through unfiltered.
    """
    if runs.empty:
        return runs
    keep = pd.Series(True, index=runs.index)
    if setting is not None and "setting" in runs.columns:
        transfer = _col(runs, "kind") == "transfer"
        mine = transfer & (runs["setting"] == setting)
        keep = ~transfer | mine
        if "train_setting" in runs.columns and mine.any():
            # a ceiling has no options: it serves every setting of its training setting
            keep &= transfer | runs["train_setting"].isin(set(runs.loc[mine, "train_setting"]))
    if data_seed not in (None, "all") and "data_seed" in runs.columns:
        keep &= runs["data_seed"] == int(data_seed)
    return runs[keep]


def train_setting_of(runs: pd.DataFrame, setting: str | None) -> str | None:
    """The training setting of an option setting (whose ceilings its PGR uses), if recorded."""
    df = transfer_runs(runs)
    if setting is None or df.empty or "train_setting" not in df.columns:
        return None
    found = df.loc[df["setting"] == setting, "train_setting"].dropna()
    return str(found.iloc[0]) if len(found) else None


def data_seed_options(runs: pd.DataFrame) -> list[int]:
    if runs.empty or "data_seed" not in runs.columns:
        return []
    return sorted(int(s) for s in runs["data_seed"].dropna().unique())


def k_options(runs: pd.DataFrame) -> list[int]:
    return sorted(int(k) for k in transfer_runs(runs)["k"].dropna().unique()) \
        if "k" in runs.columns else []


def subset_options(runs: pd.DataFrame, k: int) -> list[str]:
    df = transfer_runs(runs)
    if df.empty:
        return []
    return sorted(df.loc[df["k"] == k, "subset"].dropna().unique().tolist())


def method_options(runs: pd.DataFrame) -> list[str]:
    df = transfer_runs(runs)
    return order_methods(df["method"].dropna().unique().tolist()) if not df.empty else []


def default_method(runs: pd.DataFrame, subset: str, prefer: str = "bayes") -> str | None:
    """The sidebar's method when the user picked none: ``prefer`` if it has a run of ``subset``,
    else the first method (in method order) that has one, so a page never opens on a method
    this subset lacks (a partial sweep: single-teacher methods only at K = 1)."""
    df = transfer_runs(runs)
    if df.empty:
        return None
    have = order_methods(df.loc[df["subset"] == subset, "method"].dropna().unique().tolist())
    return prefer if prefer in have else (have[0] if have else None)


def seed_options(runs: pd.DataFrame) -> list[int]:
    if runs.empty or "seed" not in runs.columns:
        return []
    return sorted(int(s) for s in runs["seed"].dropna().unique())


def aux_options(runs: pd.DataFrame) -> list[str]:
    df = transfer_runs(runs)
    present = set(_col(df, "aux").fillna(False).astype(bool))
    if present == {True, False}:
        return list(AUX_CHOICES)
    return ["on"] if present == {True} else ["off"]


def representative_seed(runs: pd.DataFrame, seed: Any) -> int | None:
    """The seed a one-run view shows: the chosen one, or the smallest when viewing all."""
    if seed != "all":
        return int(seed)
    seeds = seed_options(runs)
    return seeds[0] if seeds else None


def representative_data_seed(runs: pd.DataFrame, data_seed: Any = None) -> int | None:
    """The data replicate a one-run view shows: the chosen one, or the first."""
    if data_seed is not None and data_seed != "all":
        return int(data_seed)
    seeds = data_seed_options(runs)
    return seeds[0] if seeds else None


def subset_runs(runs: pd.DataFrame, subset: str, aux: str, seed: Any,
                setting: str | None = None, data_seed: Any = "all") -> pd.DataFrame:
    """Every run of one teacher subset (all methods) in one setting, in method order."""
    df = filter_view(runs, aux, seed, setting)
    df = df[df["subset"] == subset] if not df.empty else df
    if data_seed != "all" and not df.empty:
        df = df[df["data_seed"] == data_seed]
    if df.empty:
        return df
    order = {m: i for i, m in enumerate(order_methods(df["method"].unique().tolist()))}
    return df.assign(_o=df["method"].map(order)).sort_values(["_o", "aux", "seed"]).drop(
        columns="_o")


def pick_run(runs: pd.DataFrame, method: str, subset: str, aux: str, seed: Any,
             setting: str | None = None, data_seed: Any = None) -> pd.Series | None:
    """The single run a page shows for (method, subset, aux, seed, setting, data replicate).

    aux "both" prefers the run without aux; seed "all" shows the smallest seed; no data seed
    shows the first replicate.
    """
    s = representative_seed(runs, seed)
    d = representative_data_seed(runs, data_seed)
    d = "all" if d is None else d
    df = subset_runs(runs, subset, "off" if aux == "both" else aux, s, setting, d)
    if df.empty and aux == "both":
        df = subset_runs(runs, subset, "on", s, setting, d)
    df = df[df["method"] == method] if not df.empty else df
    return None if df.empty else df.iloc[0]


def ceiling_for(runs: pd.DataFrame, seed: Any, data_seed: Any = None) -> pd.Series | None:
    df = ceiling_runs(runs)
    s = representative_seed(runs, seed)
    if s is not None and "seed" in df.columns and (df["seed"] == s).any():
        df = df[df["seed"] == s]
    d = representative_data_seed(runs, data_seed)
    if d is not None and "data_seed" in df.columns and (df["data_seed"] == d).any():
        df = df[df["data_seed"] == d]
    return None if df.empty else df.iloc[0]


def subset_label(subset: str) -> str:
    return subset.replace("+", " + ") if subset else "—"


def run_label(row: pd.Series | dict[str, Any], setting_name: str | None = None,
              data_seed: bool = False) -> str:
    """Short human label of a run: "bayes +aux · K=3 · seed 0 · a + b + c", followed by the
    option setting's label and the data seed when the experiment has several of either."""
    method = row.get("method") or row.get("kind") or "?"
    if row.get("kind") == "dpo":  # preference-tuned after a transfer run of this method
        eps = row.get("opt_dpo_eps")
        method = f"{method} → DPO" + (f" ε={eps}" if eps is not None and not pd.isna(eps)
                                      else "")
    aux = " +aux" if bool(row.get("aux") or False) else ""
    seed = row.get("seed")
    seed_s = f" · seed {int(seed)}" if seed is not None and not pd.isna(seed) else ""
    tail = f" · {setting_name}" if setting_name else ""
    ds = row.get("data_seed")
    if data_seed and ds is not None and not pd.isna(ds):
        tail += f" · data seed {int(ds)}"
    if method == "ceiling":
        return f"ceiling{seed_s}{tail}"
    subset = subset_label(row.get("subset") or "")
    return f"{method}{aux} · K={int(row.get('k') or 0)}{seed_s} · {subset}{tail}"


def _dpo_parents(runs: pd.DataFrame, transfer: pd.DataFrame) -> dict[str, str]:
    """DPO run id → the option setting of the transfer runs it started from: the one whose
    options (every ``opt_*`` but ε) and training setting are the DPO run's."""
    cols = [c for c in runs.columns if c.startswith("opt_") and c != "opt_dpo_eps"]
    cols += ["train_setting"] if "train_setting" in runs.columns else []

    def key(r: pd.Series) -> str:
        return repr([None if pd.isna(r[c]) else r[c] for c in cols])

    by_key = {key(r): str(r["setting"]) for _, r in transfer.iterrows()}
    dpo = runs[_col(runs, "kind") == "dpo"]
    return {str(r["run_id"]): by_key.get(key(r), "") for _, r in dpo.iterrows()}


def identity_labels(runs: pd.DataFrame, names: dict[str, str]) -> dict[str, str]:
    """Run id → ``run_label`` that tells apart runs of different option settings and data
    replicates when the experiment has several (``names``: ``setting_names``).

    A ceiling has no option setting of its own; when the training settings differ it is named
    after the option settings whose PGR it anchors.
    """
    if runs.empty:
        return {}
    several = len(names) > 1
    replicates = len(data_seed_options(runs)) > 1
    by_train: dict[str, str] = {}
    tr = transfer_runs(runs)
    if several and "train_setting" in tr.columns and tr["train_setting"].nunique() > 1:
        for ts, g in tr.groupby("train_setting"):
            by_train[str(ts)] = " | ".join(names.get(s, str(s)) for s in sorted(g["setting"]
                                                                               .unique()))
    parents = _dpo_parents(runs, tr) if several else {}
    out = {}
    for _, r in runs.iterrows():
        if r.get("kind") == "ceiling":
            name = by_train.get(str(r.get("train_setting")))
        elif r.get("kind") == "dpo":  # a DPO setting is its parent's plus ε: name the parent's
            name = names.get(parents.get(str(r["run_id"]), ""))
        else:
            name = names.get(str(r.get("setting"))) if several else None
        out[str(r["run_id"])] = run_label(r, name, replicates)
    return out
