"""The paired bootstrap over test utterances (w2s_core/metrics/utterance_bootstrap.py) and its
use in ``w2s report`` for one-seed generation comparisons (w2s_core/experiments/gen_utterance.py).

Expectations are independent of the code under test: hand-computed micro F1s, a plain-Python
loop over the same index draws, the delta-method standard error, an unpaired bootstrap for
contrast, and, for the report, metrics computed by ``generation_metrics`` and a t-interval
computed here with scipy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as student_t

from w2s_core.cli import main
from w2s_core.data.prompts import format_slots
from w2s_core.experiments import gen_store, store
from w2s_core.experiments.runspec import RunSpec
from w2s_core.metrics import utterance_bootstrap as ub
from w2s_core.metrics.generation import generation_metrics, per_utterance
from w2s_core.metrics.slu import span_f1
from w2s_core.models.decode import Candidate


def _f1_by_hand(tp: float, fp: float, fn: float) -> float:
    """SLURP's 2PR/(P + R) with 0/0 = 0, written independently of ``micro_f1``."""
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


def _random_counts(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) per-utterance counts shaped like SLU ones: fractional FP/FN, some empty rows."""
    tp = rng.integers(0, 5, n).astype(float) * 2  # both passes count each match
    err = rng.random((n, 2)) * rng.integers(0, 3, (n, 1))
    return np.column_stack([tp, err])


# ---------------------------------------------------------------- (a) identical runs
def test_identical_runs_give_exactly_zero_and_a_zero_interval() -> None:
    c = _random_counts(np.random.default_rng(0), 60)
    res = ub.paired_f1_difference(c, c.copy(), n_boot=500, seed=3)
    assert res["mean"] == 0.0 and res["lo"] == 0.0 and res["hi"] == 0.0 and res["se"] == 0.0
    assert res["f1_a"] == res["f1_b"] > 0 and res["n_utterances"] == 60 and res["n_boot"] == 500


# ---------------------------------------------------------------- (b) the point estimate
def test_point_estimate_is_the_micro_f1_difference_by_hand() -> None:
    a = np.array([[2, 0.5, 0.5], [1, 1, 0], [0, 0, 2]])  # TP 3, FP 1.5, FN 2.5
    b = np.array([[2, 0, 0], [0, 1, 1], [1, 0, 0]])  # TP 3, FP 1, FN 1
    # by hand: P_a = 3/4.5, R_a = 3/5.5 → F1_a = 0.6; P_b = R_b = 0.75 → F1_b = 0.75
    res = ub.paired_f1_difference(a, b, n_boot=200)
    assert res["f1_a"] == pytest.approx(0.6) and res["f1_b"] == pytest.approx(0.75)
    assert res["mean"] == pytest.approx(-0.15)
    # a micro F1, not the mean of per-utterance F1s (0.8, 2/3, 0 → 0.489 for run a)
    assert np.mean([_f1_by_hand(*row) for row in a]) == pytest.approx(0.48888, abs=1e-4)
    assert res["lo"] <= res["mean"] <= res["hi"]


def test_span_counts_per_utterance_sum_to_the_corpus_span_f1() -> None:
    gold = [[("city", "boston"), ("day", "monday")], [("city", "denver")], []]
    texts = ['{"city": "boston"}',  # tp 1, fn 1
             '{"city": "dallas", "day": "friday"}',  # tp 0, fp 2, fn 1
             'not json']  # invalid → empty prediction: nothing
    counts = ub.utterance_counts(gold, texts, "span_f1")
    assert counts.tolist() == [[1, 0, 1], [0, 2, 1], [0, 0, 0]]
    # P = 1/3, R = 1/3 → F1 = 1/3, as the corpus scorer says
    assert ub.micro_f1(counts.sum(axis=0)) == pytest.approx(1 / 3)
    assert span_f1(gold, [[("city", "boston")], [("city", "dallas"), ("day", "friday")], []]
                   )["span_f1"] == pytest.approx(1 / 3)
    assert ub.micro_f1(np.zeros(3)) == 0.0  # SLURP's 0/0 = 0


# ---------------------------------------------------------------- (c) vs a loop / delta method
def test_vectorised_resamples_match_a_plain_loop_over_the_same_draws(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    a, b = _random_counts(rng, 25), _random_counts(rng, 25)
    idx = ub.bootstrap_indices(25, 300, seed=7)  # (300, 25)
    fast = ub.resampled_f1(np.stack([a, b]), indices=idx)  # (2, 300)
    for s, c in enumerate((a, b)):
        loop = []
        for row in idx:
            tp = fp = fn = 0.0
            for i in row:
                tp, fp, fn = tp + c[i, 0], fp + c[i, 1], fn + c[i, 2]
            loop.append(_f1_by_hand(tp, fp, fn))
        np.testing.assert_allclose(fast[s], loop, rtol=1e-12, atol=1e-12)
    # the internal draws are bootstrap_indices' rows, also when drawn in several blocks
    monkeypatch.setattr(ub, "MAX_CELLS", 25 * 7)  # blocks of 7 resamples
    np.testing.assert_array_equal(ub.resampled_f1(np.stack([a, b]), 300, seed=7), fast)
    res = ub.paired_f1_difference(a, b, n_boot=300, seed=7)
    d = fast[0] - fast[1]
    assert res["lo"] == pytest.approx(np.quantile(d, 0.025))
    assert res["se"] == pytest.approx(d.std(ddof=1))


def test_bootstrap_se_agrees_with_the_delta_method() -> None:
    rng = np.random.default_rng(2)
    n = 400
    a = _random_counts(rng, n)
    b = a.copy()
    b[rng.random(n) < 0.3, 1] += 1.0  # b: extra false positives on ~30 % of utterances
    res = ub.paired_f1_difference(a, b, n_boot=4000, seed=0)
    # F = 2T/D with T = mean tp, D = mean(2tp + fp + fn): influence ψ_i = (2 t_i − F d_i) / D
    def psi(c: np.ndarray) -> np.ndarray:
        d = 2 * c[:, 0] + c[:, 1] + c[:, 2]
        f = 2 * c[:, 0].sum() / d.sum()
        return (2 * c[:, 0] - f * d) / d.mean()
    se_delta = float((psi(a) - psi(b)).std() / np.sqrt(n))
    assert res["se"] == pytest.approx(se_delta, rel=0.1)
    assert res["mean"] > 0 and res["lo"] > 0  # extra FPs only hurt b: a clear difference


# ---------------------------------------------------------------- (d) pairing matters
def test_pairing_narrows_the_interval_of_correlated_runs() -> None:
    rng = np.random.default_rng(4)
    n = 200
    a = _random_counts(rng, n)  # utterances differ a lot in size and difficulty …
    b = a.copy()
    fix = rng.random(n) < 0.1  # … and b differs from a on 10 % of them only
    b[fix, 1] = np.maximum(b[fix, 1] - 0.5, 0)
    paired = ub.paired_f1_difference(a, b, n_boot=2000, seed=5)
    # the unpaired bootstrap: each run's utterances drawn independently
    fa = ub.resampled_f1(a[None], indices=ub.bootstrap_indices(n, 2000, seed=5))[0]
    fb = ub.resampled_f1(b[None], indices=ub.bootstrap_indices(n, 2000, seed=6))[0]
    lo, hi = np.quantile(fa - fb, [0.025, 0.975])
    assert paired["hi"] - paired["lo"] < 0.5 * (hi - lo)
    assert paired["mean"] == pytest.approx(float(ub.micro_f1(a.sum(0)) - ub.micro_f1(b.sum(0))))


def test_bad_input_is_refused_and_one_utterance_has_no_interval() -> None:
    from w2s_core.errors import W2SError

    with pytest.raises(W2SError):
        ub.paired_f1_difference(np.zeros((3, 3)), np.zeros((4, 3)))
    with pytest.raises(W2SError):
        ub.utterance_counts([[]], ["{}"], "accuracy")
    one = ub.paired_f1_difference(np.array([[2, 0, 0]]), np.array([[0, 1, 1]]))
    assert one["mean"] == 1.0 and one["lo"] != one["lo"] and "no interval" in one["interval"]


# ---------------------------------------------------------------- (e) the report
N = 40
TEACHERS = ("t-weak", "t-strong")
TRAIN = {"student": "tiny", "epochs": 1.0, "lr": 1e-3, "precision": "fp32"}
OPTS = {"target_mode": "detached", "evidence": "exp"}
CITIES = ["boston", "denver", "dallas", "new york", "san francisco", "atlanta"]
DAYS = ["monday", "tuesday", "friday", "sunday"]


def _gold(rng: np.random.Generator) -> list[list[tuple[str, str]]]:
    out = []
    for _ in range(N):
        pairs = [("fromloc.city_name", str(rng.choice(CITIES))),
                 ("toloc.city_name", str(rng.choice(CITIES)))]
        if rng.random() < 0.5:
            pairs.append(("day_name", str(rng.choice(DAYS))))
        out.append(pairs)
    return out


def _noisy(gold: list[list[tuple[str, str]]], p: float, rng: np.random.Generator) -> list[str]:
    """Outputs that drop or garble each gold slot with probability ``p``."""
    texts = []
    for pairs in gold:
        out = []
        for t, v in pairs:
            u = rng.random()
            out += [] if u < p / 2 else [(t, v + "ville")] if u < p else [(t, v)]
        texts.append(format_slots(out))
    return texts


def _workspace(root: Path, seeds: tuple[int, ...]) -> tuple[store.ExperimentDir, dict]:
    """A generation experiment written through the store: two teachers, bayes and naive-soft
    at K = 2 for ``seeds``, plus bayes in a second option setting (target_mode=frozen)."""
    rng = np.random.default_rng(11)
    exp = store.experiment_dir(root, "gen-boot")
    gold = _gold(rng)
    ids = [f"u{i}" for i in range(N)]
    gold_text = [format_slots(g) for g in gold]
    files, tmeta = {}, {}
    for name, p in zip(TEACHERS, (0.6, 0.3), strict=True):
        texts = _noisy(gold, p, rng)
        m = generation_metrics(gold, texts)
        stem = f"{name}-0"
        files[name] = stem
        tmeta[name] = m
        store.write_json(exp.teacher_meta(stem), {f"{k}_test": v for k, v in m.items()})
        rows = [{"example_id": e, "split": "test", "rank": 0, "text": t}
                for e, t in zip(ids, texts, strict=True)]
        rows += [{"example_id": e, "split": "test", "rank": 1, "text": "{}"} for e in ids]
        rows += [{"example_id": e, "split": "transfer", "rank": 0, "text": "{}"} for e in ids]
        store.write_parquet(exp.teacher_preds(stem), pd.DataFrame(rows))
    floors = sorted(tmeta[t]["slu_f1"] for t in TEACHERS)
    settings, runs = {}, {}
    plan = [(m, OPTS, s, p) for s in seeds for m, p in (("bayes", 0.12), ("naive-soft", 0.2))]
    plan.append(("bayes", {**OPTS, "target_mode": "frozen"}, seeds[0], 0.08))
    for method, opts, seed, p in plan:
        spec = RunSpec(experiment_id=exp.id, kind="transfer", method=method, subset=TEACHERS,
                       aux=False, seed=seed, data_seed=0, train=TRAIN, options=opts,
                       task="generation")
        settings[spec.setting] = {"options": opts, "train": TRAIN}
        texts = _noisy(gold, p, rng)
        met = generation_metrics(gold, texts)
        met.update(floor_mean=float(np.mean(floors)), floor_best=floors[-1], ceiling=0.99,
                   pgr_mean=(met["slu_f1"] - np.mean(floors)) / (0.99 - np.mean(floors)))
        own = [Candidate(t, -1.0, -0.5, [7], [-1.0], [(0, len(t))], [-1.0], 0.0)
               for t in texts]  # scores play no part in the bootstrap
        preds = gen_store.student_frame(ids, gold_text, texts, per_utterance(gold, texts), own,
                                        lambda ids: [str(i) for i in ids])
        store.save_run(exp, spec.run_id, spec.stored_config(), preds, met)
        runs[(method, opts["target_mode"], seed)] = met
    store.write_json(exp.meta, {
        "task": "generation", "id": exp.id, "name": "gen-boot", "status": "done",
        "config": {"teachers": list(TEACHERS), "student": "tiny", "data": {"name": "atis-slots"}},
        "splits": {"sizes": {"test": N}}, "data_seeds": [0], "settings": settings,
        "option_defaults": {"options": OPTS}, "teacher_files": {"0": files}})
    return exp, {"runs": runs, "teachers": tmeta}


def _report(ws: Path, capsys: pytest.CaptureFixture) -> tuple[str, dict[str, Any]]:
    assert main(["report", "--workspace", str(ws)]) == 0
    text = capsys.readouterr().out
    assert main(["report", "--workspace", str(ws), "--format", "json"]) == 0
    return text, json.loads(capsys.readouterr().out)[0]


def test_one_seed_report_prints_the_labelled_utterance_interval(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, truth = _workspace(tmp_path, (0,))
    text, rep = _report(tmp_path, capsys)
    runs = truth["runs"]
    want = runs[("bayes", "detached", 0)]["slu_f1"] - runs[("naive-soft", "detached", 0)]["slu_f1"]
    label = (f"95% paired bootstrap over {N} test utterances, 2000 resamples; test-sample "
             "noise only, not seed-to-seed variation")
    [line] = [ln for ln in text.splitlines() if "bayes − naive-soft (slu_f1" in ln]
    assert line.startswith(f"  bayes − naive-soft (slu_f1, w/o aux): {want:+.3f} [")
    assert line.endswith("(1 pairs, 1 seed; utterance bootstrap‡)") and "no interval" not in line
    assert c_label(rep) == label
    [c] = [c for c in rep["comparisons"] if c["metric"] == "slu_f1"]
    assert c["lo"] is None and c["utt"]["mean"] == pytest.approx(want)
    assert c["utt"]["lo"] < want < c["utt"]["hi"]
    [pgr] = [ln for ln in text.splitlines() if "(pgr_mean" in ln]  # PGR: no utterance interval
    assert "no interval" in pgr and "bootstrap" not in pgr
    # the option contrast (frozen − detached, bayes) gets one too
    [con] = [ln for ln in text.splitlines() if "target_mode=frozen − target_mode=detached" in ln]
    want_c = runs[("bayes", "frozen", 0)]["slu_f1"] - runs[("bayes", "detached", 0)]["slu_f1"]
    assert f"SLU-F1 {want_c:+.3f} [" in con and con.endswith("; utterance bootstrap‡)")
    # student − best single teacher: t-strong, against its own stored test outputs
    best = truth["teachers"]["t-strong"]
    gains = {(g["method"], g["setting"]): g for g in rep["gain"]}
    assert len(gains) == 3 and {g["teacher"] for g in gains.values()} == {"t-strong"}
    g = next(g for (m, _), g in gains.items() if m == "naive-soft")
    mine = runs[("naive-soft", "detached", 0)]
    assert g["slu_f1"]["mean"] == pytest.approx(mine["slu_f1"] - best["slu_f1"])
    assert g["span_f1"]["mean"] == pytest.approx(mine["span_f1"] - best["span_f1"])
    assert g["slu_f1"]["lo"] < g["slu_f1"]["mean"] < g["slu_f1"]["hi"]
    assert f"naive-soft        w/o aux K=2 − t-strong: SLU-F1 {g['slu_f1']['mean']:+.3f}" in text
    assert "‡ Where one seed gives a single pair: a 95% paired bootstrap" in text


def c_label(rep: dict) -> str:
    """The full caption the JSON report keeps on a one-pair SLU-F1 comparison row."""
    [c] = [c for c in rep["comparisons"] if c["metric"] == "slu_f1"]
    return c["utt"]["interval"]


def test_two_seeds_keep_the_run_level_interval(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    _, truth = _workspace(tmp_path, (0, 1))
    text, rep = _report(tmp_path, capsys)
    runs = truth["runs"]
    d = np.array([runs[("bayes", "detached", s)]["slu_f1"]
                  - runs[("naive-soft", "detached", s)]["slu_f1"] for s in (0, 1)])
    half = student_t.ppf(0.975, 1) * d.std(ddof=1) / np.sqrt(2)
    [c] = [c for c in rep["comparisons"] if c["metric"] == "slu_f1"]
    assert "utt" not in c and c["pairs"] == 2
    assert (c["lo"], c["hi"]) == pytest.approx((d.mean() - half, d.mean() + half))
    [line] = [ln for ln in text.splitlines() if "bayes − naive-soft (slu_f1" in ln]
    assert "bootstrap" not in line and "(2 pairs, 2 seeds)" in line
    # the gain line of a 2-seed group is run-level too; the 1-run frozen group is not
    lines = [ln for ln in text.splitlines() if "K=2 − t-strong" in ln]
    assert len(lines) == 3
    assert sum("t-interval over 2 seeds" in ln for ln in lines) == 2
    assert sum(ln.endswith("(1 run; utterance bootstrap‡)") for ln in lines) == 1


def test_a_one_seed_dpo_row_gets_the_utterance_interval_against_its_parent(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """(c)DPO's Δ = after − before pairs a DPO run with its parent transfer run on the same
    test utterances: with one seed, the report gives it the utterance bootstrap (‡), whose
    point estimate is the two runs' SLU-F1 difference."""
    exp, _ = _workspace(tmp_path, (0,))
    parent = RunSpec(experiment_id=exp.id, kind="transfer", method="bayes", subset=TEACHERS,
                     aux=False, seed=0, data_seed=0, train=TRAIN, options=OPTS,
                     task="generation")
    before = store.load_run_predictions(exp, parent.run_id)
    gold = [[tuple(p) for p in json.loads(g).items()] for g in before["gold"]]
    texts = _noisy(gold, 0.05, np.random.default_rng(5))  # DPO helped: fewer errors
    kid = RunSpec(experiment_id=exp.id, kind="dpo", method="bayes", subset=TEACHERS,
                  aux=False, seed=0, data_seed=0, train=TRAIN,
                  options={**OPTS, "dpo": {"eps": 0.1, "beams": 4}}, task="generation")
    met = generation_metrics(gold, texts)
    b = store.read_json(exp.run_dir(parent.run_id) / "metrics.json")["slu_f1"]
    met.update(before_slu_f1=b, delta_slu_f1=met["slu_f1"] - b, pairs=8)
    preds = gen_store.student_frame(
        list(before["example_id"]), list(before["gold"]), texts, per_utterance(gold, texts),
        [Candidate(t, -1.0, -0.5, [7], [-1.0], [(0, len(t))], [-1.0], 0.0) for t in texts],
        lambda ids: [str(i) for i in ids])
    store.save_run(exp, kid.run_id, kid.stored_config(parent=parent.run_id), preds, met)
    exp.run_index.unlink(missing_ok=True)
    text, rep = _report(tmp_path, capsys)
    [row] = rep["dpo"]
    assert row["n"] == 1 and row["utt"]["mean"] == pytest.approx(met["slu_f1"] - b)
    assert row["utt"]["lo"] < row["utt"]["mean"] < row["utt"]["hi"]
    [line] = [ln for ln in text.splitlines() if "ε=0.1" in ln]
    assert f"Δ {met['slu_f1'] - b:+.3f} [" in line and line.endswith("; utterance bootstrap‡)")
