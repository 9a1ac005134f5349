"""Intervals over a sweep's runs with an explicit unit of resampling.

A sweep's runs are not independent draws. Student seeds only reorder the minibatches of a
convex probe (pseudo-replicates: they share data, teachers and subset), so pooling runs and
bootstrapping them as if independent makes intervals far too narrow (≈ 76 % real coverage at
n = 3; `benchmarks/bench_intervals.py` measures 0.57–0.75). ``summarize_runs`` /
``paired_summary`` therefore average runs within a unit (data replicate > teacher subset >
seed, see ``unit_of``) and build the interval over unit means: a t-interval for few units, a
cluster bootstrap for many (``MIN_BOOT_UNITS``), none for one; every row names its method in
``interval``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from w2s_core.errors import W2SError
from w2s_core.metrics.stats import _bootstrap_means

# Below this many units the percentile bootstrap under-covers (plug-in variance (n−1)/n·s²/n,
# normal-like quantiles), so the t-interval is used. Measured by benchmarks/bench_intervals.py
# (normal subset effects, 2000 sims): cluster bootstrap covers .76/.82/.90/.92–.94/.94/.95 at
# 3/5/10/20/30/40 units; 30 is the smallest size at ≥ .93 in every run. The t-interval never
# covered worse (≈ .95 normal, .88–.93 skewed); from 30 units the bootstrap is within ~1 point
# of it, 5–7 % narrower and makes no symmetry assumption.
MIN_BOOT_UNITS = 30
_UNIT_ORDER = ("data_seed", "subset", "seed")  # most to least independent
_NOUNS = {"data_seed": "data replicate", "subset": "teacher subset", "seed": "seed"}
_PSEUDO = "minibatch order only: pseudo-replicates"
_NAN = float("nan")


def _check_ci(ci: float) -> None:
    if not 0 < ci < 1:
        raise W2SError(f"confidence level ci={ci} is outside (0, 1)", "pass e.g. ci=0.95")


def _pct(ci: float) -> str:
    return f"{100 * ci:g}%"


def _group_means(v: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Mean of ``v`` (n,) per distinct value of ``clusters`` (n,), in order of first appearance
    (NaN is a cluster of its own) → (n_clusters,). First-appearance order keeps one-run-per-
    cluster input in its original order, so the bootstrap draws match an ordinary bootstrap."""
    codes, _ = pd.factorize(clusters, use_na_sentinel=False)
    return np.bincount(codes, weights=v) / np.bincount(codes)


@lru_cache(maxsize=256)
def _t_quantile(ci: float, dof: int) -> float:
    return float(student_t.ppf((1 + ci) / 2, dof))  # cached: ppf costs ~0.2 ms per call


def _t_half_width(v: np.ndarray, ci: float) -> float:
    """t_{n−1,(1+ci)/2} · s / √n for n ≥ 2 values."""
    return _t_quantile(ci, v.size - 1) * float(v.std(ddof=1)) / float(np.sqrt(v.size))


def _percentile_ci(means: np.ndarray, ci: float, n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile CI of the mean of ``means`` (n ≥ 2,) over ``n_boot`` resamples."""
    lo, hi = np.quantile(_bootstrap_means(means, n_boot, seed), [(1 - ci) / 2, (1 + ci) / 2])
    return float(lo), float(hi)


def t_interval(values: Sequence[float] | np.ndarray, ci: float = 0.95) -> dict:
    """Student-t interval of the mean: mean ± t_{n−1,(1+ci)/2} · s / √n.

    Exact for normal values and, unlike a percentile bootstrap, honest at n = 2–10, because
    the t quantile pays for estimating s from few values. Use it on *independent* values
    (unit means), never on pseudo-replicates pooled as if independent. Non-finite values are
    left out and counted in ``n_undefined``; n = 1 → lo = hi = NaN (no interval).
    """
    _check_ci(ci)
    arr = np.asarray(values, dtype=float).ravel()
    finite = np.isfinite(arr)
    v = arr[finite]
    n = int(v.size)
    out = {"mean": _NAN, "std": _NAN, "lo": _NAN, "hi": _NAN, "n": n,
           "n_undefined": int((~finite).sum()), "method": f"none (n = {n})"}
    if n == 0:
        return out
    out["mean"] = float(v.mean())
    if n == 1:
        return out
    half = _t_half_width(v, ci)
    out.update(std=float(v.std(ddof=1)), lo=out["mean"] - half, hi=out["mean"] + half,
               method=f"{_pct(ci)} t-interval (n = {n})")
    return out


def cluster_bootstrap(
    values: Sequence[float] | np.ndarray,
    clusters: Sequence | np.ndarray,
    ci: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Percentile bootstrap that resamples whole clusters: the mean of cluster means.

    Runs in one cluster share their source of variation (same data replicate or teacher
    subset), so they are averaged first and each cluster weighs the same; resampling the
    clusters (with replacement) then measures the between-cluster variance that pooling runs
    hides. ``std`` is the sample std of the cluster means, ``n`` counts finite runs and
    ``n_clusters`` the clusters with at least one finite run. Needs many clusters
    (``MIN_BOOT_UNITS``); with fewer, use ``t_interval`` on the cluster means.
    """
    _check_ci(ci)
    arr = np.asarray(values, dtype=float).ravel()
    cl = np.asarray(clusters).ravel()
    if arr.shape != cl.shape:
        raise W2SError(f"{arr.size} values but {cl.size} cluster labels",
                       "pass one cluster label per value")
    finite = np.isfinite(arr)
    means = _group_means(arr[finite], cl[finite]) if finite.any() else np.empty(0)
    k = int(means.size)
    out = {"mean": _NAN, "std": _NAN, "lo": _NAN, "hi": _NAN, "n": int(finite.sum()),
           "n_undefined": int((~finite).sum()), "n_clusters": k,
           "method": f"none ({k} cluster{'s' if k != 1 else ''})"}
    if k == 0:
        return out
    out["mean"] = float(means.mean())
    if k == 1:
        return out
    lo, hi = _percentile_ci(means, ci, n_boot, seed)
    out.update(std=float(means.std(ddof=1)), lo=lo, hi=hi,
               method=f"{_pct(ci)} cluster bootstrap over {k} clusters ({n_boot} resamples)")
    return out


def _pick_unit(n_data_seeds: int, n_subsets: int) -> str:
    if n_data_seeds > 1:
        return "data_seed"
    return "subset" if n_subsets > 1 else "seed"


def unit_of(df: pd.DataFrame) -> list[str]:
    """The unit of resampling for one group of runs: the most independent source that varies.

    * > 1 ``data_seed`` → data replicates: splits re-drawn and teachers retrained, so a
      replicate carries data *and* teacher variance, the variance a reader cares about.
    * else > 1 ``subset`` → teacher subsets: captures which teachers you happened to pick.
    * else ``seed``: only the student's minibatch order changes (a convex probe), so seeds
      are pseudo-replicates and their interval says nothing about new data or teachers.

    A missing column counts as constant.
    """
    def n_distinct(col: str) -> int:
        return int(df[col].nunique(dropna=False)) if col in df.columns else 1

    return [_pick_unit(n_distinct("data_seed"), n_distinct("subset"))]


def _method_text(kind: str, unit: str, k: int, ci: float, n_boot: int) -> str:
    """The caption line for one interval, e.g. '95% t-interval over 3 data replicates'."""
    if kind == "none":
        return f"no interval (n = {k})"
    noun = _NOUNS[unit] + ("s" if k != 1 else "")
    notes = [f"{n_boot} resamples"] if kind == "cluster bootstrap" else []
    notes += [_PSEUDO] if unit == "seed" else []
    tail = f" ({'; '.join(notes)})" if notes else ""
    return f"{_pct(ci)} {kind} over {k} {noun}{tail}"


def _unit_interval(v: np.ndarray, units: np.ndarray, unit: str, ci: float, n_boot: int,
                   seed: int, min_boot_units: int) -> dict:
    """Interval over the unit means of one group (v, units: (n,) int codes; non-finite v kept)."""
    finite = np.isfinite(v)
    inv = np.unique(units[finite], return_inverse=True)[1]
    means = np.bincount(inv, weights=v[finite]) / np.bincount(inv) if inv.size else np.empty(0)
    k = int(means.size)
    row = {"mean": float(means.mean()) if k else _NAN, "std": _NAN, "lo": _NAN, "hi": _NAN,
           "n": int(finite.sum()), "n_units": k, "n_undefined": int((~finite).sum()),
           "unit": unit}
    kind = "none"
    if k >= 2:
        row["std"] = float(means.std(ddof=1))
        if k >= min_boot_units:
            kind = "cluster bootstrap"
            row["lo"], row["hi"] = _percentile_ci(means, ci, n_boot, seed)
        else:
            kind, half = "t-interval", _t_half_width(means, ci)
            row["lo"], row["hi"] = row["mean"] - half, row["mean"] + half
    row["interval"] = _method_text(kind, unit, k, ci, n_boot)
    return row


def _codes(df: pd.DataFrame, col: str) -> np.ndarray:
    """Integer codes of ``col`` (NaN is its own value); all zeros if the column is missing."""
    if col not in df.columns:
        return np.zeros(len(df), dtype=np.int64)
    return pd.factorize(df[col], use_na_sentinel=False)[0]


def summarize_runs(
    df: pd.DataFrame,
    by: Sequence[str],
    value: str,
    *,
    ci: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    min_boot_units: int = MIN_BOOT_UNITS,
) -> pd.DataFrame:
    """Mean of ``value`` per group of ``by`` with an interval over independent units.

    Per group: pick the unit (``unit_of``), average the finite runs within each unit
    (non-finite runs are counted in ``n_undefined``), then build the interval over unit
    means: a cluster bootstrap if ≥ ``min_boot_units`` units, a t-interval if 2 or more, none
    for a single unit. The unit is chosen from all runs of the group, undefined ones included.
    ``mean`` is the mean of unit means (each unit weighs the same, however many runs it holds).
    Returns one row per group (sorted; NaN keys kept) with columns
    ``by..., mean, std (of unit means), lo, hi, n (finite runs), n_units, n_undefined, unit,
    interval``; ``interval`` is a caption line, e.g. "95% t-interval over 3 data replicates".
    The column is not called ``method`` because ``method`` is usually a ``by`` key.
    Deterministic for a ``seed``.
    """
    by = list(by)
    _check_ci(ci)
    if min_boot_units < 2 or n_boot < 1:
        raise W2SError(f"min_boot_units={min_boot_units}, n_boot={n_boot} are too small",
                       "use min_boot_units ≥ 2 and n_boot ≥ 1")
    missing = [c for c in [*by, value] if c not in df.columns]
    if missing:
        raise W2SError(f"run table has no column(s) {missing}",
                       f"pick from {sorted(map(str, df.columns))}")
    try:
        v = df[value].to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError) as err:
        raise W2SError(f"column {value!r} is not numeric", "summarize a metric column") from err
    unit_codes = {c: _codes(df, c) for c in _UNIT_ORDER}
    if by:
        group = df.groupby(by, dropna=False, sort=True).ngroup().to_numpy()
        order = np.argsort(group, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0]) if len(df) else []
        parts = np.split(order, starts[1:]) if len(df) else []
    else:
        parts = [np.arange(len(df))]
    rows = []
    for idx in parts:
        # a unit varies within the group iff its codes are not all equal
        varies = {c: idx.size > 0 and np.ptp(unit_codes[c][idx]) > 0 for c in _UNIT_ORDER}
        unit = _pick_unit(1 + varies["data_seed"], 1 + varies["subset"])
        row = _unit_interval(v[idx], unit_codes[unit][idx], unit, ci, n_boot, seed,
                             min_boot_units)
        rows.append(row)
    cols = [*by, "mean", "std", "lo", "hi", "n", "n_units", "n_undefined", "unit", "interval"]
    out = pd.DataFrame(rows, columns=cols[len(by):])
    if by:  # group keys: the first run of each group (one take instead of one per group)
        keys = df[by].iloc[[idx[0] for idx in parts]].reset_index(drop=True)
        out = pd.concat([keys, out], axis=1)
    return out.astype({"n": int, "n_units": int, "n_undefined": int})


def paired_summary(
    df: pd.DataFrame,
    a: str,
    b: str,
    value: str,
    *,
    pair_on: Sequence[str],
    by: Sequence[str] = (),
    method_col: str = "method",
    ci: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    min_boot_units: int = MIN_BOOT_UNITS,
) -> pd.DataFrame:
    """Interval of method ``a`` − method ``b`` on matched runs, per group of ``by``.

    Runs are paired by an inner join on ``pair_on`` + ``by`` (unmatched runs are dropped),
    so shared variance (same data, teachers, subset, seed) cancels in each difference; the
    differences are then summarized exactly like ``summarize_runs`` (unit means first, then
    a t-interval or a cluster bootstrap over units). Adds ``pairs`` (matched pairs, finite or
    not). Raises if a key matches several runs of one method, since the pairing would then
    be ambiguous, or if nothing matches.
    """
    keys = list(dict.fromkeys([*pair_on, *by]))
    missing = [c for c in [*keys, value, method_col] if c not in df.columns]
    if not pair_on or missing:
        raise W2SError(f"cannot pair runs: pair_on={list(pair_on)}, missing columns {missing}",
                       "pair on existing columns, e.g. ['data_seed', 'subset', 'seed', 'aux']")
    sides = []
    for name in (a, b):
        side = df.loc[df[method_col] == name, [*keys, value]]
        if side.empty:
            raise W2SError(f"no runs of {method_col} {name!r}",
                           f"pick from {sorted(map(str, df[method_col].dropna().unique()))}")
        n_dup = int(side.duplicated(keys).sum())
        if n_dup:
            raise W2SError(f"{n_dup} runs of {name!r} share a pair_on key {keys} with another",
                           "add the column that tells them apart (e.g. 'seed', 'k') to pair_on")
        sides.append(side.rename(columns={value: f"__{len(sides)}"}))
    m = sides[0].merge(sides[1], on=keys, how="inner")
    if m.empty:
        raise W2SError(f"no run of {a!r} matches a run of {b!r} on {keys}",
                       "drop keys that differ between methods (e.g. a 'setting' hash) from pair_on")
    m["__diff"] = m["__0"].astype(float) - m["__1"].astype(float)
    out = summarize_runs(m, by, "__diff", ci=ci, n_boot=n_boot, seed=seed,
                         min_boot_units=min_boot_units)
    out.insert(len(by), "pairs", out["n"] + out["n_undefined"])
    return out


_COUNT = re.compile(r"(over |n = )(\d+)")  # the unit count inside an interval caption


def interval_note(table: pd.DataFrame) -> str:
    """One caption line naming every kind of interval in a ``summarize_runs`` /
    ``paired_summary`` table, so a reader knows what each bar's whiskers resample.

    Captions that differ only in their unit count are merged into a range, e.g.
    "Intervals: 95% t-interval over 3–9 teacher subsets; no interval (n = 1)."
    """
    if "interval" not in table.columns:
        raise W2SError("table has no 'interval' column",
                       "pass the output of summarize_runs or paired_summary")
    counts: dict[str, list[int]] = {}  # caption template → unit counts, in order of appearance
    for text in table["interval"].dropna().astype(str):
        found = _COUNT.search(text)
        key = _COUNT.sub(r"\1{}", text, count=1) if found else text
        counts.setdefault(key, []).extend([int(found.group(2))] if found else [])
    parts = [key.format(min(ks) if min(ks) == max(ks) else f"{min(ks)}–{max(ks)}") if ks
             else key for key, ks in counts.items()]
    return "Intervals: " + ("; ".join(parts) if parts else "none (no rows)") + "."
