"""Selecting runs from an experiment's run index (one row per complete run, see STORAGE.md).

The sidebar's choices (K, subset, method, ± aux, seed view) become filters here, so every page
picks "the run in view" the same way. Pure pandas; no Streamlit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from w2s_core.viz.colors import order_methods

AUX_CHOICES = ("off", "on", "both")
FLOORS = ("mean", "best", "vote")


def _col(runs: pd.DataFrame, name: str) -> pd.Series:
    return runs[name] if name in runs.columns else pd.Series([None] * len(runs), index=runs.index)


def transfer_runs(runs: pd.DataFrame) -> pd.DataFrame:
    if runs.empty or "kind" not in runs.columns:
        return runs.iloc[0:0]
    return runs[runs["kind"] == "transfer"]


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


def filter_view(runs: pd.DataFrame, aux: str = "both", seed: Any = "all") -> pd.DataFrame:
    """Transfer runs with the chosen aux setting and seed view ("all" or one seed)."""
    df = transfer_runs(runs)
    df = df[_aux_mask(df, aux)]
    if seed != "all":
        df = df[_col(df, "seed") == seed]
    return df


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


def subset_runs(runs: pd.DataFrame, subset: str, aux: str, seed: Any) -> pd.DataFrame:
    """Every run of one teacher subset (all methods), in method order."""
    df = filter_view(runs, aux, seed)
    df = df[df["subset"] == subset] if not df.empty else df
    if df.empty:
        return df
    order = {m: i for i, m in enumerate(order_methods(df["method"].unique().tolist()))}
    return df.assign(_o=df["method"].map(order)).sort_values(["_o", "aux", "seed"]).drop(
        columns="_o")


def pick_run(runs: pd.DataFrame, method: str, subset: str, aux: str, seed: Any) -> pd.Series | None:
    """The single run a page shows for (method, subset, aux, seed).

    aux "both" prefers the run without aux; seed "all" shows the smallest seed.
    """
    s = representative_seed(runs, seed)
    df = subset_runs(runs, subset, "off" if aux == "both" else aux, s)
    if df.empty and aux == "both":
        df = subset_runs(runs, subset, "on", s)
    df = df[df["method"] == method] if not df.empty else df
    return None if df.empty else df.iloc[0]


def ceiling_for(runs: pd.DataFrame, seed: Any) -> pd.Series | None:
    df = ceiling_runs(runs)
    s = representative_seed(runs, seed)
    if s is not None and "seed" in df.columns and (df["seed"] == s).any():
        df = df[df["seed"] == s]
    return None if df.empty else df.iloc[0]


def subset_label(subset: str) -> str:
    return subset.replace("+", " + ") if subset else "—"


def run_label(row: pd.Series | dict[str, Any]) -> str:
    """Short human label of a run: "bayes +aux · K=3 · seed 0 · a + b + c"."""
    method = row.get("method") or row.get("kind") or "?"
    aux = " +aux" if bool(row.get("aux") or False) else ""
    seed = row.get("seed")
    seed_s = f" · seed {int(seed)}" if seed is not None and not pd.isna(seed) else ""
    if method == "ceiling":
        return f"ceiling{seed_s}"
    subset = subset_label(row.get("subset") or "")
    return f"{method}{aux} · K={int(row.get('k') or 0)}{seed_s} · {subset}"


def undefined_count(values: pd.Series) -> int:
    return int((~np.isfinite(pd.to_numeric(values, errors="coerce").to_numpy(float))).sum())
