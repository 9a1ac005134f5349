"""N-best decoding and teacher-forced scoring (w2s_core.models.decode) on tiny random Llamas.

Two tokenizers built here with the ``tokenizers`` library: one token per character (with a BOS
on prompts and a distinct pad), and a byte-level BPE without a pad token (pad := EOS). Expected
values come from an independent per-sequence forward pass of the unpadded sequence, from
``model.generate`` run one prompt at a time, or from hand-computed cases.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from checks import decoder_tokens

from w2s_core.data.prompts import build_prompt, format_slots
from w2s_core.device import GPU_BATCH_SCALE, GPU_SCALE_MAX_PARAMS, rows_per_pass, scaled_rows
from w2s_core.models import decode, shared_prompt
from w2s_core.models.causal import CausalLM
from w2s_core.models.decode import Candidate, nbest, score, word_logps
from w2s_core.models.greedy import greedy

SENTENCES = ["fly to boston tomorrow", "wake me up at seven am", "play some jazz",
             "what is the weather in new york city this weekend"]
TARGETS = [format_slots([("city", "boston"), ("date", "tomorrow")]),
           format_slots([("time", "seven am")]), format_slots([]),
           format_slots([("city", "new york city"), ("date", "this weekend")])]
PROMPTS = [build_prompt(s) for s in SENTENCES]
CORPUS = PROMPTS + TARGETS + ["x y z & é ü"]


def _char_tokenizer():  # noqa: ANN202 - transformers type
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    chars = sorted({c for t in CORPUS for c in t})
    vocab = {t: i for i, t in enumerate(specials + chars)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                       special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>")


def _bpe_tokenizer():  # noqa: ANN202 - transformers type
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def _lm(kind: str) -> CausalLM:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _char_tokenizer() if kind == "char" else _bpe_tokenizer()
    torch.manual_seed(0)
    # a wide init makes next-token distributions peaked, so greedy/beam choices are not
    # decided by float rounding differences between padded and unpadded batches
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                         max_position_embeddings=256, initializer_range=0.2,
                         tie_word_embeddings=False)
    return CausalLM(name=f"tiny-{kind}", model=LlamaForCausalLM(config).eval(), tokenizer=tok)


@pytest.fixture(scope="module", params=["char", "bpe"])
def lm(request: pytest.FixtureRequest) -> CausalLM:
    return _lm(request.param)


@pytest.fixture(autouse=True)
def _one_thread(torch_single_thread: None) -> None:
    """Tiny models: one intra-op thread is fastest on a shared machine."""


def _reference(lm: CausalLM, prompt: str, text: str) -> tuple[list[int], list[float]]:
    """Target ids (incl. EOS) and their log-probs from one unpadded forward pass."""
    tok = lm.tokenizer
    p = tok(prompt)["input_ids"]
    t = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    with torch.no_grad():
        logp = lm.model(torch.tensor([p + t])).logits[0].log_softmax(-1)
    return t, [logp[len(p) + j - 1, t[j]].item() for j in range(len(t))]


def generate_raw(lm: CausalLM, prompt: str, beams: int, new: int) -> list[list[int]]:
    """The new token ids of each beam of ``model.generate`` on one unpadded prompt: the plain
    per-utterance loop the batched decoders are checked against."""
    tok = lm.tokenizer
    ids = torch.tensor([tok(prompt)["input_ids"]])
    with torch.no_grad():
        out = lm.model.generate(ids, attention_mask=torch.ones_like(ids), num_beams=beams,
                                num_return_sequences=beams, do_sample=False, max_new_tokens=new,
                                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                early_stopping=beams > 1)
    return out[:, ids.shape[1]:].tolist()


def _generate_one(lm: CausalLM, prompt: str, beams: int, new: int) -> list[str]:
    """Texts of ``model.generate`` on one unpadded prompt, cut at EOS."""
    tok = lm.tokenizer
    texts = []
    for seq in generate_raw(lm, prompt, beams, new):
        seq = seq[: seq.index(tok.eos_token_id)] if tok.eos_token_id in seq else seq
        texts.append(tok.decode(seq, skip_special_tokens=True))
    return texts


def test_bpe_tokenizer_without_pad_pads_with_eos() -> None:
    lm = _lm("bpe")
    assert lm.tokenizer.pad_token_id == lm.tokenizer.eos_token_id


def test_score_equals_independent_forward(lm: CausalLM) -> None:
    texts = [[TARGETS[0], "", TARGETS[2]], [TARGETS[3], " x y "], [TARGETS[1]]]
    prompts = PROMPTS[:3]
    got = score(lm, prompts, texts, batch_size=4)
    for prompt, ts, cands in zip(prompts, texts, got, strict=True):
        assert [c.text for c in cands] == ts
        for c in cands:
            ids, ref = _reference(lm, prompt, c.text)
            assert c.token_ids == ids[:-1]
            assert c.token_logps == pytest.approx(ref[:-1], abs=1e-5)
            assert c.eos_logp == pytest.approx(ref[-1], abs=1e-5)
            assert c.logp == pytest.approx(sum(ref), abs=1e-4)
            assert c.norm == pytest.approx(sum(ref) / len(ref), abs=1e-4)
            assert len(c.offsets) == len(c.token_ids)
    assert got[0][1].token_ids == [] and got[0][1].word_logps == []
    assert got[0][1].logp == pytest.approx(got[0][1].eos_logp)


def test_score_batch_invariant(lm: CausalLM) -> None:
    texts = [[TARGETS[0], "", TARGETS[3]], [TARGETS[1], TARGETS[2]]]
    batched = score(lm, PROMPTS[2:], texts, batch_size=5)
    single = score(lm, PROMPTS[2:], texts, batch_size=1)
    for bs, ss in zip(batched, single, strict=True):
        for b, s in zip(bs, ss, strict=True):
            assert b.token_ids == s.token_ids
            assert b.token_logps == pytest.approx(s.token_logps, abs=1e-5)
            assert b.eos_logp == pytest.approx(s.eos_logp, abs=1e-5)


def test_score_bf16_close_to_fp32(lm: CausalLM) -> None:
    fp32 = score(lm, PROMPTS[:1], [[TARGETS[0]]])[0][0]
    bf16 = score(lm, PROMPTS[:1], [[TARGETS[0]]], bf16=True)[0][0]
    assert bf16.norm == pytest.approx(fp32.norm, abs=0.1)
    assert bf16.norm != fp32.norm  # the autocast path really ran in bf16


def test_word_logps_hand_cases() -> None:
    # "a" "b" | zero-width (−1 → next token's word) | " " (separator → next word) | "cd" |
    # a trailing special (−1, no token after → previous token's word)
    offs = [(0, 0), (0, 1), (1, 2), (2, 2), (2, 3), (3, 5), (5, 5)]
    lps = [-0.5, -1.0, -2.0, -4.0, -8.0, -16.0, -32.0]
    assert word_logps("ab cd", offs, lps) == [-3.5, -60.0]
    # a token spanning two words: the swallowed word gets 0, the total is kept
    assert word_logps("a b c", [(0, 3), (3, 5)], [-1.0, -2.0]) == [-1.0, 0.0, -2.0]
    assert word_logps("", [], []) == []
    assert word_logps("  ", [(0, 2)], [-1.0]) == []


def test_word_logps_sum_to_token_logps(lm: CausalLM) -> None:
    texts = [[TARGETS[0], TARGETS[3], '{"x": "y z"}  ', " x é ü"]]
    for c in score(lm, PROMPTS[:1], texts)[0]:
        assert len(c.word_logps) == len(c.text.split())
        assert sum(c.word_logps) == pytest.approx(sum(c.token_logps), abs=1e-5)


def test_offsets_fallback_when_tokenizer_gives_none(lm: CausalLM,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [[TARGETS[0], TARGETS[3]]]
    ok = score(lm, PROMPTS[:1], texts)[0]
    real_encode = decode.encode

    def no_offsets(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        enc = real_encode(*args, **kwargs)
        enc.target_offsets = [[(0, 0)] * len(o) for o in enc.target_offsets]
        return enc

    monkeypatch.setattr(decode, "encode", no_offsets)
    fallback = score(lm, PROMPTS[:1], texts)[0]
    for a, b in zip(ok, fallback, strict=True):
        # decoded prefixes reproduce each token's span (leading space included for byte-level)
        assert b.offsets == a.offsets
        assert b.word_logps == pytest.approx(a.word_logps, abs=1e-6)


def test_greedy_equals_generate(lm: CausalLM) -> None:
    got = nbest(lm, PROMPTS, num_beams=1, max_new_tokens=10, batch_size=4)
    for prompt, cands in zip(PROMPTS, got, strict=True):
        assert [c.text for c in cands] == _generate_one(lm, prompt, 1, 10)


def test_nbest_sorted_deduped_and_batch_invariant(lm: CausalLM) -> None:
    stats: dict[str, int] = {}
    got = nbest(lm, PROMPTS[:3], num_beams=4, n_best=3, max_new_tokens=6, batch_size=3,
                stats=stats)
    one = nbest(lm, PROMPTS[:3], num_beams=4, n_best=3, max_new_tokens=6, batch_size=1)
    for prompt, cands, single in zip(PROMPTS[:3], got, one, strict=True):
        texts = [c.text for c in cands]
        assert texts == [c.text for c in single]
        assert [c.norm for c in cands] == pytest.approx([c.norm for c in single], abs=1e-5)
        # independent: the per-prompt beams, deduplicated, ranked by their own forward pass
        pool = list(dict.fromkeys(_generate_one(lm, prompt, 4, 6)))
        norms = {t: sum(r := _reference(lm, prompt, t)[1]) / len(r) for t in pool}
        expected = sorted(pool, key=lambda t: -norms[t])[:3]
        assert texts == expected
        assert len(set(texts)) == len(texts) <= 3
        assert all(a.norm >= b.norm for a, b in zip(cands, cands[1:], strict=False))
    assert stats["truncated_prompts"] == 0 and stats["truncated_targets"] == 0
    assert 0 <= stats["unfinished"] <= 12


def test_truncation_is_counted() -> None:
    lm = _lm("char")  # one token per character: lengths are easy to reason about
    stats: dict[str, int] = {}
    nbest(lm, PROMPTS[:2], num_beams=2, n_best=2, max_new_tokens=8, max_length=40, stats=stats)
    assert stats["truncated_prompts"] == 2  # char prompts are ~80 tokens > 40 − 8 − 1
    stats = {}
    long_target = TARGETS[3]  # 61 characters
    c = score(lm, PROMPTS[:1], [[long_target]], max_length=24, stats=stats)[0][0]
    assert stats == {"truncated_prompts": 1, "truncated_targets": 1, "offset_fallback": 0}
    assert len(c.token_ids) == 24 - 8  # the prompt keeps 8 tokens, the target the rest
    assert c.eos_logp == 0.0 and c.logp == pytest.approx(sum(c.token_logps))
    assert c.norm == pytest.approx(c.logp / 16)
    assert len(c.word_logps) == len(long_target.split())
    assert sum(c.word_logps) == pytest.approx(c.logp, abs=1e-5)


def test_candidate_json_round_trip() -> None:
    c = Candidate(text='{"a": "b"}', logp=-3.0, norm=-1.0, token_ids=[5, 6],
                  token_logps=[-1.0, -1.5], offsets=[(0, 4), (4, 10)],
                  word_logps=[-1.0, -1.5], eos_logp=-0.5)
    back = Candidate.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back == c
    assert math.isclose(back.logp, sum(back.token_logps) + back.eos_logp)


def test_bad_arguments_name_the_fix() -> None:
    from w2s_core.errors import W2SError

    lm = _lm("char")
    with pytest.raises(W2SError, match="num_beams"):
        nbest(lm, PROMPTS[:1], num_beams=0)
    with pytest.raises(W2SError, match="max_length"):
        nbest(lm, PROMPTS[:1], max_new_tokens=64, max_length=70)
    with pytest.raises(W2SError, match="one list of texts per prompt"):
        score(lm, PROMPTS[:2], [[TARGETS[0]]])


def test_nbest_drops_duplicate_texts(monkeypatch: pytest.MonkeyPatch) -> None:
    lm = _lm("char")
    beams = _generate_one(lm, PROMPTS[0], 4, 6)
    real = lm.tokenizer.decode
    # texts that differ only after their third character now decode identically
    monkeypatch.setattr(lm.tokenizer, "decode", lambda ids, **kw: real(ids, **kw)[:3])
    texts = [c.text for c in nbest(lm, PROMPTS[:1], num_beams=4, n_best=4, max_new_tokens=6)[0]]
    assert sorted(texts) == sorted(set(t[:3] for t in beams))


@pytest.mark.parametrize("kind", ["word", "char"])
def test_scratch_lm_tokenizers(kind: str) -> None:
    from w2s_core.models.scratch_lm import build_scratch_lm

    lm = build_scratch_lm(kind, CORPUS, layers=1, hidden=32, heads=2, seed=1)
    got = nbest(lm, PROMPTS, num_beams=1, max_new_tokens=8, batch_size=4)
    for prompt, cands in zip(PROMPTS, got, strict=True):
        assert [c.text for c in cands] == _generate_one(lm, prompt, 1, 8)
    for c in score(lm, PROMPTS[:2], [[TARGETS[0], TARGETS[3]], [TARGETS[1], ""]])[0]:
        ids, ref = _reference(lm, PROMPTS[0], c.text)
        assert c.token_logps + [c.eos_logp] == pytest.approx(ref, abs=1e-5)
        assert sum(c.word_logps) == pytest.approx(sum(c.token_logps), abs=1e-5)
        assert len(c.word_logps) == len(c.text.split())


def test_shrinking_greedy_equals_per_prompt_generate(lm: CausalLM) -> None:
    """``greedy`` drops rows at EOS; its texts must equal an unpadded per-prompt ``generate``.
    EOS is re-pointed at a token greedy emits early for the first prompt, so rows stop at
    different steps and the batch (and its KV cache) really shrinks."""
    import copy

    first = lm.model.generate(torch.tensor([lm.tokenizer(PROMPTS[0])["input_ids"]]),
                              do_sample=False, max_new_tokens=3, pad_token_id=0,
                              eos_token_id=None)[0, -1].item()
    tok = copy.deepcopy(lm.tokenizer)
    tok.eos_token = tok.convert_ids_to_tokens(first)
    lm2 = CausalLM(name=lm.name, model=lm.model, tokenizer=tok)
    stats: dict[str, int] = {}
    got = greedy(lm2, PROMPTS, max_new_tokens=12, batch_size=len(PROMPTS), stats=stats)
    assert got == [_generate_one(lm2, p, 1, 12)[0] for p in PROMPTS]
    assert 0 < stats["unfinished"] < len(PROMPTS)  # some rows stopped early, some ran out
    assert greedy(lm2, PROMPTS, max_new_tokens=12, batch_size=2) == got  # batch invariant


def test_rows_per_pass_grows_on_a_gpu_for_small_models_only() -> None:
    assert scaled_rows("cpu", 135_000_000, 16) == 16
    assert scaled_rows("cuda", 135_000_000, 16) == 16 * GPU_BATCH_SCALE
    assert scaled_rows("cuda", 7_000_000_000, 16) == 16  # a big model keeps the CPU size
    assert scaled_rows("cuda", GPU_SCALE_MAX_PARAMS - 1, 4) == 4 * GPU_BATCH_SCALE
    # a model's own weights decide: a CPU module keeps the size, a module without weights too
    assert rows_per_pass(torch.nn.Linear(4, 4), 16) == 16
    assert rows_per_pass(torch.nn.ReLU(), 16) == 16


def test_shared_prompt_scoring_equals_unshared_and_runs_each_prompt_once(
        lm: CausalLM, monkeypatch: pytest.MonkeyPatch) -> None:
    """An utterance's candidates share one prompt pass when scored: the same log-probs as the
    unshared path (prompt + candidate per row), with fewer tokens through the decoder. The
    long candidate cuts its prompt from the left (``encode``), so one utterance holds two
    distinct prompts."""
    seen: list[int] = []
    hook = lm.model.get_decoder().register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(math.prod(decoder_tokens(kw))), with_kwargs=True)
    out, tokens = {}, {}
    try:
        for texts in ([[TARGETS[0], "", TARGETS[3] * 3], [TARGETS[1], TARGETS[2], " x "]],
                      [[TARGETS[0], TARGETS[1], TARGETS[2]], [TARGETS[3], " x "]]):
            for on in (True, False):
                monkeypatch.setattr(shared_prompt, "shares_prompts", lambda _m, on=on: on)
                seen.clear()
                out[on] = score(lm, PROMPTS[:2], texts, batch_size=8, max_length=160)
                tokens[on] = (len(seen), sum(seen))
            _same(out[True], out[False])
    finally:
        hook.remove()
    # candidates of similar length (the second set): fewer tokens, in three passes, not one
    # (the two prompts' common instruction, the rest of each prompt, the candidates)
    assert tokens[True][0] == 3 * tokens[False][0] == 3
    assert tokens[True][1] < 0.7 * tokens[False][1]


def _same(shared: list[list[Candidate]], unshared: list[list[Candidate]]) -> None:
    for a_s, b_s in zip(shared, unshared, strict=True):
        for a, b in zip(a_s, b_s, strict=True):
            assert a.token_ids == b.token_ids and a.token_logps == pytest.approx(
                b.token_logps, abs=1e-5)
            assert a.eos_logp == pytest.approx(b.eos_logp, abs=1e-5)


def test_beam_search_runs_each_prompt_once_and_finds_the_same_beams(
        lm: CausalLM, monkeypatch: pytest.MonkeyPatch) -> None:
    """``nbest`` fills the cache of each prompt (but its last token) once and copies it to the
    prompt's beams; plain ``generate`` runs the prompt once per beam. Same candidates and
    scores either way, on left-padded prompts of different lengths."""
    beams, b = 3, len(PROMPTS)
    width = max(len(lm.tokenizer(p)["input_ids"]) for p in PROMPTS)
    seen: list[tuple[int, ...]] = []
    hook = lm.model.get_decoder().register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(decoder_tokens(kw)), with_kwargs=True)
    out, first = {}, {}
    try:
        for on in (True, False):
            if not on:
                monkeypatch.setattr(decode, "_prefilled", lambda *_a: {})
            seen.clear()
            out[on] = nbest(lm, PROMPTS, num_beams=beams, n_best=beams, max_new_tokens=8,
                            batch_size=b)
            first[on] = seen[:2]
    finally:
        hook.remove()
    assert first[True] == [(b, width - 1), (b * beams, 1)]  # prefix once, then last token
    assert first[False][0] == (b * beams, width)  # every beam runs the whole prompt
    for a_s, b_s in zip(out[True], out[False], strict=True):
        assert [c.text for c in a_s] == [c.text for c in b_s]
        assert [c.norm for c in a_s] == pytest.approx([c.norm for c in b_s], abs=1e-5)


def test_scoring_a_greedy_output_reads_the_argmax_log_prob_of_each_step() -> None:
    """What a student's predictions.parquet stores as its own scores: its greedy output scored
    under teacher forcing. Each token the greedy decoder chose is that step's argmax, so its
    stored log-prob must be the step's maximum log-softmax, here from a plain forward pass
    over prompt + output ids. The character tokenizer makes the text's ids the generated ids
    (a BPE text may re-tokenize differently; then the stored score is the text's, as for the
    teachers' candidates)."""
    lm = _lm("char")
    tok = lm.tokenizer
    texts = greedy(lm, PROMPTS, max_new_tokens=12, max_length=256)
    cands = [c[0] for c in score(lm, PROMPTS, [[t] for t in texts], max_length=256)]
    for prompt, text, c in zip(PROMPTS, texts, cands, strict=True):
        p_ids, t_ids = tok(prompt)["input_ids"], tok(text, add_special_tokens=False)["input_ids"]
        assert c.token_ids == t_ids and c.text == text
        ids = torch.tensor([p_ids + t_ids])
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(input_ids=ids).logits[0].double(), -1)
        steps = logp[len(p_ids) - 1: len(p_ids) - 1 + len(t_ids)]
        assert c.token_logps == pytest.approx(steps.max(-1).values.tolist(), abs=1e-4)
        assert c.logp == pytest.approx(sum(c.token_logps) + c.eos_logp, abs=1e-6)
        assert sum(c.word_logps) == pytest.approx(sum(c.token_logps), abs=1e-4)
