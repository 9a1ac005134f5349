"""The generation (slot filling) sweep end to end on tiny scratch models: which runs it plans,
the stored N-best lists and candidate pool, (c)DPO bookkeeping, metrics recomputed from the
stored texts, resume, the report; plus the generation config's defaults and errors.

One session-scoped sweep (tests/gen_workspace.py: word-level 1-layer student, gpt-char and
gpt-word teachers trained from scratch, 24/12/8 utterances) is shared by every test that reads a
workspace, here and in the dashboard tests; the tests that rerun it come last in the file, and
only add or rewrite what a resumed sweep would.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from gen_workspace import EPS, MAIN, N_TEST, N_TRANSFER, TEACHERS

from w2s_core import catalog
from w2s_core.catalog import gen_methods
from w2s_core.cli import main
from w2s_core.data.prompts import format_slots
from w2s_core.data.registry import load_slot_dataset
from w2s_core.data.schema import DataConfig
from w2s_core.errors import W2SError
from w2s_core.experiments import gen_report, store
from w2s_core.experiments.config import ExperimentConfig
from w2s_core.experiments.gen_config import DPOSettings, GenerationConfig, GenOptions
from w2s_core.experiments.runspec import RunSpec
from w2s_core.experiments.sweep import Sweep
from w2s_core.metrics.slu import parse_slots, slu_f1

K1_METHODS = {"single-hard", "single-soft", "bayes", "bayes-restricted"}
K2_METHODS = {"naive-soft", "joint", "bayes", "bayes-restricted"}
RATES = ("slu_f1", "slu_precision", "slu_recall", "span_f1", "json_validity", "empty_rate",
         "unknown_type_rate")


@pytest.fixture(scope="module")
def gen(gen_workspace: SimpleNamespace) -> SimpleNamespace:
    """The session's tiny generation sweep (tests/gen_workspace.py, shared with the dashboard
    tests), with its stored files read once."""
    ws, cfg = gen_workspace.ws, gen_workspace.cfg
    exp = store.experiment_dir(ws, gen_workspace.exp_id)
    runs = store.read_parquet(exp.run_index)
    # the main sweep's runs (the extra sweeps add frozen/live bayes runs and a second seed)
    main = runs["seed"] == MAIN["seed"]
    for opt in ("target_mode", "joint_score"):  # ceilings have no options (NaN)
        main &= runs[f"opt_{opt}"].isna() | (runs[f"opt_{opt}"] == MAIN[opt])
    runs = runs[main].reset_index(drop=True)
    configs = {r: store.read_json(exp.run_dir(r) / "config.json") for r in runs["run_id"]}
    metrics = {r: store.read_json(exp.run_dir(r) / "metrics.json") for r in runs["run_id"]}
    meta = store.read_json(exp.meta)
    stems = meta["teacher_files"]["0"]
    ds = load_slot_dataset(DataConfig("atis-slots"))
    return SimpleNamespace(
        cfg=cfg, ws=ws, exp=exp, logs=gen_workspace.logs, runs=runs, configs=configs,
        metrics=metrics, meta=meta, gold=dict(zip(ds.ids, ds.slots, strict=True)),
        examples=store.read_parquet(exp.examples),
        teacher_meta={t: store.read_json(exp.teacher_meta(s)) for t, s in stems.items()},
        nbest={t: store.read_parquet(exp.teacher_preds(s)) for t, s in stems.items()})


def _split_ids(g: SimpleNamespace, split: str) -> list[str]:
    ex = g.examples
    return list(ex.loc[ex["split"] == split, "example_id"])


# ---------------------------------------------------------------- planning and the run index
def test_every_method_runs_on_the_subsets_it_applies_to(gen: SimpleNamespace) -> None:
    runs = gen.runs
    assert set(runs["task"]) == {"generation"}
    assert sorted(runs["kind"].unique()) == ["ceiling", "dpo", "transfer"]
    assert gen.cfg.methods == tuple(m.name for m in gen_methods())
    tr = runs[runs["kind"] == "transfer"]
    # single-* need exactly one teacher, naive-soft / joint at least two, bayes* any K
    want = sorted([(m, t) for t in TEACHERS for m in K1_METHODS]
                  + [(m, "+".join(TEACHERS)) for m in K2_METHODS])
    assert sorted(zip(tr["method"], tr["subset"], strict=True)) == want
    assert set(tr["k"]) == {1, 2} and not tr["aux"].any()
    assert len(runs[runs["kind"] == "ceiling"]) == 1
    n = len(runs)
    assert f"{n} generation runs planned, 0 already complete, {n} to train" in "\n".join(gen.logs)
    dpo = runs[runs["kind"] == "dpo"]
    assert set(dpo["method"]) == {"bayes"} and set(dpo["subset"]) == {"+".join(TEACHERS)}
    assert sorted(dpo["opt_dpo_eps"]) == sorted(str(e) for e in EPS)
    # one folder per run (the extra sweeps' too), and each stored config re-derives its own
    # folder's run id
    every = store.read_parquet(gen.exp.run_index)
    assert sorted(p.name for p in (gen.exp.root / "runs").iterdir()) == sorted(every["run_id"])
    for rid in every["run_id"]:
        cfg = store.read_json(gen.exp.run_dir(rid) / "config.json")
        assert RunSpec.from_dict(cfg).run_id == rid and cfg["task"] == "generation"


def test_catalog_and_sweep_agree_on_which_methods_apply() -> None:
    from w2s_core.experiments.gen_runs import applies

    for m in gen_methods():
        for k in (1, 2, 3):
            hand = (k == 1 if m.name.startswith("single") else
                    k >= 2 if m.name in ("naive-soft", "joint") else True)
            assert m.applies_to(k) == applies(m.name, k) == hand, (m.name, k)


# ---------------------------------------------------------------- (c)DPO bookkeeping
def test_dpo_runs_store_their_parent_and_a_consistent_delta(gen: SimpleNamespace) -> None:
    dpo = [r for r, c in gen.configs.items() if c["kind"] == "dpo"]
    assert len(dpo) == len(EPS)
    pairs, margins = set(), set()
    for rid in dpo:
        cfg, met = gen.configs[rid], gen.metrics[rid]
        parent = gen.configs[cfg["parent"]]
        assert parent["kind"] == "transfer" and parent["method"] == cfg["method"] == "bayes"
        assert (parent["subset"], parent["seed"], parent["aux"]) == \
            (cfg["subset"], cfg["seed"], False)
        before = gen.metrics[cfg["parent"]]["slu_f1"]
        assert met["before_slu_f1"] == pytest.approx(before, abs=1e-12)
        assert met["delta_slu_f1"] == pytest.approx(met["slu_f1"] - before, abs=1e-12)
        assert 1 <= met["pairs"] <= N_TRANSFER, "no preference pair: DPO trained on nothing"
        pairs.add(met["pairs"])
        margins.add(round(met["dpo_margin_start"], 9))  # the parent's, shared by every ε
        eps = cfg["options"]["dpo"]["eps"]
        if eps == "confidence":  # a mean of (1 + n_l) / (2 + K) with 0 ≤ n_l ≤ K = 2
            assert 1 / 4 <= met["mean_eps"] <= 3 / 4
        else:
            assert met["mean_eps"] == eps
    assert len(pairs) == 1  # every ε trains on the same pairs from the same parent weights
    assert len(margins) == 1
    assert all(np.isfinite(gen.metrics[r]["dpo_margin_end"]) for r in dpo)


# ---------------------------------------------------------------- metrics
def test_metrics_are_rates_and_pgr_follows_floor_and_ceiling(gen: SimpleNamespace) -> None:
    runs = gen.runs
    for col in RATES:
        v = runs[col].astype(float)
        assert ((v >= 0) & (v <= 1)).all(), col
    assert (runs["n"] == N_TEST).all()
    ceiling = float(runs.loc[runs["kind"] == "ceiling", "slu_f1"].iloc[0])
    teacher_f1 = {t: m["slu_f1_test"] for t, m in gen.teacher_meta.items()}
    n_defined = 0
    for rid, cfg in gen.configs.items():
        if cfg["kind"] == "ceiling":
            continue
        met, sub = gen.metrics[rid], cfg["subset"]
        f = [teacher_f1[t] for t in sub]
        assert met["ceiling"] == pytest.approx(ceiling)
        assert met["floor_mean"] == pytest.approx(np.mean(f))
        assert met["floor_best"] == pytest.approx(max(f))
        if len(sub) == 1:
            assert met["floor_joint"] == pytest.approx(f[0])
        for name in ("mean", "best", "joint"):
            floor, defined = met[f"floor_{name}"], met[f"pgr_{name}_defined"]
            assert defined is (ceiling > floor), (rid, name)
            if defined:
                n_defined += 1
                want = (met["slu_f1"] - floor) / (ceiling - floor)
                assert met[f"pgr_{name}"] == pytest.approx(want)
            else:
                assert met[f"pgr_{name}"] is None  # NaN is stored as null, never dropped
    assert 0 < n_defined < 3 * (len(gen.configs) - 1), "fixture should cover both PGR cases"


def test_slu_f1_recomputes_from_the_stored_texts(gen: SimpleNamespace) -> None:
    test_ids = _split_ids(gen, "test")
    assert len(test_ids) == N_TEST
    for rid, met in gen.metrics.items():
        preds = store.load_run_predictions(gen.exp, rid)
        assert list(preds["example_id"]) == test_ids
        gold = [gen.gold[e] for e in preds["example_id"]]
        parsed = [parse_slots(t) for t in preds["text"]]
        s = slu_f1(gold, [p for p, _ in parsed])
        assert met["slu_f1"] == pytest.approx(s["slu_f1"]), rid
        assert met["json_validity"] == pytest.approx(np.mean([ok for _, ok in parsed]))
        assert list(preds["gold"]) == [format_slots(g) for g in gold]
        assert list(preds["valid"]) == [ok for _, ok in parsed]
        # per-utterance counts add up to the corpus counts
        for c in ("tp", "fp", "fn"):
            assert preds[c].sum() == pytest.approx(s[c])
    assert max(m["slu_f1"] for m in gen.metrics.values()) > 0, "no student learnt any slot"


def test_teacher_floors_recompute_from_their_nbest_lists(gen: SimpleNamespace) -> None:
    test_ids = _split_ids(gen, "test")
    for t, df in gen.nbest.items():
        top = df[(df["split"] == "test") & (df["rank"] == 0)].set_index("example_id")
        texts = [top.loc[e, "text"] for e in test_ids]
        want = slu_f1([gen.gold[e] for e in test_ids], [parse_slots(x)[0] for x in texts])
        assert gen.teacher_meta[t]["slu_f1_test"] == pytest.approx(want["slu_f1"]), t
    assert gen.teacher_meta["gpt-word"]["slu_f1_test"] > 0, "gpt-word learnt nothing"


# ---------------------------------------------------------------- stored N-best and pool
def test_teacher_nbest_scores_are_consistent(gen: SimpleNamespace) -> None:
    for t, df in gen.nbest.items():
        for split in ("transfer", "test"):
            part = df[df["split"] == split]
            assert sorted(set(part["example_id"])) == sorted(_split_ids(gen, split)), t
        for r in df.to_dict("records"):
            n = len(r["token_ids"])
            assert len(r["token_logps"]) == len(r["tokens"]) == len(r["starts"]) == n
            assert r["logp"] == pytest.approx(sum(r["token_logps"]) + r["eos_logp"], abs=1e-4)
            assert len(r["word_logps"]) == len(r["text"].split())
            if r["text"].split():  # every token's log-prob lands in exactly one word
                assert sum(r["word_logps"]) == pytest.approx(sum(r["token_logps"]), abs=1e-4)
            assert r["valid"] == parse_slots(r["text"])[1]
        for _, g in df.groupby(["split", "example_id"]):
            assert list(g["rank"]) == list(range(len(g))) and len(g) <= 2  # n_best
            assert g["text"].is_unique
            assert (np.diff(g["norm"].to_numpy()) <= 1e-9).all()  # best first


def test_the_pool_holds_every_teachers_score_of_every_candidate(gen: SimpleNamespace) -> None:
    pools = list((gen.exp.root / "teachers").glob("pool-*.parquet"))
    assert len(pools) == 1
    pool = store.read_parquet(pools[0])
    for t in TEACHERS:
        assert {f"logp__{t}", f"norm__{t}"} <= set(pool.columns)
    for (split, ex), g in pool.groupby(["split", "example_id"]):
        own = {t: df[(df["split"] == split) & (df["example_id"] == ex)]
               for t, df in gen.nbest.items()}
        assert list(g["text"]) == list(dict.fromkeys(x for t in TEACHERS for x in own[t]["text"]))
        for r in g.to_dict("records"):
            assert list(r["sources"]) == [t for t in TEACHERS if r["text"] in set(own[t]["text"])]
            for t in r["sources"]:  # a teacher's own candidate: the pool repeats its score
                mine = own[t][own[t]["text"] == r["text"]].iloc[0]
                assert r[f"logp__{t}"] == pytest.approx(mine["logp"], abs=1e-3)
                assert r[f"norm__{t}"] == pytest.approx(mine["norm"], abs=1e-3)


def test_joint_floor_is_the_pools_mean_lambda_argmax(gen: SimpleNamespace) -> None:
    pool = store.read_parquet(next((gen.exp.root / "teachers").glob("pool-*.parquet")))
    test_ids = _split_ids(gen, "test")
    picks = []
    for e in test_ids:
        g = pool[(pool["split"] == "test") & (pool["example_id"] == e)].sort_values("cand")
        total = sum(0.5 * g[f"logp__{t}"].to_numpy() for t in TEACHERS)  # λ = mean
        best = max(range(len(total)), key=lambda j: (total[j], -j))  # first on ties
        picks.append(g["text"].iloc[best])
    want = slu_f1([gen.gold[e] for e in test_ids], [parse_slots(x)[0] for x in picks])
    k2 = [m for r, m in gen.metrics.items() if len(gen.configs[r]["subset"]) == 2]
    assert k2 and all(m["floor_joint"] == pytest.approx(want["slu_f1"]) for m in k2)


def test_joint_scored_per_character_picks_the_pools_length_normalised_argmax(
        gen: SimpleNamespace) -> None:
    """The per_char option, recomputed from the stored pool: Σ_k λ_k logp_k(c) / (|c| + 1)."""
    runs = store.read_parquet(gen.exp.run_index)
    per_char = runs[runs["opt_joint_score"] == "per_char"]
    assert list(per_char["method"]) == ["joint"]
    rid = per_char["run_id"].iloc[0]
    pool = store.read_parquet(next((gen.exp.root / "teachers").glob("pool-*.parquet")))
    test_ids = _split_ids(gen, "test")
    picks = []
    for e in test_ids:
        g = pool[(pool["split"] == "test") & (pool["example_id"] == e)].sort_values("cand")
        total = sum(0.5 * g[f"logp__{t}"].to_numpy() for t in TEACHERS)
        total = total / np.array([len(t) + 1 for t in g["text"]])
        picks.append(g["text"].iloc[int(np.argmax(total))])
    met = store.read_json(gen.exp.run_dir(rid) / "metrics.json")
    want = slu_f1([gen.gold[e] for e in test_ids], [parse_slots(x)[0] for x in picks])
    assert met["floor_joint"] == pytest.approx(want["slu_f1"])
    # and the student trained toward those picks (the stored targets on test)
    tgt = store.read_parquet(gen.exp.run_dir(rid) / "targets.parquet")
    assert list(tgt["text"]) == picks
    # the option changes the targets: the summed score picks other candidates on this pool
    summed = next(r for r, c in gen.configs.items() if c["method"] == "joint")
    assert picks != list(store.read_parquet(gen.exp.run_dir(summed) / "targets.parquet")["text"])


# ---------------------------------------------------------------- stored read-outs
def _top1(g: SimpleNamespace, teacher: str, ex: str) -> dict:
    df = g.nbest[teacher]
    return df[(df["split"] == "test") & (df["example_id"] == ex) & (df["rank"] == 0)].iloc[0]


def test_transfer_runs_store_what_they_trained_toward_on_test(gen: SimpleNamespace) -> None:
    test_ids = _split_ids(gen, "test")
    tr = [r for r, c in gen.configs.items() if c["kind"] == "transfer"]
    for rid in tr:
        cfg = gen.configs[rid]
        df = store.read_parquet(gen.exp.run_dir(rid) / "targets.parquet")
        sub, method = list(cfg["subset"]), cfg["method"]
        labels = ["joint"] if method == "joint" else sub
        assert list(df["example_id"]) == [e for e in test_ids for _ in labels], rid
        assert list(df["label"]) == labels * len(test_ids)
        assert set(df["mode"]) == {"detached"}
        for r in df.to_dict("records"):
            n = len(r["token_ids"])
            assert len(r["q"]) == len(r["tokens"]) == len(r["conf"]) == len(r["topk_probs"]) == n
            assert np.allclose(np.sum(np.stack(r["topk_probs"]), 1) <= 1 + 1e-5, True)
            edl = method.startswith("bayes")
            assert (len(r["evidence"]) == n) == edl and (len(r["vacuity"]) == n) == edl
            if edl:
                assert all(0 < v <= 1 for v in r["vacuity"])
            if method == "joint":
                assert r["weight"] == 1.0 and np.allclose(r["q"], 1.0)
                continue
            top = _top1(gen, r["label"], r["example_id"])
            assert r["text"] == top["text"]
            # the teacher's own score of its own top-1, read back from the pool
            assert r[f"norm__{r['label']}"] == pytest.approx(top["norm"], abs=1e-3)
            if method == "single-hard":
                assert np.allclose(r["q"], 1.0)
                continue
            for w, lp in enumerate(top["word_logps"]):  # the bridge's product property
                prod = np.prod([q for q, i in zip(r["q"], r["word_ids"], strict=True) if i == w])
                assert prod == pytest.approx(np.exp(lp), rel=1e-3)
        if len(sub) > 1 and method != "joint":  # λ = mean over the subset
            assert np.allclose(df["weight"], 1 / len(sub))
    ceiling = next(r for r, c in gen.configs.items() if c["kind"] == "ceiling")
    assert not (gen.exp.run_dir(ceiling) / "targets.parquet").exists()


def test_every_run_stores_token_calibration_on_gold(gen: SimpleNamespace) -> None:
    for rid in gen.configs:
        preds = store.read_parquet(gen.exp.run_dir(rid) / "predictions.parquet")
        assert len(preds) == N_TEST
        for r in preds.to_dict("records"):
            n = len(r["tok_pieces"])
            assert n >= 2 and len(r["tok_conf"]) == len(r["tok_correct"]) == n
            assert all(0 < c <= 1 for c in r["tok_conf"])


def test_every_run_stores_its_own_scores_of_what_it_wrote(gen: SimpleNamespace) -> None:
    """The student's log-probs of its own output (text + EOS under teacher forcing): one per
    token, summing with EOS to logp, words partitioning the tokens, pieces spelling the text
    (the tiny student's vocabulary misses some characters: those pieces read <unk>)."""
    for rid in gen.configs:
        preds = store.read_parquet(gen.exp.run_dir(rid) / "predictions.parquet")
        for r in preds.to_dict("records"):
            lps = list(r["token_logps"])
            assert len(lps) == len(r["tokens"]) and all(lp <= 0 for lp in lps)
            spelled = "".join(r["tokens"]).strip()  # a piece outside the vocabulary: <unk>
            assert spelled == r["text"].strip() or "<unk>" in spelled
            assert r["logp"] == pytest.approx(sum(lps) + r["eos_logp"], abs=1e-4)
            assert r["norm"] == pytest.approx(r["logp"] / (len(lps) + 1), abs=1e-5)
            assert len(r["word_logps"]) == len(r["text"].split())
            assert sum(r["word_logps"]) == pytest.approx(sum(lps), abs=1e-3)


def test_dpo_runs_store_their_pairs_with_the_ensembles_scores(gen: SimpleNamespace) -> None:
    transfer = set(_split_ids(gen, "transfer"))
    for rid, cfg in gen.configs.items():
        if cfg["kind"] != "dpo":
            continue
        pairs = store.read_parquet(gen.exp.run_dir(rid) / "pairs.parquet")
        met, eps = gen.metrics[rid], cfg["options"]["dpo"]["eps"]
        assert len(pairs) == met["pairs"] and set(pairs["example_id"]) <= transfer
        for r in pairs.to_dict("records"):
            w = np.asarray(r["weights"])
            for side in ("chosen", "rejected"):
                s = np.array([r[f"{side}__{t}"] for t in TEACHERS])
                assert r[f"score_{side}"] == pytest.approx(float(w @ s), abs=1e-9)
            assert r["score_chosen"] >= r["score_rejected"] and r["chosen"] != r["rejected"]
            # each teacher a λ-weighted vote for "rejected is better" (a tie is half a vote)
            vote = [1.0 if r[f"rejected__{t}"] > r[f"chosen__{t}"] else
                    0.5 if r[f"rejected__{t}"] == r[f"chosen__{t}"] else 0.0 for t in TEACHERS]
            n_l = len(TEACHERS) * float(w @ np.array(vote)) / w.sum()
            assert r["pair_eps"] == pytest.approx((1 + n_l) / (2 + len(TEACHERS)))
        want = pairs["pair_eps"] if eps == "confidence" else np.full(len(pairs), eps)
        assert np.allclose(pairs["eps"], want)
        if eps == "confidence":
            assert met["mean_eps"] == pytest.approx(float(pairs["pair_eps"].mean()))


# ---------------------------------------------------------------- report
def test_report_shows_slu_f1_by_method_and_the_dpo_section(gen: SimpleNamespace,
                                                           capsys: pytest.CaptureFixture) -> None:
    assert main(["report", "--workspace", str(gen.ws)]) == 0
    out = capsys.readouterr().out
    assert "SLU-F1, exact span F1 and PGR" in out and "weak floors (test): SLU-F1" in out
    rows = [ln.split() for ln in out.splitlines() if ln.startswith("  ")]
    shown = {(r[0], r[2]) for r in rows if len(r) > 2 and r[1] == "no"}
    assert shown == {(m, "1") for m in K1_METHODS} | {(m, "2") for m in K2_METHODS}
    assert "(c)DPO after transfer" in out
    for e in EPS:
        assert f"ε={e}" in out
    assert main(["report", "--workspace", str(gen.ws), "--format", "json"]) == 0
    rep = json.loads(capsys.readouterr().out)[0]
    every = store.read_parquet(gen.exp.run_index)  # both seeds, every setting
    # one DPO row per (setting, ε): the three bridge modes' settings each ran DPO after bayes
    assert rep["task"] == "generation" and len(rep["dpo"]) == 3 * len(EPS)
    tr = every[every["kind"] == "transfer"]
    assert rep["span"] and len(rep["span"]) == len(rep["score"])
    for x in rep["span"]:  # exact span F1 beside SLU-F1, from the run index
        g = tr[(tr["setting"] == x["setting"]) & (tr["method"] == x["method"])
               & (tr["aux"] == x["aux"]) & (tr["k"] == x["k"])]
        assert x["mean"] == pytest.approx(g["span_f1"].mean()) and x["n"] == len(g)
    ceiling = float(every.loc[every["kind"] == "ceiling", "slu_f1"].mean())
    for t in rep["teachers"]:  # the gap check, against the stored teacher metrics
        assert t["below_ceiling"] == (gen.teacher_meta[t["teacher"]]["slu_f1_test"] < ceiling)
    below = all(t["below_ceiling"] for t in rep["teachers"])
    assert ("every teacher is below the ceiling" in out) == below
    dpo = every[every["kind"] == "dpo"]
    for d in rep["dpo"]:
        mine = dpo[(dpo["setting"] == d["setting"]) & (dpo["opt_dpo_eps"] == d["eps"])]
        parents = [store.read_json(gen.exp.run_dir(r) / "config.json")["parent"]
                   for r in mine["run_id"]]
        before = np.mean([store.read_json(gen.exp.run_dir(p) / "metrics.json")["slu_f1"]
                          for p in parents])
        assert d["n"] == len(mine) and d["before"] == pytest.approx(before)
        assert d["mean"] == pytest.approx(d["after"] - d["before"])
        for end in ("start", "end"):  # the policy margins, from each DPO run's metrics
            want = np.mean([store.read_json(gen.exp.run_dir(r) / "metrics.json")
                            [f"dpo_margin_{end}"] for r in mine["run_id"]])
            assert d[f"margin_{end}"] == pytest.approx(want)
    assert "policy margin" in out
    # one option apart (the bridge modes for bayes, the joint score): paired a − b, seed 0
    con = {(c["label"], c["method"], c["k"]): c for c in rep["contrasts"]}
    assert {(lab, m) for lab, m, _ in con} == {
        ("target_mode=frozen − target_mode=detached", "bayes"),
        ("target_mode=live − target_mode=detached", "bayes"),
        ("target_mode=live − target_mode=frozen", "bayes"),
        ("joint_score=per_char − joint_score=sum", "joint")}
    for c in con.values():  # the mean over teacher subsets of each subset's seed-0 difference
        f1 = {s: tr[(tr["setting"] == s) & (tr["method"] == c["method"]) & (tr["seed"] == 0)
                    & (tr["k"] == c["k"])].set_index("subset")["slu_f1"] for s in (c["a"], c["b"])}
        diff = (f1[c["a"]] - f1[c["b"]]).dropna()
        assert c["pairs"] == len(diff) > 0 and c["mean"] == pytest.approx(diff.mean())
    assert "one option changed, all else equal" in out
    assert "target_mode=live − target_mode=detached" in out


# ---------------------------------------------------------------- resume (mutates the workspace)
def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")
            if p.is_file()}


def test_a_rerun_trains_nothing_and_a_lost_run_is_recomputed_alone(gen: SimpleNamespace) -> None:
    runs_dir, teach_dir = gen.exp.root / "runs", gen.exp.root / "teachers"
    before_runs, before_teach = _mtimes(runs_dir), _mtimes(teach_dir)
    n = len(gen.configs)
    logs: list[str] = []
    Sweep(gen.cfg, gen.ws, progress=False, log=logs.append).run()
    assert any(f"{n} generation runs planned, {n} already complete, 0 to train" in x
               for x in logs), logs
    assert _mtimes(runs_dir) == before_runs and _mtimes(teach_dir) == before_teach
    for t, met in gen.teacher_meta.items():  # the stored floors are printed on resume too
        assert (f"teacher {t}: SLU-F1 test {met['slu_f1_test']:.3f}, JSON valid "
                f"{met['json_validity_test']:.2f} (stored)") in logs

    lost = next(r for r, c in gen.configs.items()
                if c["method"] == "single-hard" and c["subset"] == ["gpt-word"])
    (runs_dir / lost / "metrics.json").unlink()
    logs.clear()
    Sweep(gen.cfg, gen.ws, progress=False, log=logs.append).run()
    assert any(f"{n - 1} already complete, 1 to train" in x for x in logs), logs
    after = _mtimes(runs_dir)
    changed = {k for k in after if after[k] != before_runs.get(k)}
    assert changed and {k.split("/")[0] for k in changed} == {lost}
    assert _mtimes(teach_dir) == before_teach
    redone = store.read_json(runs_dir / lost / "metrics.json")
    assert redone["slu_f1"] == pytest.approx(gen.metrics[lost]["slu_f1"])  # same seed, same run
    assert lost in set(store.read_parquet(gen.exp.run_index)["run_id"])


def test_a_run_of_an_older_method_revision_is_left_out_and_recomputed_alone(
        gen: SimpleNamespace) -> None:
    """A fix that changes a method's results bumps its catalog revision: stored runs of the
    older revision keep their id but are left out of every table (with a warning that names
    the fix) until the next sweep recomputes them in place, alone."""
    runs_dir = gen.exp.root / "runs"
    old = next(r for r, c in gen.configs.items() if c["kind"] == "transfer"
               and c["method"] == "bayes" and c["subset"] == ["gpt-word"] and not c["aux"])
    assert gen.configs[old]["revision"] == catalog.revision("generation", "bayes") == 2
    assert gen.configs[next(r for r, c in gen.configs.items()
                            if c["method"] == "naive-soft")]["revision"] == 1
    n = len(store.load_runs(gen.exp)[0])
    path = runs_dir / old / "config.json"
    # as if stored by revision 1 (the index is derived from the run folders: rebuild it)
    store.write_json(path, {**store.read_json(path), "revision": 1})
    gen.exp.run_index.unlink()
    df, warns = store.load_runs(gen.exp)
    assert old not in set(df["run_id"]) and len(df) == n - 1
    assert [w for w in warns if "left out" in w] == [
        "1 generation run(s) of bayes left out: computed by an older revision of the method ("
        + catalog.method_info("generation", "bayes").revision_note  # type: ignore[union-attr]
        + "); rerun `w2s sweep` with the same config to recompute them"]
    # the rebuilt index keeps the stale run (with its revision): readers of it still warn
    with pytest.warns(UserWarning, match="run\\(s\\) of bayes left out"):
        current = store.write_run_index(gen.exp)
    assert len(current) == n - 1 and old in set(store.read_parquet(gen.exp.run_index)["run_id"])
    rep = gen_report.report(gen.exp)
    assert rep["n_runs"] == n - 1 and any("left out" in w for w in rep["warnings"])

    before = _mtimes(runs_dir)
    logs: list[str] = []
    Sweep(gen.cfg, gen.ws, progress=False, log=logs.append).run()
    assert any("already complete, 1 to train" in x for x in logs), logs
    after = _mtimes(runs_dir)
    assert {k.split("/")[0] for k in after if after[k] != before.get(k)} == {old}
    assert store.read_json(path)["revision"] == 2
    redone = store.read_json(runs_dir / old / "metrics.json")
    assert redone["slu_f1"] == pytest.approx(gen.metrics[old]["slu_f1"])  # same code, same run
    df, warns = store.load_runs(gen.exp)
    assert old in set(df["run_id"]) and not [w for w in warns if "left out" in w]


# ---------------------------------------------------------------- config (no sweep)
def test_the_quick_demo_plans_every_method_once(tmp_path: Path) -> None:
    """The quick demo's promise (every method at least once, DPO with each ε), from its plan:
    single-teacher methods at K = 1, the others at K = 3 (``method_sizes`` keeps the Bayesian
    ones off K = 1), (c)DPO after bayes (the paper's protocol)."""
    from w2s_core.experiments.config import GEN_METHOD_NAMES, gen_demo_config
    from w2s_core.experiments.gen_runs import GenerationRuns

    cfg = gen_demo_config(quick=True)
    sw = Sweep(cfg, tmp_path, progress=False, log=lambda _m: None)
    plan = GenerationRuns(sw, SimpleNamespace(data_seed=0, pairs=lambda _s: []), None,
                          "cpu").plan()  # type: ignore[arg-type]
    transfer = [(p.method, len(p.subset)) for p, _ in plan if p.kind == "transfer"]
    assert {m for m, _ in transfer} == set(GEN_METHOD_NAMES)
    assert sorted(transfer) == [("bayes", 3), ("bayes-restricted", 3), ("joint", 3),
                                ("naive-soft", 3), ("single-hard", 1), ("single-soft", 1)]
    kids = [k for p, ks in plan for k in ks]
    assert [p.method for p, ks in plan if ks] == ["bayes"]
    assert all(len(p.subset) == 3 for p, ks in plan if ks)
    assert sorted(str(k.options["dpo"]["eps"]) for k in kids) == ["0.0", "0.1", "confidence"]


def test_generation_defaults_replace_the_classification_ones() -> None:
    c = ExperimentConfig(task="generation")
    assert c.teachers == ("gpt-char", "gpt-word", "gpt-bpe")
    assert c.student == "smollm2-135m" and c.data.name == "atis-slots"
    assert c.methods == ("single-hard", "single-soft", "naive-soft", "joint", "bayes",
                         "bayes-restricted")
    kept = ExperimentConfig(task="generation", teachers=("gpt-word",), student="x/y",
                            data=DataConfig("slots-file", path="s.jsonl", n_weak=7))
    assert (kept.teachers, kept.student, kept.data.name, kept.data.n_weak) == \
        (("gpt-word",), "x/y", "slots-file", 7)
    cls = ExperimentConfig()
    assert cls.student == "mpnet-base" and cls.data.name == "tweets" and "vote" in cls.methods


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"data": DataConfig("atis-intent")}, "classification"),
    ({"data": DataConfig("tweets-3class")}, "classification"),
    ({"teachers": ("gpt-word", "minilm-l6")}, "causal"),
    ({"student": "minilm-l6"}, "causal"),
    ({"methods": ("bayes", "vote")}, "unknown generation method"),
    ({"methods": ()}, "unknown generation method"),
    ({"gen_options": GenOptions(lam=(1.0, 2.0))}, "lam"),
    ({"gen_options": GenOptions(lam="uniform")}, "lam"),
    ({"gen_options": GenOptions(lam=(1.0, 0.0, 1.0))}, "weight ≤ 0"),
    ({"data": DataConfig("atis-slotz")}, "unknown dataset 'atis-slotz'"),
    ({"generation": GenerationConfig(dpo=DPOSettings(after=("vote",)))}, "dpo.after"),
    ({"generation": GenerationConfig(num_beams=2, n_best=3)}, "n_best"),
])
def test_bad_generation_configs_are_user_errors(kwargs: dict, words: str) -> None:
    with pytest.raises(W2SError, match=words):
        ExperimentConfig(task="generation", **kwargs).validate()


# ---------------------------------------------------------------- run identity
def test_the_task_field_leaves_classification_run_ids_unchanged() -> None:
    args = dict(experiment_id="e-1", kind="transfer", method="bayes", subset=("a", "b"),
                aux=False, seed=0, data_seed=0, train={"student": "s"}, options={"x": 1})
    cls, gen = RunSpec(**args), RunSpec(**args, task="generation")
    assert "task" not in cls.to_dict() and gen.to_dict()["task"] == "generation"
    # the id a classification run had before the task field existed, hashed by hand
    old = {"experiment_id": "e-1", "kind": "transfer", "method": "bayes", "subset": ["a", "b"],
           "k": 2, "aux": False, "seed": 0, "data_seed": 0, "train": {"student": "s"},
           "options": {"x": 1}, "validation_labels": "none"}
    blob = json.dumps(old, sort_keys=True, separators=(",", ":")).encode()
    assert cls.run_id == hashlib.sha256(blob).hexdigest()[:12]
    assert gen.run_id != cls.run_id
    assert RunSpec.from_dict(gen.stored_config()).run_id == gen.run_id
    assert gen.index_row()["task"] == "generation" and cls.index_row()["task"] == "classification"


def _study_config_plan(name: str, tmp_path: Path) -> list:
    """Every item of ``configs/<name>`` planned (nothing trained); each item must grow the CPU
    study's experiment (configs/gen-cpu-study.yaml's id)."""
    from w2s_core.experiments.config_files import load_config, load_configs
    from w2s_core.experiments.gen_runs import GenerationRuns

    root = Path(__file__).resolve().parents[1] / "configs"
    items = load_configs(root / name)
    assert {c.experiment_id() for c in items} == \
        {load_config(root / "gen-cpu-study.yaml").experiment_id()}
    return [r for c in items for r in GenerationRuns(
        Sweep(c, tmp_path, progress=False, log=lambda _m: None),
        SimpleNamespace(data_seed=0, pairs=lambda _s: []), None,
        "cpu").plan()]  # type: ignore[arg-type]


def test_the_target_modes_config_grows_the_same_experiment(tmp_path: Path) -> None:
    """configs/gen-target-modes.yaml: the CPU study's experiment, single-soft at K = 1 and
    naive-soft at K = 3 for seeds 0–2 in each bridge target mode (one setting per mode), the
    ceiling per seed, no DPO."""
    runs = _study_config_plan("gen-target-modes.yaml", tmp_path)
    transfer = sorted((p.method, len(p.subset), p.seed, p.options["target_mode"])
                      for p, _ in runs if p.kind == "transfer")
    assert transfer == sorted((m, k, s, t) for m, k in (("single-soft", 1), ("naive-soft", 3))
                              for s in (0, 1, 2) for t in ("detached", "frozen", "live"))
    assert {p.seed for p, _ in runs if p.kind == "ceiling"} == {0, 1, 2}
    assert not [k for _, ks in runs for k in ks]
    modes = {p.setting: p.options["target_mode"] for p, _ in runs if p.kind == "transfer"}
    assert sorted(modes.values()) == ["detached", "frozen", "live"]  # a setting per mode


def test_the_edl_ablation_config_grows_the_same_experiment(tmp_path: Path) -> None:
    """configs/gen-edl-ablation.yaml: bayes at K = 3, seeds 0–2, in the default setting, without
    the KL term and with softplus evidence (one option changed each), and bayes-restricted in
    the default setting; its dpo.after: [] plans no DPO run."""
    from w2s_core.experiments.gen_config import GenOptions

    runs = _study_config_plan("gen-edl-ablation.yaml", tmp_path)
    d = GenOptions()
    transfer = sorted((p.method, len(p.subset), p.seed, p.options["kl_scale"],
                       p.options["evidence"]) for p, _ in runs if p.kind == "transfer")
    assert transfer == sorted([("bayes", 3, s, kl, ev) for s in (0, 1, 2) for kl, ev in (
        (d.kl_scale, d.evidence), (0.0, d.evidence), (d.kl_scale, "softplus"))]
        + [("bayes-restricted", 3, s, d.kl_scale, d.evidence) for s in (0, 1, 2)])
    assert not [k for _, ks in runs for k in ks]


def test_the_cpu_study_seeds_config_grows_the_same_experiment(tmp_path: Path) -> None:
    """configs/gen-cpu-study-seeds.yaml adds runs to gen-cpu-study.yaml's experiment (every item
    has its id): the ceiling and naive-soft / bayes at K = 3, ± aux, for seeds 0–2 with DPO after
    each seed's bayes without aux; joint with the summed and the per_char score — the runs
    README's generation intervals come from."""
    from w2s_core.experiments.config_files import load_config, load_configs
    from w2s_core.experiments.gen_runs import GenerationRuns

    root = Path(__file__).resolve().parents[1] / "configs"
    study = load_config(root / "gen-cpu-study.yaml")
    items = load_configs(root / "gen-cpu-study-seeds.yaml")
    assert {c.experiment_id() for c in items} == {study.experiment_id()} == \
        {"gen-cpu-study-cc4f740865a5"}
    plans = [GenerationRuns(Sweep(c, tmp_path, progress=False, log=lambda _m: None),
                            SimpleNamespace(data_seed=0, pairs=lambda _s: []), None,
                            "cpu").plan() for c in items]  # type: ignore[arg-type]
    seeds = (0, 1, 2)
    for plan in plans:
        assert sorted(p.seed for p, _ in plan if p.kind == "ceiling") == [0, 1, 2]
    transfer = [sorted((p.method, len(p.subset), p.aux, p.seed, p.options.get("joint_score"))
                       for p, _ in plan if p.kind == "transfer") for plan in plans]
    assert transfer[0] == sorted((m, 3, a, s, "sum") for m in ("naive-soft", "bayes")
                                 for a in (False, True) for s in seeds)
    assert transfer[1] == [("joint", 3, False, s, "sum") for s in seeds]
    assert transfer[2] == [("joint", 3, False, s, "per_char") for s in seeds]
    dpo = sorted((p.method, p.aux, p.seed, str(k.options["dpo"]["eps"]))
                 for p, ks in plans[0] for k in ks)
    assert dpo == sorted(("bayes", False, s, e) for s in seeds
                         for e in ("0.0", "0.1", "confidence"))
    assert not [k for plan in plans[1:] for _, ks in plan for k in ks]  # DPO follows bayes only
