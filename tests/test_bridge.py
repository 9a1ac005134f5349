"""The word bridge against independent expectations: HF word ids, closed forms, hand cases."""

from __future__ import annotations

import math

import pytest
import torch

from w2s_core.errors import W2SError
from w2s_core.methods import bridge

CORPUS = [
    "the flight to boston leaves at nine",
    "book a table for two at seven tonight",
    "wake me up at six in the morning",
    "play some jazz music in the kitchen",
    "what is the weather like in denver tomorrow",
]


def _random_case(gen: torch.Generator, n_words: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Word ids for a label of n_words words, 1–4 tokens each, with specials at both ends."""
    counts = torch.randint(1, 5, (n_words,), generator=gen)
    counts[0] = 1  # always at least one one-token word
    ids = [-1] + [w for w in range(n_words) for _ in range(int(counts[w]))] + [-1]
    return torch.tensor(ids), counts


def test_word_spans_hand_case_specials_whitespace_and_leading_space():
    text = "book  a flight "
    # [CLS] "bo" "ok" | whitespace-only "  " | "a" | " fl" (leading space) "ight" | trailing " "
    # [SEP]
    offsets = [(0, 0), (0, 2), (2, 4), (4, 6), (6, 7), (7, 10), (10, 14), (14, 15), (0, 0)]
    assert bridge.word_spans(text, offsets) == [-1, 0, 0, 1, 1, 2, 2, 2, -1]
    assert bridge.word_spans("   ", [(0, 1)]) == [-1]  # a label without words
    with pytest.raises(W2SError, match="outside"):
        bridge.word_spans("ab", [(0, 5)])


def _fast_tokenizer(byte_level: bool):  # noqa: ANN202 - transformers type, imported lazily
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if byte_level:  # GPT-2 style: the leading space is part of the token and of its offsets
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["<s>", "</s>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(CORPUS, trainer)
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(
        vocab_size=60, special_tokens=["[UNK]", "[CLS]", "[SEP]"]))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def test_word_spans_agree_with_hf_word_ids_on_a_trained_wordpiece():
    tok = _fast_tokenizer(byte_level=False)
    text = "book a flight to denver at nine tomorrow"
    enc = tok(text, return_offsets_mapping=True)
    assert len(enc["input_ids"]) > len(text.split()) + 2  # words really split into pieces
    expected = [-1 if w is None else w for w in enc.word_ids()]
    assert bridge.word_spans(text, enc["offset_mapping"]) == expected


def test_word_spans_byte_level_bpe_with_leading_space_offsets():
    tok = _fast_tokenizer(byte_level=True)
    text = "wake me at seven in boston tonight"
    enc = tok(text, return_offsets_mapping=True)
    ids = bridge.word_spans(text, enc["offset_mapping"])
    words = text.split()
    assert sorted(set(ids)) == list(range(len(words)))  # every word owns a token
    assert any(text[s] == " " for s, e in enc["offset_mapping"] if e > s)  # spaces in offsets
    for (s, e), w in zip(enc["offset_mapping"], ids, strict=True):
        assert text[s:e].strip() in words[w]
    # tokens of a word concatenate back to the word (the leading space stripped)
    for w, word in enumerate(words):
        pieces = [text[s:e] for (s, e), i in zip(enc["offset_mapping"], ids, strict=True) if i == w]
        assert "".join(pieces).strip() == word


def test_split_weights_sum_to_one_per_word_and_zero_on_specials():
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        ids, counts = _random_case(gen, int(torch.randint(1, 7, (1,), generator=gen)))
        conf = torch.rand(ids.shape, generator=gen, dtype=torch.float64)
        for mode in ("softmax", "equal"):
            om = bridge.split_weights(conf, ids, mode=mode, temperature=0.3)
            assert torch.all(om[ids < 0] == 0)
            for w in range(len(counts)):
                assert math.isclose(float(om[ids == w].sum()), 1.0, rel_tol=1e-12)
            if mode == "equal":
                assert torch.allclose(om[ids >= 0], 1.0 / counts[ids[ids >= 0]].double())


def test_split_weights_softmax_closed_form_and_batched_rows():
    ids = torch.tensor([[-1, 0, 0, 1, 1, 1], [0, 1, 1, 2, -1, -1]])
    conf = torch.tensor([[0.9, 0.2, 0.8, 0.5, 0.1, 0.3], [0.4, 0.6, 0.7, 0.9, 0.5, 0.5]],
                        dtype=torch.float64)
    om = bridge.split_weights(conf, ids, temperature=0.5)
    a = torch.softmax(-conf[0, 1:3] / 0.5, 0)
    b = torch.softmax(-conf[0, 3:6] / 0.5, 0)
    assert torch.allclose(om[0], torch.cat([torch.zeros(1, dtype=torch.float64), a, b]))
    assert torch.allclose(om[1, 1:3], torch.softmax(-conf[1, 1:3] / 0.5, 0))
    assert om[1, 0] == 1 and om[1, 3] == 1 and torch.all(om[1, 4:] == 0)
    with pytest.raises(W2SError, match="temperature"):
        bridge.split_weights(conf, ids, temperature=0.0)
    with pytest.raises(W2SError, match="split mode"):
        bridge.split_weights(conf, ids, mode="uniform")  # type: ignore[arg-type]


def test_product_property_random_words_including_one_token_words():
    gen = torch.Generator().manual_seed(2)
    for _ in range(50):
        n_words = int(torch.randint(1, 8, (1,), generator=gen))
        ids, _ = _random_case(gen, n_words)
        word_logp = -torch.rand(n_words, generator=gen, dtype=torch.float64) * 6
        conf = torch.rand(ids.shape, generator=gen, dtype=torch.float64)
        for mode in ("softmax", "equal"):
            om = bridge.split_weights(conf, ids, mode=mode, temperature=0.3)
            log_q = bridge.token_log_targets(word_logp, ids, om)
            assert torch.all(log_q[ids < 0] == 0) and torch.all(log_q <= 0)
            for w in range(n_words):  # Π_{t∈word} q_t = P(word), in log space
                assert math.isclose(float(log_q[ids == w].sum()), float(word_logp[w]),
                                    rel_tol=1e-12, abs_tol=1e-12)
            assert math.isclose(float(log_q.exp().prod()), float(word_logp.sum().exp()),
                                rel_tol=1e-9)


def test_low_temperature_puts_the_whole_word_on_its_least_confident_token():
    ids = torch.tensor([0, 0, 0, 1, 2, 2])
    conf = torch.tensor([0.9, 0.3, 0.6, 0.5, 0.2, 0.95])
    word_logp = torch.tensor([-2.0, -0.5, -1.5])
    log_q = bridge.token_log_targets(word_logp, ids, bridge.split_weights(conf, ids,
                                                                          temperature=1e-4))
    assert torch.allclose(log_q, torch.tensor([0.0, -2.0, 0.0, -0.5, -1.5, 0.0]), atol=1e-6)


def test_words_swallowed_by_a_multiword_token_fold_into_it():
    text = "new york is big"
    ids = bridge.word_spans(text, [(0, 8), (9, 11), (12, 15)])  # "new york" is one token
    assert ids == [0, 2, 3]
    word_logp = torch.tensor([-1.0, -0.25, -0.5, -2.0])
    log_q = bridge.token_log_targets(word_logp, torch.tensor(ids), torch.ones(3))
    assert torch.allclose(log_q, torch.tensor([-1.25, -0.5, -2.0]))
    with pytest.raises(W2SError, match="before the first"):
        bridge.token_log_targets(word_logp, torch.tensor([1, 2, 3]), torch.ones(3))
    with pytest.raises(W2SError, match="word log-probs"):
        bridge.token_log_targets(word_logp[:2], torch.tensor(ids), torch.ones(3))


def test_soft_targets_rows_sum_to_one_q_at_label_rest_proportional_to_student():
    gen = torch.Generator().manual_seed(3)
    t, v = 5, 11
    student = torch.log_softmax(torch.randn(t, v, generator=gen, dtype=torch.float64), -1)
    labels = torch.randint(0, v, (t,), generator=gen)
    log_q = -torch.rand(t, generator=gen, dtype=torch.float64) * 3
    y = bridge.soft_targets(labels, log_q, student)
    assert torch.allclose(y.sum(-1), torch.ones(t, dtype=torch.float64))
    assert torch.allclose(y[torch.arange(t), labels], log_q.exp())
    p = student.exp()
    for i in range(t):  # other tokens: (1 − q) · p_v / (1 − p_label), computed the plain way
        others = [j for j in range(v) if j != labels[i]]
        expected = (1 - log_q[i].exp()) * p[i, others] / (1 - p[i, labels[i]])
        assert torch.allclose(y[i, others], expected)


def test_soft_targets_detached_and_frozen_carry_no_grad_live_does():
    student_logits = torch.randn(3, 6, requires_grad=True)
    conf = torch.rand(3, requires_grad=True)
    ids = torch.tensor([0, 0, 1])
    log_q = bridge.token_log_targets(torch.tensor([-1.0, -0.3]), ids,
                                     bridge.split_weights(conf, ids))
    labels = torch.tensor([1, 4, 2])
    student = torch.log_softmax(student_logits, -1)
    for mode in ("detached", "frozen"):
        y = bridge.soft_targets(labels, log_q, student, mode=mode)
        assert not y.requires_grad
    y = bridge.soft_targets(labels, log_q, student, mode="live")
    y[:, 0].sum().backward()
    assert student_logits.grad is not None and student_logits.grad.abs().sum() > 0
    assert conf.grad is not None and conf.grad[:2].abs().sum() > 0
    with pytest.raises(W2SError, match="target mode"):
        bridge.soft_targets(labels, log_q, student, mode="moving")  # type: ignore[arg-type]


def test_fixed_target_ce_equals_the_dense_soft_cross_entropy_even_as_p_label_nears_one():
    """The closed form −q·log p_l − (1 − q)·Σ_{v≠l} p_rest,v·log p_v against y built in full
    (``soft_targets``, detached) and −Σ_v y_v log p_v: values and gradients, on ordinary states
    and on one whose label holds all but 1e-12 of the mass (where 1 − p_l cancels)."""
    g = torch.Generator().manual_seed(5)
    n, v = 4, 13
    z = torch.randn(n, v, generator=g, dtype=torch.float64) * 2
    z[3] = -14.0
    z[3, 6] = 14.0  # p(6) ≈ 1 − 1e-12
    z.requires_grad_()
    pick = torch.tensor([[0, 1, 3], [0, 2, 3]])
    labels = torch.tensor([[2, 5, 6], [7, 5, 6]])
    log_q = torch.tensor([[-0.3, -1.2, -1e-3], [0.0, -2.0, -0.5]], dtype=torch.float64)
    logp = torch.log_softmax(z, -1)
    got = bridge.fixed_target_ce(logp, pick, labels, log_q)
    (g_got,) = torch.autograd.grad(got.sum(), z)
    dense_logp = torch.log_softmax(z, -1)[pick]  # (2, 3, V)
    y = bridge.soft_targets(labels, log_q, dense_logp, "detached")
    expect = -(y * dense_logp).sum(-1)
    (g_exp,) = torch.autograd.grad(expect.sum(), z)
    torch.testing.assert_close(got, expect, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(g_got, g_exp, rtol=1e-7, atol=1e-10)
    assert torch.isfinite(g_got).all()
