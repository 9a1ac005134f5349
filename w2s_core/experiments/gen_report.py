"""What ``w2s report`` says about a generation (slot filling) experiment, as plain data:
teacher floors (SLU-F1, span F1, JSON validity), the ceiling, SLU-F1 and PGR per method vs K,
paired method comparisons, the aux ablation, and DPO/cDPO before → after with intervals."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from w2s_core.errors import W2SError
from w2s_core.experiments import gen_utterance, provenance, store, tables
from w2s_core.experiments.runspec import PAIR_KEYS
from w2s_core.metrics.intervals import interval_note, paired_summary, summarize_runs

# (a, b) method pairs compared on matched runs (the paper's generation claims)
COMPARISONS = (("bayes", "naive-soft"), ("bayes-restricted", "naive-soft"),
               ("joint", "naive-soft"), ("bayes-restricted", "bayes"))
TEACHER_COLUMNS = ["teacher", "slu_f1_test", "span_f1_test", "json_validity_test",
                   "slu_f1_transfer", "json_validity_transfer", "n_replicates"]


def teacher_table(exp: store.ExperimentDir) -> pd.DataFrame:
    meta = store.read_json(exp.meta)
    rows = []
    for ds in meta.get("data_seeds") or [None]:
        for t, stem in store.teacher_files(meta, ds).items():
            path = exp.teacher_meta(stem)
            if path.exists():
                m = store.read_json(path)
                rows.append({"teacher": t, **{c: m.get(c) for c in TEACHER_COLUMNS[1:-1]}})
    if not rows:
        return pd.DataFrame(columns=TEACHER_COLUMNS)
    df = pd.DataFrame(rows)
    order = {t: i for i, t in enumerate(meta["config"]["teachers"])}
    out = df.groupby("teacher", sort=False).agg(
        **{c: (c, "mean") for c in TEACHER_COLUMNS[1:-1]},
        n_replicates=("slu_f1_test", "size")).reset_index()
    return out.sort_values("teacher", key=lambda s: s.map(order)).reset_index(drop=True)


def aux_table(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """with aux − without, per (setting, method), on runs matched on everything else."""
    tr = tables.transfer(runs)
    if tr.empty or tr["aux"].nunique() < 2:
        return pd.DataFrame()
    tr = tr.assign(_v=pd.to_numeric(tr[metric], errors="coerce"))
    try:
        out = paired_summary(tr, True, False, "_v", method_col="aux",
                             pair_on=[k for k in PAIR_KEYS if k != "aux"],
                             by=["setting", "method"])
    except W2SError:
        return pd.DataFrame()
    return out.assign(metric=metric)


def dpo_table(runs: pd.DataFrame) -> pd.DataFrame:
    """SLU-F1 after − before (c)DPO per (method, ε): each DPO run against its own parent
    transfer run (same seed, subset, data) — a paired difference, summarised over seeds."""
    if runs.empty or "kind" not in runs.columns:
        return pd.DataFrame()
    d = runs[runs["kind"] == "dpo"]
    if d.empty or "delta_slu_f1" not in d.columns:
        return pd.DataFrame()
    d = tables.with_identity(d).assign(eps=d["opt_dpo_eps"].astype(str),
                                       _v=pd.to_numeric(d["delta_slu_f1"], errors="coerce"))
    out = summarize_runs(d, ["setting", "method", "eps"], "_v")
    # the policy's mean log-prob margin chosen − rejected before → after: DPO can move it while
    # no greedy output changes (runs written before the margins were stored give NaN)
    d = d.assign(**{c: pd.to_numeric(d[c], errors="coerce") if c in d.columns else np.nan
                    for c in ("dpo_margin_start", "dpo_margin_end")})
    means = d.groupby(["setting", "method", "eps"]).agg(
        before=("before_slu_f1", "mean"), after=("slu_f1", "mean"),
        pairs=("pairs", "mean"), margin_start=("dpo_margin_start", "mean"),
        margin_end=("dpo_margin_end", "mean")).reset_index()
    return out.merge(means, on=["setting", "method", "eps"], how="left")


def _pct(x: float) -> str:
    return "<1 %" if 0 < x < 0.005 else f"{100 * x:.0f} %"


def _cap(caps: Any) -> str:
    caps = {c for c in caps if c is not None and c == c}
    return f"the {int(caps.pop())}-token cap" if len(caps) == 1 else "the token cap"


def teacher_warnings(name: str, metas: list[dict[str, Any]]) -> list[str]:
    """One line per decoding fallback teacher ``name`` hit, summed over its data replicates'
    metadata ``metas``, and the splits it never produced valid JSON on: what the sweep logs
    when it trains the teacher, repeated by ``w2s report`` (fields: docs/STORAGE.md)."""
    splits = [s for s in ("test", "transfer") if any(f"json_validity_{s}" in m for m in metas)]

    def counts(key: str, of: str | None = "outputs") -> str:
        parts = []
        for s in splits:
            n = sum(int(m.get(f"{key}_{s}") or 0) for m in metas)  # absent: older teacher
            if n:
                total = sum(int(m.get(f"{of}_{s}") or 0) for m in metas) if of else 0
                parts.append(f"{n} of {total} {s}" if of else f"{n} {s}")
        return " and ".join(parts)

    out = []
    if c := counts("unfinished"):
        out.append(f"teacher {name}: {c} N-best candidates hit "
                   f"{_cap(m.get('max_new_tokens') for m in metas)} without EOS")
    if c := counts("prompt_truncated", None):
        out.append(f"teacher {name}: {c} prompts cut from the left for decoding")
    if c := counts("offset_fallback"):
        out.append(f"teacher {name}: {c} N-best candidates got character offsets rebuilt from "
                   "decoded prefixes (the tokenizer gave none; exact only if decoding "
                   "round-trips)")
    bad = []
    for s in splits:  # every split it decoded: a teacher can fail on transfer alone
        seeds = [str(m.get("data_seed")) for m in metas if m.get(f"json_validity_{s}") == 0.0]
        if seeds:
            bad.append(s + (f" (data seed {', '.join(seeds)})" if len(metas) > 1 else ""))
    if bad:
        out.append(f"teacher {name} never produced valid JSON on {' or '.join(bad)}: its "
                   "outputs count as empty predictions (SLU-F1 0) — train it longer or drop it")
    return out


def run_warnings(runs: pd.DataFrame) -> list[str]:
    """Student runs whose test outputs or DPO candidates hit the token cap, or whose test
    prompts were cut for decoding: one line per condition and (kind, method, K), the mean and
    worst rate over the group's runs (runs stored before these fields: nothing to say)."""
    if runs.empty or "unfinished_rate" not in runs.columns:
        return []
    df = runs.assign(**{c: pd.to_numeric(runs[c], errors="coerce") if c in runs.columns
                        else np.nan for c in ("unfinished_rate", "dpo_unfinished_rate",
                                              "prompt_truncated", "max_new_tokens")})
    order = {"ceiling": 0, "transfer": 1, "dpo": 2}
    df = df.sort_values(["kind", "method", "k"], key=lambda c: c.map(order).fillna(3)
                        if c.name == "kind" else c)
    out = []
    for (kind, method, k), g in df.groupby(["kind", "method", "k"], sort=False, dropna=False):
        who = "ceiling" if kind == "ceiling" else f"{method} K={k:.0f}" + (
            " + (c)DPO" if kind == "dpo" else "")
        who += f" seed {g['seed'].iloc[0]}" if len(g) == 1 else f" ({len(g)} runs)"
        cap = _cap(g["max_new_tokens"])
        for col, what in (("unfinished_rate", "test outputs"),
                          ("dpo_unfinished_rate", "DPO candidates (its transfer beams)")):
            r = g[col].dropna()
            if (r > 0).any():
                avg = ("" if len(r) == 1 or r.max() == r.min() else
                       f" on average (up to {_pct(r.max())})")
                out.append(f"{who}: {_pct(r.mean())} of {what} hit {cap}{avg}")
        cut = g["prompt_truncated"].dropna()
        if (cut > 0).any():
            out.append(f"{who}: up to {cut.max():.0f} test prompts cut from the left for "
                       "decoding")
    return out


def decode_warnings(exp: store.ExperimentDir, meta: dict[str, Any],
                    runs: pd.DataFrame) -> list[str]:
    """Every teacher's and student run's decoding fallbacks (see the two functions above)."""
    metas: dict[str, list[dict[str, Any]]] = {}
    for ds in meta.get("data_seeds") or [None]:
        for t, stem in store.teacher_files(meta, ds).items():
            if exp.teacher_meta(stem).exists():
                metas.setdefault(t, []).append(store.read_json(exp.teacher_meta(stem)))
    return [w for t, m in metas.items() for w in teacher_warnings(t, m)] + run_warnings(runs)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return df.astype(object).where(pd.notna(df), None).to_dict("records")


def report(exp: store.ExperimentDir, floor: str = "mean") -> dict[str, Any]:
    meta = store.read_json(exp.meta)
    runs, warns = store.load_runs(exp)
    cfg = meta["config"]
    if floor == "vote":
        floor = "joint"  # generation has no vote floor; joint decoding is its ensemble floor
    out: dict[str, Any] = {
        "task": "generation", "experiment": exp.id, "name": meta.get("name"),
        "status": meta.get("status"), "splits": meta.get("splits"),
        "data_seeds": meta.get("data_seeds"), "dataset": store.dataset_label(cfg["data"]),
        "student": cfg["student"], "floor": floor,
        "warnings": warns + provenance.mixed(meta.get("provenance") or [])
        + decode_warnings(exp, meta, runs),
        "teachers": _records(teacher_table(exp)), "settings": {}, "recovery": [],
        "score": [], "comparisons": [], "aux": [], "dpo": [], "ceiling": [], "contrasts": [],
        "n_runs": int(len(runs)), "intervals": "", "agreement": {}}
    if runs.empty:
        return out
    tr = tables.transfer(runs)
    out["settings"] = tables.settings_summary(tr, meta.get("settings") or {})
    ceil = tables.ceiling_table(runs)
    if not ceil.empty:  # PGR needs a gap: each teacher must sit below the strong ceiling
        top = float(pd.to_numeric(ceil["mean"], errors="coerce").min())
        for t in out["teachers"]:
            f = t.get("slu_f1_test")
            t["below_ceiling"] = None if f is None or top != top else bool(f < top)
    rec = tables.recovery_table(runs, "pgr", floor)
    score = tables.recovery_table(runs, "slu_f1", floor)
    comps = [tables.compare(runs, a, b, m, floor) for a, b in COMPARISONS
             for m in ("slu_f1", "pgr") if not tr.empty and {a, b} <= set(tr["method"])]
    comps = [c for c in comps if not c.empty]
    aux = aux_table(runs, "slu_f1")
    dpo = dpo_table(runs)
    # exact span F1 beside SLU-F1: SLU-F1 credits a slot of the right type with a wrong value
    # most of a TP, so a student that answers the common types with any value scores ~0.3
    span = tables.recovery_table(runs, "span_f1", floor)
    contrasts = tables.setting_contrasts(runs, meta.get("settings") or {},
                                         meta.get("option_defaults"), "slu_f1", floor)
    out.update(ceiling=_records(ceil), recovery=_records(rec), score=_records(score),
               span=_records(span), contrasts=_records(contrasts),
               aux=_records(aux), dpo=_records(dpo),
               comparisons=_records(pd.concat(comps, ignore_index=True)) if comps else [])
    notes = [t for t in (rec, score, ceil, *comps, aux, dpo, contrasts) if not t.empty]
    out["intervals"] = interval_note(pd.concat(notes, ignore_index=True)) if notes else ""
    # one seed gives one pair and no run-level interval: add the test-utterance bootstrap
    gen_utterance.add_utterance_intervals(out, exp, meta, tr)
    gen_utterance.attach_dpo(out, exp, meta, runs)
    return out
