"""What ``w2s report`` says about one experiment, as plain data: floors, ceiling, PGR vs K per
method for each option setting, paired method comparisons per aux setting, and how every
interval was computed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from w2s_core.experiments import provenance, store, tables
from w2s_core.metrics.agreement import teacher_set_summary
from w2s_core.metrics.intervals import interval_note

FLOORS = tables.FLOORS
# method pairs the report compares when both are present (the paper's claims)
COMPARISONS = (("bayes", "naive"), ("bayes-softy", "naive"), ("dawid-skene", "vote"))


def teacher_table(exp: store.ExperimentDir) -> pd.DataFrame:
    """Per-teacher test and transfer accuracy (the weak floors), in config order; averaged
    over data replicates, with their count."""
    meta = store.read_json(exp.meta)
    seeds = meta.get("data_seeds") or [None]
    rows = []
    for ds in seeds:
        for t, stem in store.teacher_files(meta, ds).items():
            path = exp.teacher_meta(stem)
            if path.exists():
                m = store.read_json(path)
                rows.append({"teacher": t, "given": bool(m.get("given", False)),
                             "accuracy_test": m["accuracy_test"],
                             "accuracy_transfer": m["accuracy_transfer"]})
    cols = ["teacher", "given", "accuracy_test", "accuracy_transfer", "n_replicates"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows)
    order = {t: i for i, t in enumerate(meta["config"]["teachers"])}
    out = df.groupby("teacher", sort=False).agg(
        given=("given", "first"), accuracy_test=("accuracy_test", "mean"),
        accuracy_transfer=("accuracy_transfer", "mean"),
        n_replicates=("accuracy_test", "size")).reset_index()
    return out.sort_values("teacher", key=lambda s: s.map(order)).reset_index(drop=True)[cols]


def teacher_agreement(exp: store.ExperimentDir) -> dict[str, Any]:
    """Agreement of the full teacher set on the test split (first data replicate): pairwise
    agreement and Cohen's κ matrices, Fleiss' κ, mean vote entropy."""
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


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return df.astype(object).where(pd.notna(df), None).to_dict("records")


def report(exp: store.ExperimentDir, floor: str = "mean") -> dict[str, Any]:
    """Everything `w2s report` prints, as plain data."""
    meta = store.read_json(exp.meta)
    if meta.get("task") == "generation":
        from w2s_core.experiments import gen_report

        return gen_report.report(exp, floor)
    runs, warns = store.load_runs(exp)
    cfg = meta["config"]
    data = cfg["data"]
    warns = warns + provenance.mixed(meta.get("provenance") or [])
    out: dict[str, Any] = {"agreement": teacher_agreement(exp), "experiment": exp.id,
                           "name": meta.get("name"), "status": meta.get("status"),
                           "splits": meta.get("splits"), "data_seeds": meta.get("data_seeds"),
                           "dataset": store.dataset_label(data), "student": cfg["student"],
                           "warnings": warns,
                           "teachers": _records(teacher_table(exp)), "floor": floor,
                           "settings": {}, "recovery": [], "comparisons": [], "ceiling": [],
                           "contrasts": [], "n_runs": int(len(runs)), "intervals": ""}
    if runs.empty:
        return out
    tr = tables.transfer(runs)
    out["settings"] = tables.settings_summary(tr, meta.get("settings") or {})
    ceil = tables.ceiling_table(runs)
    out["ceiling"] = _records(ceil)
    rec = tables.recovery_table(runs, "pgr", floor)
    out["recovery"] = _records(rec)
    # PGR and accuracy: with a gap of a point or two PGR swings widely, accuracy does not
    comps = [tables.compare(runs, a, b, metric, floor) for a, b in COMPARISONS
             for metric in ("pgr", "accuracy") if {a, b} <= set(tr["method"])]
    comps = [c for c in comps if not c.empty]
    if comps:
        out["comparisons"] = _records(pd.concat(comps, ignore_index=True))
    contrasts = [tables.setting_contrasts(runs, meta.get("settings") or {},
                                          meta.get("option_defaults"), metric, floor)
                 for metric in ("pgr", "accuracy")]
    contrasts = [c for c in contrasts if not c.empty]
    if contrasts:
        out["contrasts"] = _records(pd.concat(contrasts, ignore_index=True))
    notes = [t for t in (rec, ceil, *comps, *contrasts) if not t.empty]
    out["intervals"] = interval_note(pd.concat(notes, ignore_index=True)) if notes else ""
    return out
