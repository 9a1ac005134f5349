"""The Generation page's pure parts on hand-made frames with hand-computed expectations:
probability colours and word / token spans, the teacher-disagreement ranking and search, joint
decoding from the candidate pool, the student against gold and its SLU-F1 contribution, the
bridge-mode sibling runs, the token soft-label and Dirichlet figures, and the DPO summary."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from w2s_core.viz import gen_dpo as gd
from w2s_core.viz import gen_tokens as gt
from w2s_core.viz import generation as gv

# LOW = #e4572e = (228, 87, 46), HIGH = #3a9e6f = (58, 158, 111)
TITLE = re.compile(r'title="([^"]*)"')
BG = re.compile(r"background-color:(rgba\([^)]*\))")


# ---------------------------------------------------------------- colours and spans
@pytest.mark.parametrize(("p", "rgba"), [
    (0.0, "rgba(228,87,46,0.45)"),
    (1.0, "rgba(58,158,111,0.45)"),
    (0.2, "rgba(194,101,59,0.45)"),   # 228−34, 87+14.2, 46+13
    (0.5, "rgba(143,123,79,0.45)"),   # 143, 122.5 → 123 (half up), 78.5 → 79
    (1.7, "rgba(58,158,111,0.45)"),   # clipped
    (float("nan"), "rgba(0,0,0,0)"),
])
def test_prob_color_interpolates_low_to_high(p: float, rgba: str) -> None:
    assert gv.prob_color(p) == rgba


def test_word_spans_colour_each_word_by_its_probability_and_escape() -> None:
    text = '{"a": "<b>x y"}'
    html = gv.word_spans(text, [math.log(0.5), math.log(0.2)])
    assert BG.findall(html) == ["rgba(143,123,79,0.45)", "rgba(194,101,59,0.45)",
                                "rgba(0,0,0,0)"]  # the third word has no score
    assert TITLE.findall(html) == ["log p = -0.693 · p = 0.500", "log p = -1.609 · p = 0.200",
                                   "no score"]
    assert "<b>" not in html and "&lt;b&gt;x" in html
    assert gv.word_spans("", []) == "<i>(empty output)</i>"


def test_slot_chips_list_pairs_escaped() -> None:
    chips = gv.slot_chips('{"a.b": "x & <y>", "c": "z"}')
    assert re.findall(r"<small>(.*?)</small> = <b>(.*?)</b>", chips) == [
        ("a.b", "x"), ("a.b", "&lt;y&gt;"), ("c", "z")]  # " & " joins a repeated type's values
    assert gv.slot_chips("{}") == "<i>no slots</i>"
    assert gv.slot_chips('{"a": ') == "<i>invalid JSON: no slots</i>"


# ---------------------------------------------------------------- disagreement and ranking
A = '{"fromloc.city_name": "boston", "toloc.city_name": "denver"}'
B = '{"fromloc.city_name": "Boston", "toloc.city_name": "dallas"}'


def test_disagreement_counts_sets_and_jaccard() -> None:
    # A = {(from, boston), (to, denver)}, B = {(from, boston), (to, dallas)} (case normalised),
    # "oops" is invalid → ∅; J(A,B) = 1/3, J(A,∅) = J(B,∅) = 0 → 1 − (1/3)/3 = 8/9
    n, d = gv.disagreement([A, B, "oops"])
    assert n == 3 and d == pytest.approx(8 / 9)
    assert gv.disagreement([A, A.replace("boston", "BOSTON")]) == (1, 0.0)
    assert gv.disagreement([A]) == (1, 0.0)
    assert gv.jaccard(frozenset(), frozenset()) == 1.0


def _nbest(rows: list[tuple[str, str, int, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["example_id", "split", "rank", "text"]).assign(
        logp=-1.0, norm=-0.5, valid=True, word_logps=[[-0.5]] * len(rows))


def teachers() -> dict[str, pd.DataFrame]:
    one = '{"fromloc.city_name": "boston", "toloc.city_name": "miami"}'
    t1 = _nbest([("u1", "test", 0, A), ("u1", "test", 1, B), ("u2", "test", 0, A),
                 ("u3", "test", 0, A), ("u4", "test", 0, "x"), ("t9", "transfer", 0, A)])
    t2 = _nbest([("u1", "test", 0, A), ("u2", "test", 0, one), ("u3", "test", 0, "{}"),
                 ("u4", "test", 0, "y"), ("t9", "transfer", 0, "{}")])
    return {"t1": t1, "t2": t2}


def test_rank_utterances_most_disagreed_first_ties_in_stored_order() -> None:
    texts = {"u1": "from boston to denver", "u2": "Boston to Miami", "u3": "x", "u4": "y"}
    ranked = gv.rank_utterances(teachers(), ["t1", "t2"], texts)
    # u3: 2 sets, J = 0 → 1; u2: 2 sets, J = 1/3 → 2/3; u1, u4: agree (u4: both invalid → ∅)
    assert ranked["example_id"].tolist() == ["u3", "u2", "u1", "u4"]
    assert ranked["distinct"].tolist() == [2, 2, 1, 1]
    np.testing.assert_allclose(ranked["disagreement"], [1.0, 2 / 3, 0.0, 0.0])
    assert gv.search(ranked, "MIAMI")["example_id"].tolist() == ["u2"]
    assert gv.search(ranked, "u4")["example_id"].tolist() == ["u4"]
    assert len(gv.search(ranked, "  ")) == 4
    assert gv.search(ranked, "nowhere").empty


def test_nbest_rows_best_first_with_sequence_probability() -> None:
    nb = gv.nbest(teachers(), "u1", ["t1", "t2", "absent"])
    assert nb[["teacher", "rank"]].values.tolist() == [["t1", 0], ["t1", 1], ["t2", 0]]
    np.testing.assert_allclose(nb["p_seq"], np.exp(-1.0))
    html = gv.nbest_html(nb, ["t2", "t1"], {"t1"})  # the page's teacher order is kept
    heads = re.findall(r"<b>(\w+)</b> · ([^·]+) · (\d+)-best", html)
    assert heads == [("t2", "not in the run's subset", "1"),
                     ("t1", "in the run's subset", "2")]
    ranks = re.findall(r"<small>#(\d) · log p = (-?[\d.]+)", html)
    assert ranks == [("1", "-1.00"), ("1", "-1.00"), ("2", "-1.00")]
    # each candidate's words are the word_spans of its text and word log-probs
    for r in nb.itertuples():
        assert gv.word_spans(r.text, r.word_logps) in html


# ---------------------------------------------------------------- λ and joint decoding
def test_ensemble_weights_mean_dynamic_and_fixed() -> None:
    top1 = pd.DataFrame({"teacher": ["a", "b", "c"], "word_logps": [[-1.0, -3.0], [-1.0], []],
                         "norm": [-9.0, -9.0, -0.5]})
    assert gv.ensemble_weights("mean", top1, ["a", "b"]) == {"a": 0.5, "b": 0.5}
    # dynamic: softmax of the mean word log-probs −2 and −1 → 1/(1+e), e/(1+e)
    dyn = gv.ensemble_weights("dynamic", top1, ["a", "b"])
    assert dyn["a"] == pytest.approx(1 / (1 + math.e)) and \
        dyn["b"] == pytest.approx(math.e / (1 + math.e))
    # c has no words: its norm −0.5 stands in → softmax(−2, −0.5)
    dyn_c = gv.ensemble_weights("dynamic", top1, ["a", "c"])
    assert dyn_c["c"] == pytest.approx(1 / (1 + math.exp(-1.5)))
    # fixed weights are given per experiment teacher; the subset's are renormalised
    assert gv.ensemble_weights([3.0, 5.0, 1.0], top1, ["a", "c"], ["a", "b", "c"]) == \
        pytest.approx({"a": 0.75, "c": 0.25})


def pool() -> pd.DataFrame:
    return pd.DataFrame({
        "example_id": ["e1", "e1", "e1", "e2"], "split": "test", "cand": [0, 1, 2, 0],
        "text": ["one", "two", "three", "other"], "sources": [["a"], ["b"], ["c"], ["a"]],
        "logp__a": [-1.0, -4.0, -0.1, -1.0], "logp__b": [-10.0, -3.0, -0.1, -1.0],
        "norm__a": [-0.5, -2.0, -0.1, -0.5], "norm__b": [-5.0, -1.5, -0.1, -0.5]})


def test_joint_candidates_pick_the_lambda_weighted_argmax_of_the_subset_pool() -> None:
    j = gv.joint_candidates(pool(), "e1", {"a": 0.5, "b": 0.5})
    # "three" came from teacher c only: not in this subset's pool; scores −5.5 and −3.5
    assert j["text"].tolist() == ["two", "one"]
    np.testing.assert_allclose(j["score"], [-3.5, -5.5])
    assert j["joint"].tolist() == [True, False]
    j = gv.joint_candidates(pool(), "e1", {"a": 0.9, "b": 0.1})  # −1.9 vs −3.9
    assert j.loc[j["joint"], "text"].tolist() == ["one"]
    assert gv.joint_candidates(pool(), "e1", {"zz": 1.0}).empty  # a teacher the pool lacks
    # per_char: each summed score ÷ (characters + 1) = ÷ 4 for "one" and "two"
    j = gv.joint_candidates(pool(), "e1", {"a": 0.5, "b": 0.5}, mode="per_char")
    np.testing.assert_allclose(j["score"], [-3.5 / 4, -5.5 / 4])
    # per_token: each teacher's own norm, λ-weighted
    j = gv.joint_candidates(pool(), "e1", {"a": 0.9, "b": 0.1}, mode="per_token")
    np.testing.assert_allclose(j["score"], [0.9 * -0.5 + 0.1 * -5.0, 0.9 * -2.0 + 0.1 * -1.5])
    assert j.loc[j["joint"], "text"].tolist() == ["one"]


# ---------------------------------------------------------------- the student vs gold
def test_slot_comparison_marks_match_partial_missed_extra() -> None:
    cmp = gv.slot_comparison('{"a": "x", "b": "y", "c": "z"}', '{"a": "X", "b": "w", "d": "q"}')
    assert cmp.values.tolist() == [["a", "x", "X", "✓"], ["b", "y", "w", "≈"],
                                   ["c", "z", "", "missed"], ["d", "", "q", "extra"]]
    assert gv.slot_comparison('{"a": "x"}', "not json")["match"].tolist() == ["missed"]


def test_utterance_contribution_is_corpus_f1_minus_f1_without_it() -> None:
    preds = pd.DataFrame({"example_id": ["e1", "e2", "e3"], "tp": [2.0, 0.0, 1.0],
                          "fp": [0.0, 1.0, 1.0], "fn": [0.0, 1.0, 0.0],
                          "utt_slu_f1": [1.0, 0.0, 2 / 3]})
    out = gv.utterance_contribution(preds, "e2")
    # all: TP 3, FP 2, FN 1 → P = 3/5, R = 3/4 → F1 = 2PR/(P+R) = 2/3; without e2: 6/7
    assert out["corpus"] == pytest.approx(2 / 3) and out["without"] == pytest.approx(6 / 7)
    assert out["contribution"] == pytest.approx(2 / 3 - 6 / 7)
    assert (out["tp"], out["fp"], out["fn"], out["utt_slu_f1"]) == (0.0, 1.0, 1.0, 0.0)


# ---------------------------------------------------------------- bridge modes
def runs() -> pd.DataFrame:
    base = {"kind": "transfer", "method": "bayes", "subset": "a+b", "k": 2, "aux": False,
            "seed": 0, "data_seed": 0, "opt_lam": "mean", "opt_support": None,
            "opt_dpo_eps": None}
    rows = [{**base, "run_id": "det", "opt_target_mode": "detached"},
            {**base, "run_id": "liv", "opt_target_mode": "live"},
            {**base, "run_id": "fro-dyn", "opt_target_mode": "frozen", "opt_lam": "dynamic"},
            {**base, "run_id": "fro", "opt_target_mode": "frozen", "opt_support": float("nan")},
            {**base, "run_id": "seed1", "opt_target_mode": "frozen", "seed": 1},
            {**base, "run_id": "naive", "method": "naive-soft", "opt_target_mode": "frozen"}]
    return pd.DataFrame(rows)


def test_mode_runs_finds_the_siblings_that_differ_only_in_the_bridge_mode() -> None:
    r = runs()
    det = r.set_index("run_id").loc["det"].rename(None)
    det["run_id"] = "det"
    # frozen: "fro" agrees on every other option (None and NaN both mean "unset"), "fro-dyn"
    # differs in λ; seed 1 and the naive-soft run are other students
    assert gt.mode_runs(r, det) == {"detached": "det", "frozen": "fro", "live": "liv"}
    assert gv.like(r, {"opt_support": None}, ["opt_support"])["run_id"].tolist() == \
        r["run_id"].tolist()
    assert gt.mode_runs(r.drop(columns="opt_target_mode"), det) == {}


# ---------------------------------------------------------------- token targets
def targets() -> pd.DataFrame:
    return pd.DataFrame({
        "example_id": ["e1", "e1", "e2"], "label": ["t1", "t2", "t1"], "text": ["x", "y", "z"],
        "mode": "frozen", "weight": [0.25, 0.75, 1.0],
        "tokens": [["{\"", "a", "\n"], ["b"], ["c"]], "word_ids": [[0, 0, -1], [0], [0]],
        "q": [[1.0, 0.25, 0.5], [0.2], [0.9]],
        "topk_tokens": [[["{\"", "x"], ["a", "b"], ["\n", "c"]], [["b", "a"]], [["c", "d"]]],
        "topk_probs": [[[0.9, 0.1], [0.6, 0.25], [0.5, 0.5]], [[0.7, 0.2]], [[0.9, 0.1]]],
        "conf": [[0.9, 0.6, 0.5], [0.7], [0.9]], "correct": [[True, False, True], [True],
                                                              [True]],
        "evidence": [[10.0, 100.0, 1000.0], [], []], "vacuity": [[0.5, 0.1, 0.01], [], []],
        "logp__t1": [-1.0, -2.0, -3.0], "norm__t1": [-0.5, -1.0, -1.5],
        "logp__t2": [np.nan, -4.0, -5.0], "norm__t2": [np.nan, -2.0, -2.5]})


def test_token_frame_and_spans_show_q_and_the_target_top_k() -> None:
    tok = gt.token_frame(targets(), "e1")
    assert tok[["label", "pos", "token", "q"]].values.tolist() == [
        ["t1", 0, '{"', 1.0], ["t1", 1, "a", 0.25], ["t1", 2, "\n", 0.5], ["t2", 0, "b", 0.2]]
    assert tok["weight"].tolist() == [0.25, 0.25, 0.25, 0.75]
    assert tok.loc[1, "topk"] == "'a' 0.600 · 'b' 0.250"
    assert np.isnan(tok.loc[3, "evidence"]) and tok.loc[2, "vacuity"] == 0.01
    html = gt.token_spans(tok[tok["label"] == "t1"])
    assert BG.findall(html) == [gv.prob_color(1.0), gv.prob_color(0.25), gv.prob_color(0.5)]
    assert TITLE.findall(html)[1] == "q = 0.250 · target top-2: &#x27;a&#x27; 0.600 · " \
                                     "&#x27;b&#x27; 0.250"
    assert ">⏎</span>" in html and "&quot;" in html  # newline made visible, quote escaped
    # t1 has Dirichlet read-outs: coloured by 1 − vacuity, evidence and vacuity on hover
    ev = gt.dirichlet_spans(tok[tok["label"] == "t1"])
    assert BG.findall(ev) == [gv.prob_color(0.5), gv.prob_color(0.9), gv.prob_color(0.99)]
    assert TITLE.findall(ev)[2] == "evidence Σ(α − 1) = 1000 · vacuity C/S = 0.010"
    assert gt.dirichlet_spans(tok[tok["label"] == "t2"]) == ""  # no read-outs: no strip
    strips = gt.label_strips(tok)  # every label: name with λ and mode, then its strip(s)
    assert strips == ("<b>t1 (λ = 0.25)</b> · mode frozen<br>" + html
                      + "<br><small>Dirichlet 1 − vacuity:</small> " + ev + "<br>"
                      "<b>t2 (λ = 0.75)</b> · mode frozen<br>"
                      + gt.token_spans(tok[tok["label"] == "t2"]))
    scores = gt.label_scores(targets(), "e1")
    assert scores.columns.tolist() == ["label", "text", "weight", "logp__t1", "norm__t1",
                                       "logp__t2", "norm__t2"]
    assert gt.token_frame(targets(), "nope").empty


def test_q_heatmap_rows_are_labels_cells_are_q() -> None:
    tok = gt.token_frame(targets(), "e1")
    fig = gt.q_heatmap(tok, "t")
    hm = fig.data[0]
    z = np.asarray(hm.z, dtype=float)
    np.testing.assert_allclose(z[0], [1.0, 0.25, 0.5])
    assert z[1, 0] == 0.2 and np.isnan(z[1, 1:]).all()  # t2's target is one token long
    assert list(hm.y) == ["t1 (λ = 0.25)", "t2 (λ = 0.75)"]
    assert "'a' 0.600 · 'b' 0.250" in hm.hovertext[0][1]
    assert (hm.zmin, hm.zmax) == (0.0, 1.0)
    assert gt.q_heatmap(tok.iloc[0:0], "t").layout.annotations[0].text.startswith("No stored")


def test_evidence_figure_log_scale_and_only_bayesian_rows() -> None:
    tok = gt.token_frame(targets(), "e1")
    fig = gt.evidence_figure(tok, "t")
    ev = [t for t in fig.data if t.yaxis == "y"]
    va = [t for t in fig.data if t.yaxis == "y2"]
    assert [t.name for t in ev] == ["t1"]  # t2 stores no read-outs
    np.testing.assert_allclose(ev[0].y, [10.0, 100.0, 1000.0])
    np.testing.assert_allclose(va[0].y, [0.5, 0.1, 0.01])
    assert fig.layout.yaxis.type == "log"
    assert gt.evidence_figure(tok[tok["label"] == "t2"], "t").layout.annotations[0].text \
        .startswith("This run stores no Dirichlet")


# ---------------------------------------------------------------- DPO
def dpo() -> pd.DataFrame:
    base = {"kind": "dpo", "method": "bayes", "subset": "a+b", "k": 2, "aux": False,
            "data_seed": 0, "train_setting": "T", "opt_lam": "mean", "opt_target_mode": "detached"}
    rows = [(0, "0.1", 0.30, 0.40), (1, "0.1", 0.20, 0.50), (0, "confidence", 0.30, 0.25),
            (0, "0.0", 0.30, 0.30), (1, "0.0", 0.20, 0.20)]
    df = pd.DataFrame([{**base, "run_id": f"d{i}", "seed": s, "opt_dpo_eps": e,
                        "before_slu_f1": b, "slu_f1": a, "delta_slu_f1": a - b}
                       for i, (s, e, b, a) in enumerate(rows)])
    other = {**base, "run_id": "frozen-child", "seed": 0, "opt_dpo_eps": "0.1",
             "opt_target_mode": "frozen", "before_slu_f1": 0.0, "slu_f1": 0.9,
             "delta_slu_f1": 0.9}
    transfer = {**base, "kind": "transfer", "run_id": "parent", "seed": 0,
                "opt_dpo_eps": None, "slu_f1": 0.3}
    return pd.concat([df, pd.DataFrame([other, transfer])], ignore_index=True)


def test_dpo_runs_and_summary_pair_each_run_with_its_parent() -> None:
    runs_ = dpo()
    parent = runs_.set_index("run_id").loc["parent"]
    d = gd.dpo_runs(runs_, parent)
    assert d["run_id"].tolist() == ["d3", "d4", "d0", "d1", "d2"]  # ε 0.0, 0.1, confidence
    assert gd.dpo_runs(runs_, parent, seed=1)["run_id"].tolist() == ["d4", "d1"]
    s = gd.dpo_summary(d).set_index("eps")
    assert s.index.tolist() == ["0.0", "0.1", "confidence"]
    # ε = 0.1: Δ = 0.1 (seed 0) and 0.3 (seed 1): mean 0.2, sd √0.02, t_{1, .975} = 12.7062
    half = 12.706204736 * math.sqrt(0.02) / math.sqrt(2)
    assert s.at["0.1", "delta"] == pytest.approx(0.2)
    assert (s.at["0.1", "lo"], s.at["0.1", "hi"]) == pytest.approx((0.2 - half, 0.2 + half))
    assert s.at["0.1", "before"] == pytest.approx(0.25) and s.at["0.1", "after"] == 0.45
    assert s.at["0.1", "seeds"] == 2 and "t-interval over 2 seeds" in s.at["0.1", "interval"]
    assert s.at["confidence", "delta"] == pytest.approx(-0.05)
    assert np.isnan(s.at["confidence", "lo"])
    assert s.at["confidence", "interval"] == "one seed: no interval"
    assert s.at["0.0", "delta"] == 0.0 and s.at["0.0", "lo"] == pytest.approx(0.0)


def test_dpo_figure_puts_the_delta_interval_on_the_after_marker() -> None:
    s = gd.dpo_summary(gd.dpo_runs(dpo(), dpo().set_index("run_id").loc["parent"]))
    fig = gd.dpo_figure(s, "bayes", "t")
    before, after = fig.data
    assert list(before.x) == ["ε = 0.0", "ε = 0.1", "ε = confidence"]
    np.testing.assert_allclose(after.y, s["after"])
    # after = before + Δ here, so the bar spans before + [lo, hi]: +(hi − Δ), −(Δ − lo)
    np.testing.assert_allclose(after.error_y.array[1], s.at[1, "hi"] - 0.2)
    np.testing.assert_allclose(after.error_y.arrayminus[1], 0.2 - s.at[1, "lo"])
    assert after.error_y.array[2] == 0  # one seed: no bar
    assert gd.dpo_figure(s.iloc[0:0], "bayes", "t").layout.annotations


def test_pairs_view_adds_the_margin() -> None:
    pairs = pd.DataFrame({"example_id": ["x"], "chosen": ["c"], "rejected": ["r"],
                          "score_chosen": [-1.0], "score_rejected": [-3.5], "weights": [[1.0]],
                          "pair_eps": [0.25], "eps": [0.1], "rejected__a": [-3.5],
                          "chosen__a": [-1.0]})
    v = gd.pairs_view(pairs)
    assert v.columns.tolist() == ["example_id", "chosen", "rejected", "score_chosen",
                                  "score_rejected", "margin", "pair_eps", "eps", "chosen__a",
                                  "rejected__a"]
    assert v.at[0, "margin"] == 2.5
    assert gd.pairs_view(None).empty
    assert sorted(["confidence", "0.1", "0.0", "1"], key=gd.eps_key) == \
        ["0.0", "0.1", "1", "confidence"]


def test_the_page_modules_never_import_torch() -> None:
    """The dashboard never imports torch: what the Generation page reads must not pull it in
    (checked in a fresh interpreter; this test process may hold torch already)."""
    import subprocess
    import sys

    code = ("import sys; import w2s_core.viz.generation, w2s_core.viz.gen_tokens, "
            "w2s_core.viz.gen_dpo, w2s_core.api, w2s_core.metrics.slu; "
            "print(sorted({'torch', 'transformers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
