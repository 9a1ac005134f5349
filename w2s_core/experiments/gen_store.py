"""Per-example generation outputs in the workspace (docs/STORAGE.md, "Generation").

Teachers' N-best lists: one parquet row per (example, rank) with the text, its scores and the
per-token / per-word log-probs as list columns. The pool (every teacher's score of every
teacher's candidates): one row per (example, candidate) with ``logp__<teacher>`` and
``norm__<teacher>`` columns. Lists, not pickles: any parquet reader can open them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from w2s_core.errors import W2SError
from w2s_core.metrics.slu import parse_slots
from w2s_core.models.decode import Candidate

NBest = list[list[Candidate]]


def nbest_frame(ids: dict[str, list[str]], nb: dict[str, NBest], tokens: Any) -> pd.DataFrame:
    """Rows (example_id, split, rank, text, logp, norm, eos_logp, valid, token_ids, tokens,
    token_logps, starts, ends, word_logps); ``tokens(ids)`` renders token pieces for display."""
    rows = []
    for split, per_ex in nb.items():
        for ex, cands in zip(ids[split], per_ex, strict=True):
            for rank, c in enumerate(cands):
                rows.append({"example_id": ex, "split": split, "rank": rank, "text": c.text,
                             "logp": c.logp, "norm": c.norm, "eos_logp": c.eos_logp,
                             "valid": parse_slots(c.text)[1], "token_ids": list(c.token_ids),
                             "tokens": tokens(c.token_ids),
                             "token_logps": list(c.token_logps),
                             "starts": [int(s) for s, _ in c.offsets],
                             "ends": [int(e) for _, e in c.offsets],
                             "word_logps": list(c.word_logps)})
    return pd.DataFrame(rows)


def nbest_from_frame(df: pd.DataFrame, ids: dict[str, list[str]]) -> dict[str, NBest]:
    """Inverse of ``nbest_frame``; raises W2SError when the stored examples differ."""
    out: dict[str, NBest] = {}
    for split, want in ids.items():
        part = df[df["split"] == split].sort_values(["example_id", "rank"], kind="stable")
        groups = {k: g for k, g in part.groupby("example_id", sort=False)}
        if set(groups) != set(want):
            raise W2SError(f"stored teacher outputs do not cover the {split} split",
                           "delete the teacher's parquet file; the sweep recomputes it")
        out[split] = [[_candidate(r) for r in groups[e].to_dict("records")] for e in want]
    return out


def _candidate(r: dict[str, Any]) -> Candidate:
    return Candidate(text=r["text"], logp=float(r["logp"]), norm=float(r["norm"]),
                     token_ids=[int(x) for x in r["token_ids"]],
                     token_logps=[float(x) for x in r["token_logps"]],
                     offsets=[(int(s), int(e)) for s, e in zip(r["starts"], r["ends"],
                                                               strict=True)],
                     word_logps=[float(x) for x in r["word_logps"]],
                     eos_logp=float(r["eos_logp"]))


def pool_frame(ids: dict[str, list[str]], texts: dict[str, list[list[str]]],
               sources: dict[str, list[list[list[str]]]],
               scores: dict[str, dict[str, NBest]]) -> pd.DataFrame:
    """Rows (example_id, split, cand, text, sources, logp__<t>, norm__<t>) for every teacher t."""
    rows = []
    for split in texts:
        for i, ex in enumerate(ids[split]):
            for j, text in enumerate(texts[split][i]):
                row = {"example_id": ex, "split": split, "cand": j, "text": text,
                       "sources": list(sources[split][i][j])}
                for t, sc in scores.items():
                    c = sc[split][i][j]
                    row[f"logp__{t}"], row[f"norm__{t}"] = c.logp, c.norm
                rows.append(row)
    return pd.DataFrame(rows)


def pool_arrays(df: pd.DataFrame, ids: Sequence[str], split: str, teachers: Sequence[str]
                ) -> list[tuple[list[str], list[list[str]], np.ndarray, np.ndarray]]:
    """Per example of ``ids``: (texts, sources, logp (K, C), norm (K, C)) for ``teachers``."""
    part = df[df["split"] == split].sort_values(["example_id", "cand"], kind="stable")
    groups = {k: g for k, g in part.groupby("example_id", sort=False)}
    out = []
    for ex in ids:
        g = groups.get(ex)
        if g is None:
            raise W2SError(f"the candidate pool lacks example {ex}",
                           "delete the pool parquet file; the sweep recomputes it")
        out.append((list(g["text"]), [list(s) for s in g["sources"]],
                    np.stack([g[f"logp__{t}"].to_numpy(float) for t in teachers]),
                    np.stack([g[f"norm__{t}"].to_numpy(float) for t in teachers])))
    return out


def student_frame(ids: Sequence[str], gold: Sequence[str], texts: Sequence[str],
                  per_utt: Sequence[dict[str, Any]], own: Sequence[Candidate],
                  tokens: Any) -> pd.DataFrame:
    """A student's test outputs: (example_id, gold, text, valid, n_pred, tp, fp, fn,
    utt_slu_f1) and the student's own scores of its output, as the teachers' N-best rows hold
    them (logp, norm, eos_logp, tokens, token_logps, word_logps); ``tokens(ids)`` renders
    token pieces."""
    return pd.DataFrame([{"example_id": e, "gold": g, "text": t, **u, "logp": c.logp,
                          "norm": c.norm, "eos_logp": c.eos_logp, "tokens": tokens(c.token_ids),
                          "token_logps": list(c.token_logps), "word_logps": list(c.word_logps)}
                         for e, g, t, u, c in zip(ids, gold, texts, per_utt, own, strict=True)])


def add_calibration(preds: pd.DataFrame, gold: Sequence[dict[str, Any]]) -> None:
    """Token calibration columns on a student's outputs, from ``token_readouts`` on the gold
    targets of the first len(gold) test utterances (later rows get empty lists):
    tok_pieces, tok_conf (max token probability), tok_correct (argmax = gold token)."""
    by_ex = {int(r["example"]): r for r in gold}
    for col, key in (("tok_pieces", "tokens"), ("tok_conf", "conf"), ("tok_correct", "correct")):
        preds[col] = [list(by_ex[i][key]) if i in by_ex else [] for i in range(len(preds))]


def targets_frame(ids: Sequence[str], examples: Sequence[Any], names: Sequence[str],
                  recs: Sequence[dict[str, Any]], subset: Sequence[str],
                  pool: Sequence[tuple[list[str], np.ndarray, np.ndarray]],
                  mode: str) -> pd.DataFrame:
    """What a run trained toward on test: one row per (example, label sequence) with its text,
    λ, target mode, the token read-outs (``training.lm_readouts``) and every subset teacher's
    score of the label text (logp__<t>, norm__<t>; NaN when no teacher proposed it)."""
    rows = []
    for r in recs:
        e, j = int(r["example"]), int(r["label"])
        text = examples[e].labels[j].text
        texts, lp, nm = pool[e]
        c = texts.index(text) if text in texts else None
        row = {"example_id": ids[e], "label": names[j], "text": text, "mode": mode,
               **{k: v for k, v in r.items() if k not in ("example", "label")}}
        for k, t in enumerate(subset):
            row[f"logp__{t}"] = float(lp[k, c]) if c is not None else float("nan")
            row[f"norm__{t}"] = float(nm[k, c]) if c is not None else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def pairs_frame(rows: Sequence[dict[str, Any]], teachers: Sequence[str],
                eps: float | str) -> pd.DataFrame:
    """A DPO run's preference pairs: (example_id, chosen, rejected, score_chosen/rejected = the
    λ-weighted ensemble score, chosen__<t>/rejected__<t> per teacher, pair_eps from the
    ensemble's votes, eps = the ε the loss used)."""
    out = []
    for r in rows:
        row = {k: v for k, v in r.items() if k not in ("teacher_chosen", "teacher_rejected")}
        for k, t in enumerate(teachers):
            row[f"chosen__{t}"] = r["teacher_chosen"][k]
            row[f"rejected__{t}"] = r["teacher_rejected"][k]
        row["eps"] = float(r["pair_eps"]) if eps == "confidence" else float(eps)
        out.append(row)
    cols = ["example_id", "chosen", "rejected", "score_chosen", "score_rejected", "weights",
            "pair_eps", *[f"{s}__{t}" for t in teachers for s in ("chosen", "rejected")], "eps"]
    return pd.DataFrame(out, columns=cols)
