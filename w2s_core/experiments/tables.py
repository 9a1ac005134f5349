"""The tables every reader of results shares (``w2s report``, the dashboard, the API): recovery
vs ensemble size and paired method comparisons, grouped by each run's full identity.

Torch-free on purpose (the dashboard imports it). Runs are pooled only inside one
``GROUP_KEYS`` group (same option setting, method, aux and K); the interval's unit of
resampling is chosen and named by ``w2s_core.metrics.stats.summarize_runs``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from w2s_core.errors import W2SError
from w2s_core.experiments.runspec import (
    GROUP_KEYS,
    PAIR_KEYS,
    flat_options,
    option_diff,
    option_label,
    setting_labels,
)
from w2s_core.metrics.intervals import paired_summary, summarize_runs

FLOORS = ("mean", "best", "vote", "joint")  # vote: classification; joint: generation
METRICS = ("pgr", "accuracy", "slu_f1", "span_f1")
RECOVERY_COLUMNS = [*GROUP_KEYS, "mean", "std", "lo", "hi", "n", "n_units", "n_undefined",
                    "unit", "interval", "floor", "accuracy", "score", "metric"]


def score_column(runs: pd.DataFrame) -> str:
    """The task's main test score: SLU-F1 for generation runs, else accuracy."""
    return "slu_f1" if "slu_f1" in runs.columns and runs["slu_f1"].notna().any() \
        else "accuracy"


def value_column(metric: str, floor: str) -> str:
    if floor not in FLOORS:
        raise ValueError(f"floor must be one of {FLOORS}, got {floor!r}")
    if metric == "pgr":
        return f"pgr_{floor}"
    if metric in ("accuracy", "slu_f1", "span_f1"):
        return metric
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def with_identity(runs: pd.DataFrame) -> pd.DataFrame:
    """Fill identity columns an older run index may lack, with their one implied value."""
    defaults = {"setting": "default", "data_seed": 0, "aux": False, "subset": ""}
    missing = {k: v for k, v in defaults.items() if k not in runs.columns}
    out = runs.assign(**missing) if missing else runs
    return out.assign(aux=out["aux"].fillna(False).astype(bool))


def transfer(runs: pd.DataFrame) -> pd.DataFrame:
    if runs.empty or "kind" not in runs.columns:
        return runs.iloc[0:0]
    return with_identity(runs[runs["kind"] == "transfer"])


def recovery_table(runs: pd.DataFrame, metric: str = "pgr", floor: str = "mean", *,
                   n_boot: int = 2000) -> pd.DataFrame:
    """One row per (setting, method, aux, K): the mean of ``metric`` over the group's runs with
    an interval whose unit (data replicate, teacher subset or seed) is stated in ``unit`` and
    ``interval``; ``n_undefined`` counts runs whose PGR is undefined (ceiling ≤ floor): shown,
    never silently dropped. ``floor`` is the PGR floor convention and the reported weak floor;
    ``accuracy`` is the group's mean test accuracy."""
    col = value_column(metric, floor)
    tr = transfer(runs)
    if tr.empty or col not in tr.columns:
        return pd.DataFrame(columns=RECOVERY_COLUMNS)
    tr = tr.assign(_v=pd.to_numeric(tr[col], errors="coerce"))
    out = summarize_runs(tr, list(GROUP_KEYS), "_v", n_boot=n_boot)
    main = score_column(tr)
    extra = tr.groupby(list(GROUP_KEYS)).agg(
        floor=(f"floor_{floor}", "mean") if f"floor_{floor}" in tr.columns else ("_v", "size"),
        score=(main, "mean")).reset_index()
    extra["accuracy"] = extra["score"] if main == "accuracy" else np.nan
    if f"floor_{floor}" not in tr.columns:
        extra["floor"] = np.nan
    out = out.merge(extra, on=list(GROUP_KEYS), how="left")
    out["metric"] = col
    return out[RECOVERY_COLUMNS]


def compare(runs: pd.DataFrame, a: str, b: str, metric: str = "pgr", floor: str = "mean",
            min_k: int = 2, *, n_boot: int = 2000) -> pd.DataFrame:
    """``a − b`` on runs matched on ``PAIR_KEYS`` (same setting, data seed, subset, seed and
    aux), per (setting, aux) — never pooled over aux settings. K ≥ ``min_k`` only."""
    col = value_column(metric, floor)
    tr = transfer(runs)
    if tr.empty or col not in tr.columns:
        return pd.DataFrame()
    tr = tr[tr["k"] >= min_k].assign(_v=pd.to_numeric(tr[col], errors="coerce"))
    if not {a, b} <= set(tr["method"]):
        return pd.DataFrame()
    try:
        out = paired_summary(tr, a, b, "_v", pair_on=list(PAIR_KEYS), by=["setting", "aux"],
                             n_boot=n_boot)
    except W2SError:  # no run of a matches one of b (e.g. other subsets): nothing to compare
        return pd.DataFrame()
    return out.assign(a=a, b=b, metric=col)


def setting_contrasts(runs: pd.DataFrame, known: dict, defaults: dict | None = None,
                      metric: str = "accuracy", floor: str = "mean", *,
                      n_boot: int = 2000) -> pd.DataFrame:
    """One option changed, all else equal: ``a − b`` for every pair of option settings that
    differ in exactly one option (``target_mode=frozen − target_mode=detached``), on transfer
    runs matched on data seed, teacher subset, student seed, aux and method, per (method, aux,
    K) — the same teachers, data and minibatch order, only that option differs, so the paired
    difference isolates it. ``known``: experiment.json's ``settings``; ``defaults``: its
    ``option_defaults`` — the side holding the library default is the reference b (else the
    value that sorts first). Settings that differ in two or more options are not paired."""
    col = value_column(metric, floor)
    tr = transfer(runs)
    if tr.empty or col not in tr.columns:
        return pd.DataFrame()
    tr = tr.assign(_v=pd.to_numeric(tr[col], errors="coerce"))
    present = sorted(s for s in set(tr["setting"]) if s in known)
    default = flat_options(defaults or {})
    frames = []
    for i, s1 in enumerate(present):
        for s2 in present[i + 1:]:
            diff = option_diff(known[s1], known[s2])
            if len(diff) != 1:
                continue
            [(key, (v1, v2))] = diff.items()
            # the reference b: the library default, else the value that sorts first
            ref_first = _same(v2, default.get(key)) or (
                not _same(v1, default.get(key)) and str(v2) < str(v1))
            (a, va), (b, vb) = ((s1, v1), (s2, v2)) if ref_first else ((s2, v2), (s1, v1))
            try:
                out = paired_summary(tr[tr["setting"].isin([a, b])], a, b, "_v",
                                     method_col="setting", pair_on=["data_seed", "subset", "seed"],
                                     by=["method", "aux", "k"], n_boot=n_boot)
            except W2SError:  # no run of one setting matches a run of the other
                continue
            frames.append(out.assign(a=a, b=b, option=key.rsplit(".", 1)[-1],
                                     label=f"{option_label(key, va)} − {option_label(key, vb)}",
                                     metric=col))
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True).sort_values(
        ["label", "method", "aux", "k"], ignore_index=True)


def _same(x: object, y: object) -> bool:
    return y is not None and json.dumps(x, sort_keys=True) == json.dumps(y, sort_keys=True)


def ceiling_table(runs: pd.DataFrame, *, n_boot: int = 2000) -> pd.DataFrame:
    """Strong-ceiling accuracy per training setting, with its interval."""
    if runs.empty or "kind" not in runs.columns:
        return pd.DataFrame()
    c = runs[runs["kind"] == "ceiling"]
    if c.empty:
        return pd.DataFrame()
    c = with_identity(c)
    key = "train_setting" if "train_setting" in c.columns else "setting"
    return summarize_runs(c.assign(_v=pd.to_numeric(c[score_column(c)], errors="coerce")),
                          [key], "_v", n_boot=n_boot)


def settings_summary(tr: pd.DataFrame, known: dict) -> dict[str, dict]:
    """Per option setting of the transfer runs ``tr``: its label (what differs), its options
    (from experiment.json's ``settings``, ``known``) and its run count — both tasks' reports."""
    present = set(tr["setting"]) if not tr.empty else set()
    labels = setting_labels({s: known.get(s, {}) for s in present})
    return {s: {"label": labels.get(s, s), "options": known.get(s, {}).get("options"),
                "runs": int((tr["setting"] == s).sum())} for s in sorted(present)}
