"""Generation ensemble methods (``w2s_core.methods.gen_methods``) against hand-computed cases:
teacher weights λ, joint decoding's pick, the candidate pool, DPO pairs and the per-pair ε."""

from __future__ import annotations

import math

import numpy as np
import pytest

from w2s_core.errors import W2SError
from w2s_core.methods.gen_methods import (
    dpo_pair,
    joint_matrix,
    joint_pick,
    pair_eps,
    pool,
    teacher_weights,
)


# ---------------------------------------------------------------- teacher_weights
def test_mean_weights_are_one_over_k() -> None:
    lam = teacher_weights("mean", np.array([[-1.0, -9.0, -3.0], [0.0, -2.0, -5.0]]))
    assert lam.shape == (2, 3)
    np.testing.assert_allclose(lam, 1.0 / 3.0)


def test_dynamic_weights_are_a_softmax_of_self_confidence() -> None:
    mw = np.array([[-1.0, -2.0, -3.0], [-0.5, -0.5, -0.5]])
    lam = teacher_weights("dynamic", mw)
    z = math.exp(-1) + math.exp(-2) + math.exp(-3)
    np.testing.assert_allclose(lam[0], [math.exp(-1) / z, math.exp(-2) / z, math.exp(-3) / z])
    np.testing.assert_allclose(lam[1], [1 / 3, 1 / 3, 1 / 3])


def test_dynamic_weights_are_stable_for_very_low_log_probs() -> None:
    # exp(-1000) underflows to 0: only a shifted softmax gives the finite answer
    lam = teacher_weights("dynamic", np.array([[-1000.0, -1001.0]]))
    e = math.exp(-1.0)
    np.testing.assert_allclose(lam[0], [1 / (1 + e), e / (1 + e)])


def test_fixed_weights_are_normalised_and_repeated_per_utterance() -> None:
    lam = teacher_weights([1.0, 3.0], np.zeros((4, 2)))
    np.testing.assert_allclose(lam, np.tile([0.25, 0.75], (4, 1)))
    lam[0, 0] = 9.0  # a real array, not a read-only broadcast view
    assert lam[1, 0] == 0.25


@pytest.mark.parametrize("mode", ["uniform", [1.0], [1.0, 2.0, 3.0], [1.0, -1.0], [0.0, 0.0]])
def test_bad_weight_modes_are_user_errors(mode) -> None:
    with pytest.raises(W2SError):
        teacher_weights(mode, np.zeros((3, 2)))


# ---------------------------------------------------------------- joint decoding
def test_joint_pick_maximises_the_weighted_log_likelihood_sum() -> None:
    # 2 teachers × 3 pooled candidates; Σ_k λ_k s_k(c) by hand:
    scores = np.array([[-1.0, -5.0, -2.0],
                       [-6.0, -1.0, -2.0]])
    assert joint_pick(scores, np.array([0.5, 0.5])) == 2  # -3.5, -3.0, -2.0
    assert joint_pick(scores, np.array([0.9, 0.1])) == 0  # -1.5, -4.6, -2.0
    assert joint_pick(scores, np.array([0.1, 0.9])) == 1  # -5.5, -1.4, -2.0


def test_joint_pick_with_three_teachers() -> None:
    scores = np.array([[-2.0, -1.0, -4.0, -3.0],
                       [-2.0, -6.0, -1.0, -3.0],
                       [-2.0, -2.0, -1.0, -0.5]])
    lam = np.array([0.2, 0.3, 0.5])
    totals = [-2.0, -0.2 - 1.8 - 1.0, -0.8 - 0.3 - 0.5, -0.6 - 0.9 - 0.25]  # by hand
    assert joint_pick(scores, lam) == int(np.argmax(totals)) == 2


def test_joint_pick_takes_the_first_candidate_on_a_tie() -> None:
    scores = np.array([[-1.0, -3.0, -2.0],
                       [-3.0, -1.0, -2.0]])
    assert joint_pick(scores, np.array([0.5, 0.5])) == 0  # all three total -2.0


def test_joint_scores_sum_per_char_and_per_token_by_hand() -> None:
    # 2 teachers × 3 candidates: "" (EOS only), "{}" and a longer answer
    texts = ["", "{}", '{"a": "b"}']  # 0, 2 and 10 characters
    logp = np.array([[-1.0, -2.0, -5.0],
                     [-3.0, -2.5, -4.0]])
    norm = np.array([[-1.0, -0.7, -0.4],  # each teacher's own logp / (tokens + 1)
                     [-3.0, -0.9, -0.3]])
    lam = np.array([0.5, 0.5])
    np.testing.assert_array_equal(joint_matrix("sum", logp, norm, texts), logp)
    # the summed score picks the empty answer: -2.0, -2.25, -4.5
    assert joint_pick(joint_matrix("sum", logp, norm, texts), lam) == 0
    per_char = joint_matrix("per_char", logp, norm, texts)
    np.testing.assert_allclose(per_char, [[-1.0, -2 / 3, -5 / 11], [-3.0, -2.5 / 3, -4 / 11]])
    assert joint_pick(per_char, lam) == 2  # -2.0, -0.75, -0.409
    np.testing.assert_array_equal(joint_matrix("per_token", logp, norm, texts), norm)
    assert joint_pick(joint_matrix("per_token", logp, norm, texts), lam) == 2  # -2, -.8, -.35
    with pytest.raises(W2SError, match="joint score"):
        joint_matrix("mean", logp, norm, texts)


def test_joint_pick_rejects_bad_shapes() -> None:
    with pytest.raises(W2SError):
        joint_pick(np.zeros((2, 0)), np.array([0.5, 0.5]))
    with pytest.raises(W2SError):
        joint_pick(np.zeros((2, 3)), np.array([1 / 3, 1 / 3, 1 / 3]))


def test_pool_deduplicates_keeping_first_appearance_order() -> None:
    assert pool([["a", "b"], ["b", "c", "a"], ["d"]]) == ["a", "b", "c", "d"]
    assert pool([["x", "x"], []]) == ["x"]
    assert pool([]) == []


# ---------------------------------------------------------------- DPO pairs
def test_dpo_pair_is_best_versus_worst() -> None:
    assert dpo_pair(np.array([-1.0, -0.5, -3.0, -2.0])) == (1, 2)


def test_dpo_pair_takes_the_first_of_tied_extremes() -> None:
    assert dpo_pair(np.array([-1.0, -3.0, -1.0, -3.0])) == (0, 1)


def test_dpo_pair_is_none_without_a_preference() -> None:
    assert dpo_pair(np.array([-2.0, -2.0, -2.0])) is None
    assert dpo_pair(np.array([-2.0])) is None


# ---------------------------------------------------------------- per-pair ε
def test_unanimous_teachers_give_one_over_k_plus_two() -> None:
    assert pair_eps(np.array([-1.0, -1.0]), np.array([-2.0, -3.0]), np.array([0.5, 0.5])) \
        == pytest.approx(1 / 4)
    assert pair_eps(np.array([-1.0, -1.0, -1.0]), np.array([-2.0, -2.0, -2.0]),
                    np.full(3, 1 / 3)) == pytest.approx(1 / 5)


def test_votes_against_the_pairs_order_cap_eps_at_one_half() -> None:
    """The pair's order comes from the λ-weighted scores; votes that dispute it make the pair
    uncertain (ε = 1/2), never reversed (ε > 1/2 would train toward the rejected beam)."""
    assert pair_eps(np.array([-5.0, -5.0]), np.array([-1.0, -2.0]), np.array([0.5, 0.5])) \
        == pytest.approx(0.5)  # uncapped (1 + 2) / 4
    # one confident teacher outweighs two: the mean score picks candidate 0 over 1, while
    # teachers 1 and 2 vote for 1 (n_l = 2, uncapped ε = 3 / 5)
    s = np.array([[-1.0, -0.9], [-1.0, -0.9], [-0.1, -3.0]])  # (K teachers, C candidates)
    lam = np.full(3, 1 / 3)
    assert dpo_pair(lam @ s) == (0, 1)
    assert pair_eps(s[:, 0], s[:, 1], lam) == pytest.approx(0.5)


def test_a_split_ensemble_gives_one_half() -> None:
    # teacher 2 prefers the rejected output: n_l = 2 · 0.5 = 1 → ε = (1 + 1) / 4
    assert pair_eps(np.array([-1.0, -3.0]), np.array([-2.0, -2.0]), np.array([0.5, 0.5])) \
        == pytest.approx(0.5)


def test_a_tie_is_half_a_vote_each_way() -> None:
    # teacher 1 ties (0.5 vote for l), teacher 2 prefers w: n_l = 2 · 0.5 · 0.5 = 0.5
    assert pair_eps(np.array([-1.0, -2.0]), np.array([-1.0, -3.0]), np.array([0.5, 0.5])) \
        == pytest.approx(1.5 / 4)


def test_votes_are_weighted_by_lambda_and_lambda_is_normalised() -> None:
    s_w, s_l = np.array([-1.0, -3.0]), np.array([-2.0, -2.0])  # teacher 2 votes for l
    # n_l = K · λ_2: 2 · 0.25 = 0.5 → 1.5 / 4; 2 · 0.75 = 1.5 → 2.5 / 4
    assert pair_eps(s_w, s_l, np.array([0.75, 0.25])) == pytest.approx(1.5 / 4)
    assert pair_eps(s_w, s_l, np.array([0.4, 0.6])) == pytest.approx(0.5)  # 2.2 / 4, capped
    s_w3, s_l3 = np.array([-1.0, -1.0, -3.0]), np.array([-2.0, -2.0, -2.0])  # teacher 3: l
    # n_l = 3 · λ_3: 3 · 0.3 = 0.9 → 1.9 / 5; 3 · 0.1 = 0.3 → 1.3 / 5
    assert pair_eps(s_w3, s_l3, np.array([0.4, 0.3, 0.3])) == pytest.approx(1.9 / 5)
    assert pair_eps(s_w3, s_l3, np.array([0.6, 0.3, 0.1])) == pytest.approx(1.3 / 5)
    assert pair_eps(s_w, s_l, np.array([3.0, 1.0])) == pytest.approx(1.5 / 4)


def test_generation_yaml_keeps_an_explicit_classification_dataset_and_refuses_it(tmp_path) -> None:
    """An explicit `data: {name: tweets}` is refused, never swapped for the generation default;
    a generation config that names no data set gets atis-slots and the generation models."""
    import pytest

    from w2s_core.errors import W2SError
    from w2s_core.experiments.config_files import load_config

    bad = tmp_path / "bad.yaml"
    bad.write_text("task: generation\ndata: {name: tweets}\n")
    with pytest.raises(W2SError, match="classification data set"):
        load_config(bad)
    ok = tmp_path / "ok.yaml"
    ok.write_text("task: generation\nseeds: [0]\n")
    cfg = load_config(ok)
    assert (cfg.data.name, cfg.student) == ("atis-slots", "smollm2-135m")
    assert cfg.teachers == ("gpt-char", "gpt-word", "gpt-bpe")


def test_the_sweeps_lambda_picks_fixed_weights_by_teacher_name_and_dynamic_by_subset() -> None:
    """``GenerationRuns.lam`` on a subset: fixed weights (given for the full teacher list) are
    picked by name in the subset's order and renormalised; dynamic is the softmax over the
    subset's teachers of each one's mean word log-prob of its own top-1 (hand-computed)."""
    from types import SimpleNamespace

    from w2s_core.experiments.gen_runs import GenerationRuns
    from w2s_core.models.decode import Candidate

    def cand(words: list[float]) -> Candidate:
        return Candidate("x " * len(words), sum(words), -0.1, [1] * len(words), words,
                         [(0, 1)] * len(words), words, 0.0)

    top1 = {"a": [cand([-1.0, -3.0]), cand([-0.5])],  # mean word log-probs −2, −0.5
            "b": [cand([-4.0]), cand([-2.0, -2.0])],  # −4, −2
            "c": [cand([-0.2, -0.2, -0.2]), cand([-1.0])]}  # −0.2, −1

    def runs(lam: object) -> SimpleNamespace:
        cfg = SimpleNamespace(teachers=("a", "b", "c"), gen_options=SimpleNamespace(lam=lam))
        return SimpleNamespace(cfg=cfg, t=SimpleNamespace(top1=lambda n, split: top1[n]))

    fixed = GenerationRuns.lam(runs([1.0, 2.0, 3.0]), ("c", "a"), "transfer")  # type: ignore[arg-type]
    np.testing.assert_allclose(fixed, [[0.75, 0.25], [0.75, 0.25]])
    dyn = GenerationRuns.lam(runs("dynamic"), ("a", "c"), "transfer")  # type: ignore[arg-type]
    e = np.exp
    np.testing.assert_allclose(dyn[0], [e(-2) / (e(-2) + e(-0.2)), e(-0.2) / (e(-2) + e(-0.2))])
    np.testing.assert_allclose(dyn[1], [e(-0.5) / (e(-0.5) + e(-1)), e(-1) / (e(-0.5) + e(-1))])
