"""Utterance-bootstrap intervals for a generation report's one-seed comparisons.

A paired run-level interval needs ≥ 2 matched pairs (seeds, subsets or data replicates); a
one-seed study has one, so ``w2s report`` used to print "no interval". Two runs on the same
data seed were scored on the same test utterances, so their SLU-F1 difference can carry the
paired bootstrap over utterances (``metrics.utterance_bootstrap``): test-sample noise only.
Run-level intervals always win where they exist, because they include seed variation.

Per-utterance counts come from each run's predictions.parquet (tp/fp/fn are stored for
SLU-F1; span F1 counts are recomputed from the stored gold and text) and, for teacher floors,
from the teacher's rank-0 test output in its N-best parquet, rescored with the project's own
SLU functions (the teacher's stored scores are corpus totals only).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from w2s_core.errors import W2SError
from w2s_core.experiments import store
from w2s_core.experiments.runspec import GROUP_KEYS
from w2s_core.metrics.intervals import summarize_runs
from w2s_core.metrics.slu import Pairs, parse_slots
from w2s_core.metrics.utterance_bootstrap import paired_f1_difference, utterance_counts

METRICS = ("slu_f1", "span_f1")
_NOTE = ("‡ Where one seed gives a single pair: a 95% paired bootstrap over the test utterances "
         "(the same draw for both sides; 2000 resamples) — test-sample noise only, not "
         "seed-to-seed variation.")
_COUNTS = ["tp", "fp", "fn"]
# failures that only mean "this workspace cannot give an utterance interval": keep the line
_MISSING = (W2SError, OSError, KeyError, ValueError)


class UtteranceCounts:
    """Cached per-utterance (tp, fp, fn) of an experiment's runs and teachers."""

    def __init__(self, exp: store.ExperimentDir, meta: dict[str, Any]) -> None:
        self.exp, self.meta = exp, meta
        self._runs: dict[str, tuple[list[str], list[Pairs], dict[str, np.ndarray]]] = {}
        self._teachers: dict[tuple[int, str], pd.Series] = {}
        self._teacher_counts: dict[tuple, dict[str, np.ndarray]] = {}

    def run(self, run_id: str) -> tuple[list[str], list[Pairs], dict[str, np.ndarray]]:
        """(example ids, gold pairs, {metric: counts (n, 3)}) of one run's test outputs."""
        if run_id not in self._runs:
            p = store.load_run_predictions(self.exp, run_id)
            gold = [parse_slots(str(g))[0] for g in p["gold"]]
            texts = [str(t) for t in p["text"].fillna("")]
            slu = (p[_COUNTS].to_numpy(dtype=float) if set(_COUNTS) <= set(p.columns)
                   else utterance_counts(gold, texts, "slu_f1"))  # (n, 3)
            self._runs[run_id] = (list(p["example_id"].astype(str)), gold,
                                  {"slu_f1": slu,
                                   "span_f1": utterance_counts(gold, texts, "span_f1")})
        return self._runs[run_id]

    def teacher(self, data_seed: int, name: str, ids: list[str],
                gold: list[Pairs]) -> dict[str, np.ndarray]:
        """A teacher's counts on ``ids`` (its rank-0 test output; none stored → empty text,
        as the sweep scores a teacher without candidates)."""
        key = (int(data_seed), name)
        # every run of a data seed has the same test ids: rescore each teacher once
        if (*key, *ids) in self._teacher_counts:
            return self._teacher_counts[(*key, *ids)]
        if key not in self._teachers:
            stem = store.teacher_files(self.meta, int(data_seed))[name]
            df = store.read_parquet(self.exp.teacher_preds(stem))
            top = df[(df["split"] == "test") & (df["rank"] == 0)]
            self._teachers[key] = top.set_index("example_id")["text"]
        texts = [str(t) for t in self._teachers[key].reindex(ids).fillna("")]
        out = self._teacher_counts[(*key, *ids)] = {m: utterance_counts(gold, texts, m)
                                                    for m in METRICS}
        return out


def _paired(uc: UtteranceCounts, run_a: str, run_b: str, metric: str) -> dict[str, Any] | None:
    ids_a, _, ca = uc.run(run_a)
    ids_b, _, cb = uc.run(run_b)
    if sorted(ids_a) != sorted(ids_b):  # not the same test utterances: nothing to pair
        return None
    order = pd.Index(ids_b).get_indexer(ids_a)
    return paired_f1_difference(ca[metric], cb[metric][order])


def _one_pair(a: pd.DataFrame, b: pd.DataFrame, on: list[str]) -> tuple[str, str] | None:
    m = a[[*on, "run_id"]].merge(b[[*on, "run_id"]], on=on, suffixes=("_a", "_b"))
    return (str(m["run_id_a"].iloc[0]), str(m["run_id_b"].iloc[0])) if len(m) == 1 else None


def _public(res: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in res.items()}


def attach(rows: list[dict[str, Any]], tr: pd.DataFrame, uc: UtteranceCounts,
           contrast: bool = False) -> int:
    """Add ``utt`` (the utterance-bootstrap result) to each comparison row (``tables.compare``
    records, or ``setting_contrasts`` ones when ``contrast``) that has exactly one pair and no
    run-level interval, on SLU-F1 / span F1 only. Returns how many rows got one."""
    done = 0
    for row in rows:
        if row.get("lo") is not None or row.get("pairs") != 1 or row.get("metric") not in METRICS:
            continue
        base = tr[tr["aux"] == bool(row["aux"])]
        if contrast:  # the two sides differ in the option setting, all else equal
            base = base[(base["method"] == row["method"]) & (base["k"] == row["k"])]
            a, b = (base[base["setting"] == row[s]] for s in ("a", "b"))
        else:  # tables.compare: K ≥ 2, one setting, the sides differ in method
            base = base[(base["setting"] == row["setting"]) & (base["k"] >= 2)]
            a, b = (base[base["method"] == row[s]] for s in ("a", "b"))
        pair = _one_pair(a, b, ["data_seed", "subset", "seed"])
        try:
            res = _paired(uc, *pair, row["metric"]) if pair else None
        except _MISSING:
            res = None
        if res is not None and res["lo"] == res["lo"]:
            row["utt"] = _public(res)
            done += 1
    return done


def _teacher_scores(exp: store.ExperimentDir, meta: dict[str, Any]) -> dict[tuple, dict]:
    """(data seed, teacher) → its stored test scores."""
    out = {}
    for ds in meta.get("data_seeds") or [0]:
        for t, stem in store.teacher_files(meta, ds).items():
            if exp.teacher_meta(stem).exists():
                out[(int(ds), t)] = store.read_json(exp.teacher_meta(stem))
    return out


def _best(scores: dict[tuple, dict], ds: int, subset: str) -> str | None:
    """The subset's best single teacher on test SLU-F1 (the ``floor_best`` teacher)."""
    names = [t for t in str(subset).split("+") if (int(ds), t) in scores]
    return max(names, key=lambda t: scores[(int(ds), t)]["slu_f1_test"]) if names else None


def gain_table(exp: store.ExperimentDir, meta: dict[str, Any], tr: pd.DataFrame,
               uc: UtteranceCounts) -> list[dict[str, Any]]:
    """Student − best single teacher of its subset on test, SLU-F1 and span F1, per
    (setting, method, aux, K): the weak-to-strong gain. ≥ 2 runs → run-level interval over
    units of the per-run gains; one run → paired utterance bootstrap against that teacher's
    own test outputs; otherwise no interval."""
    try:
        scores = _teacher_scores(exp, meta)
    except _MISSING:
        return []
    if tr.empty or not scores:
        return []
    rows = []
    best = [_best(scores, ds, s) for ds, s in zip(tr["data_seed"], tr["subset"], strict=True)]
    tr = tr.assign(_best=best).dropna(subset=["_best"])
    for key, g in tr.groupby(list(GROUP_KEYS), sort=True):
        ident = {k: v.item() if isinstance(v, np.generic) else v
                 for k, v in zip(GROUP_KEYS, key, strict=True)}  # JSON-ready scalars
        row: dict[str, Any] = {**ident, "n": len(g),
                               "teacher": g["_best"].iloc[0] if g["_best"].nunique() == 1
                               else "best of each subset"}
        if len(g) == 1:
            r = g.iloc[0]
            try:
                ids, gold, mine = uc.run(str(r["run_id"]))
                theirs = uc.teacher(int(r["data_seed"]), str(r["_best"]), ids, gold)
            except _MISSING:
                continue
            for m in METRICS:
                row[m] = _public(paired_f1_difference(mine[m], theirs[m]))
            row["interval"] = row["slu_f1"]["interval"]
        else:
            for m in METRICS:
                floor = [scores[(int(d), t)][f"{m}_test"]
                         for d, t in zip(g["data_seed"], g["_best"], strict=True)]
                gain = pd.to_numeric(g[m], errors="coerce") - np.asarray(floor, dtype=float)
                s = summarize_runs(g.assign(_v=gain), [], "_v").iloc[0]
                row[m] = _public({"mean": float(s["mean"]), "lo": float(s["lo"]),
                                  "hi": float(s["hi"])})
                row["interval"] = s["interval"]
        rows.append(row)
    return rows


def add_utterance_intervals(out: dict[str, Any], exp: store.ExperimentDir,
                            meta: dict[str, Any], tr: pd.DataFrame) -> None:
    """The report's utterance-bootstrap additions, in place: ``utt`` on one-pair comparison
    and contrast rows, the ``gain`` rows, and a sentence in the ``intervals`` caption."""
    if tr.empty or "run_id" not in tr.columns:
        return
    uc = UtteranceCounts(exp, meta)
    n = attach(out["comparisons"], tr, uc) + attach(out["contrasts"], tr, uc, contrast=True)
    out["gain"] = gain_table(exp, meta, tr, uc)
    n += sum(1 for g in out["gain"] if g["n"] == 1)
    if n:
        _add_note(out)


def _add_note(out: dict[str, Any]) -> None:
    """The ‡ explanation, once, after the report's run-level interval caption."""
    text = out.get("intervals") or ""
    if _NOTE not in text:
        out["intervals"] = f"{text} {_NOTE}" if text else _NOTE


def attach_dpo(out: dict[str, Any], exp: store.ExperimentDir, meta: dict[str, Any],
               runs: pd.DataFrame) -> None:
    """``utt`` on each (c)DPO row summarising ONE DPO run (one seed): its SLU-F1 after − its
    parent transfer run's before, paired over the test utterances both decoded (the parent is
    named in the DPO run's config.json). Rows over ≥ 2 runs keep their interval over seeds."""
    rows = [r for r in out.get("dpo") or [] if r.get("n") == 1 and r.get("lo") is None]
    if not rows or runs.empty or "kind" not in runs.columns:
        return
    d = runs[runs["kind"] == "dpo"].assign(_eps=lambda x: x["opt_dpo_eps"].astype(str))
    uc = UtteranceCounts(exp, meta)
    for row in rows:
        g = d[(d["setting"] == row["setting"]) & (d["method"] == row["method"])
              & (d["_eps"] == str(row["eps"]))]
        if len(g) != 1:
            continue
        rid = str(g["run_id"].iloc[0])
        try:
            parent = store.read_json(exp.run_dir(rid) / "config.json")["parent"]
            res = _paired(uc, rid, str(parent), "slu_f1")
        except _MISSING:
            continue
        if res is not None and res["lo"] == res["lo"]:
            row["utt"] = _public(res)
            _add_note(out)
