"""Tables over a finished (or running) experiment: floors, ceiling, PGR vs K per method."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from w2s_core.experiments import store
from w2s_core.metrics.agreement import teacher_set_summary
from w2s_core.metrics.stats import mean_std_ci, paired_bootstrap_diff, summarize

FLOORS = ("mean", "best", "vote")


def teacher_table(exp: store.ExperimentDir) -> pd.DataFrame:
    """Per-teacher test accuracy (the weak floors), in config order."""
    meta = store.read_json(exp.meta)
    rows = []
    for t in meta["config"]["teachers"]:
        path = exp.teacher_meta(t)
        if path.exists():
            m = store.read_json(path)
            rows.append({"teacher": t, "accuracy_test": m["accuracy_test"],
                         "accuracy_transfer": m["accuracy_transfer"]})
    return pd.DataFrame(rows, columns=["teacher", "accuracy_test", "accuracy_transfer"])


def teacher_agreement(exp: store.ExperimentDir) -> dict[str, Any]:
    """Agreement of the full teacher set on the test split: pairwise agreement and Cohen's κ
    matrices, Fleiss' κ, mean vote entropy."""
    teach = store.load_teachers(exp)
    if not teach:
        return {}
    test = {n: df[df["split"] == "test"] for n, df in teach.items()}
    y = next(iter(test.values()))["gold"].to_numpy()
    s = teacher_set_summary({n: store.probs_of(df) for n, df in test.items()}, y)
    k = s["kappa"].to_numpy()
    off = k[~np.eye(len(k), dtype=bool)]
    return {"fleiss_kappa": s["fleiss_kappa"], "mean_vote_entropy": s["mean_vote_entropy"],
            "mean_pairwise_kappa": float(np.nanmean(off)) if off.size else float("nan"),
            "kappa": s["kappa"].round(4).to_dict(), "agreement": s["agreement"].round(4).to_dict()}


def recovery_table(runs: pd.DataFrame, floor: str = "mean") -> pd.DataFrame:
    """PGR (chosen floor) and accuracy per method × aux × K: mean, std, bootstrap 95% CI over
    teacher subsets and seeds; ``n_undefined`` counts runs whose PGR is undefined (ceiling ≤
    floor) — shown, never silently dropped."""
    if floor not in FLOORS:
        raise ValueError(f"floor must be one of {FLOORS}")
    tr = runs[runs["kind"] == "transfer"]
    if tr.empty:
        return pd.DataFrame()
    col = f"pgr_{floor}"
    pg = summarize(tr.assign(**{col: tr[col].astype(float)}), ["method", "aux", "k"], col)
    acc = tr.groupby(["method", "aux", "k"])["accuracy"].mean().rename("accuracy").reset_index()
    out = pg.merge(acc, on=["method", "aux", "k"])
    return out.rename(columns={"mean": "pgr", "std": "pgr_std", "lo": "pgr_lo", "hi": "pgr_hi"})


def ceiling_summary(runs: pd.DataFrame) -> dict[str, float]:
    c = runs.loc[runs["kind"] == "ceiling", "accuracy"].to_numpy(dtype=float)
    return mean_std_ci(c)


def compare_methods(runs: pd.DataFrame, a: str, b: str, floor: str = "mean",
                    min_k: int = 2) -> dict[str, Any]:
    """Paired bootstrap of PGR(a) − PGR(b) over matched (subset, aux, seed) runs with K ≥ min_k."""
    tr = runs[(runs["kind"] == "transfer") & (runs["k"] >= min_k)]
    key = ["subset", "aux", "seed"]
    col = f"pgr_{floor}"
    left = tr[tr["method"] == a].set_index(key)[col].astype(float)
    right = tr[tr["method"] == b].set_index(key)[col].astype(float)
    joined = pd.concat([left.rename("a"), right.rename("b")], axis=1, join="inner")
    res = paired_bootstrap_diff(joined["a"].to_numpy(), joined["b"].to_numpy())
    acc_l = tr[tr["method"] == a].set_index(key)["accuracy"]
    acc_r = tr[tr["method"] == b].set_index(key)["accuracy"]
    acc = pd.concat([acc_l.rename("a"), acc_r.rename("b")], axis=1, join="inner")
    res_acc = paired_bootstrap_diff(acc["a"].to_numpy(float), acc["b"].to_numpy(float))
    return {"a": a, "b": b, "floor": floor, "pairs": int(len(joined)), "pgr_diff": res,
            "accuracy_diff": res_acc}


def report(exp: store.ExperimentDir, floor: str = "mean") -> dict[str, Any]:
    """Everything `w2s report` prints, as plain data."""
    meta = store.read_json(exp.meta)
    runs, warns = store.load_runs(exp)
    out: dict[str, Any] = {"agreement": teacher_agreement(exp), "experiment": exp.id,
                           "name": meta.get("name"),
                           "status": meta.get("status"), "splits": meta.get("splits"),
                           "dataset": meta["config"]["data"]["name"],
                           "student": meta["config"]["student"], "warnings": warns,
                           "teachers": teacher_table(exp).to_dict("records"), "floor": floor}
    if runs.empty:
        out.update(n_runs=0, ceiling=None, recovery=[])
        return out
    out["n_runs"] = int(len(runs))
    out["ceiling"] = ceiling_summary(runs)
    out["recovery"] = recovery_table(runs, floor).replace({np.nan: None}).to_dict("records")
    methods = set(runs["method"])
    if {"bayes", "naive"} <= methods:
        out["bayes_vs_naive"] = compare_methods(runs, "bayes", "naive", floor)
    return out
