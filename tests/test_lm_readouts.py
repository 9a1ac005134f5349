"""Stored token read-outs (what a student was trained toward) against independent computations:
the model's own full-sequence forward, the bridge's product property and the Dirichlet's closed
forms."""

from __future__ import annotations

import math

import pytest
import torch

from tests.test_lm_train import PROMPTS, TARGETS, bases, fresh, word_logps  # noqa: F401
from w2s_core.models.causal import CausalLM
from w2s_core.training.lm_readouts import token_readouts
from w2s_core.training.lm_train import GenExample, LabelSeq, LossSpec

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _full_logits(lm: CausalLM, prompt: str, target_ids: list[int]) -> torch.Tensor:
    """Logits predicting each target token, from HF's plain forward of prompt + target."""
    p = lm.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + target_ids])
    with torch.no_grad():
        z = lm.model(input_ids=ids).logits[0]
    return z[len(p) - 1:len(p) - 1 + len(target_ids)]


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_soft_label_q_multiplies_to_each_words_probability(bases, kind):  # noqa: F811
    lm = fresh(bases, kind)
    soft = [LabelSeq(t, word_logps(t, i)) for i, t in enumerate(TARGETS)]
    exs = [GenExample(p, [s], [1.0]) for p, s in zip(PROMPTS, soft, strict=True)]
    for loss in (LossSpec("soft"), LossSpec("soft", split="equal")):
        recs = token_readouts(lm, exs, loss, max_length=256)
        assert [r["example"] for r in recs] == [0, 1, 2, 3]
        for r, s in zip(recs, soft, strict=True):
            assert s.word_logps is not None
            for w, lp in enumerate(s.word_logps):
                prod = math.prod(q for q, wid in zip(r["q"], r["word_ids"], strict=True)
                                 if wid == w)
                assert prod == pytest.approx(math.exp(lp), rel=1e-4)
            # the label token's mass in the target is q (p_rest excludes the label)
            assert r["topk_probs"][0][0] >= r["q"][0] - 1e-6


def test_hard_gold_labels_give_calibration_from_the_plain_forward(bases):  # noqa: F811
    lm = fresh(bases, "bpe")
    exs = [GenExample(p, [LabelSeq(t)], [1.0]) for p, t in zip(PROMPTS, TARGETS, strict=True)]
    recs = token_readouts(lm, exs, LossSpec(), max_length=256, batch_size=3)
    for r, ex in zip(recs, exs, strict=True):
        z = _full_logits(lm, ex.prompt, r["token_ids"])
        p = z.softmax(-1)
        assert r["conf"] == pytest.approx(p.max(-1).values.tolist(), rel=1e-4)
        assert r["correct"] == (z.argmax(-1) == torch.tensor(r["token_ids"])).tolist()
        assert r["q"] == pytest.approx([1.0] * len(r["q"]))
        # a hard target without aux is the label itself, with probability 1
        assert r["topk_probs"][0] == pytest.approx([1.0] + [0.0] * 4, abs=1e-6)
        assert r["topk_tokens"][0][0] == r["tokens"][0]
        assert lm.tokenizer.eos_token_id == r["token_ids"][-1]
        assert r["evidence"] == [] and r["vacuity"] == []


@pytest.mark.parametrize("scale", [1.0, 40.0])
def test_edl_readouts_are_the_dirichlets_closed_forms(bases, scale):  # noqa: F811
    """scale 40: the output layer scaled until the logits reach an LM's (above the e^20 clamp
    that revision 1 read these from: every α was e^20 + 1 there)."""
    lm = fresh(bases, "char")
    with torch.no_grad():
        lm.model.get_output_embeddings().weight.mul_(scale)
    t = TARGETS[0]
    ex = GenExample(PROMPTS[0], [LabelSeq(t, word_logps(t, 3)), LabelSeq(TARGETS[1])],
                    [0.7, 0.3])
    full = token_readouts(lm, [ex], LossSpec("edl"), max_length=256)
    assert [(r["label"], r["weight"]) for r in full] == [(0, 0.7), (1, 0.3)]
    z = _full_logits(lm, ex.prompt, full[0]["token_ids"]).double()
    assert (z.amax(-1) > 20).all() if scale > 1 else (z.abs() < 20).all()
    alpha = z.exp() + 1.0  # exp evidence, in float64: no clamp needed up to z ≈ 700
    s = alpha.sum(-1)
    assert full[0]["evidence"] == pytest.approx((s - z.shape[-1]).tolist(), rel=1e-4)
    assert full[0]["vacuity"] == pytest.approx((z.shape[-1] / s).tolist(), rel=1e-4)
    # restricted support: k + 1 categories, "other" holds exp(logsumexp of the rest)
    k = 3
    res = token_readouts(lm, [ex], LossSpec("edl", support=k), max_length=256)
    y_top = torch.tensor(res[0]["topk_probs"])  # top-5 of the target ⊇ its top-3
    assert y_top.shape[1] == 5
    for j, (ev, vac) in enumerate(zip(res[0]["evidence"], res[0]["vacuity"], strict=True)):
        # whatever the top-k tokens are, total evidence over top-k + other = Σ_v exp(z_v)
        assert ev == pytest.approx(float(z[j].exp().sum()), rel=1e-4)
        assert vac == pytest.approx((k + 1) / (ev + k + 1), rel=1e-4)


def test_zero_weight_labels_are_left_out_and_fixed_q_is_used(bases):  # noqa: F811
    lm = fresh(bases, "bpe")
    t = TARGETS[2]
    ex = GenExample(PROMPTS[2], [LabelSeq(TARGETS[0]), LabelSeq(t, word_logps(t, 1))],
                    [0.0, 1.0])
    recs = token_readouts(lm, [ex], LossSpec("soft"), max_length=256)
    assert [r["label"] for r in recs] == [1]
    fixed = [[0.5] * len(recs[0]["q"])]
    again = token_readouts(lm, [ex], LossSpec("soft"), max_length=256, fixed_q=fixed)
    assert again[0]["q"] == pytest.approx(fixed[0])
    assert again[0]["conf"] == pytest.approx(recs[0]["conf"])
