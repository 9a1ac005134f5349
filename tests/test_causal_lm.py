"""Causal LMs: scratch tokenizers (exact round trip, offsets, unk), scratch models, loading every
kind of name, and atomic save/reload. Tiny random models only (no SmolLM2 load)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from w2s_core.data.prompts import build_prompt, encode
from w2s_core.errors import W2SError
from w2s_core.methods.bridge import word_spans
from w2s_core.models import assets
from w2s_core.models.causal import CausalLM, load_causal, load_saved, save_causal
from w2s_core.models.scratch_lm import build_scratch_lm, build_tokenizer

TARGET = '{"fromloc.city_name": "new york"}'
TEXTS = [build_prompt("flights from new york to boston"),
         '{"fromloc.city_name": "new york", "toloc.city_name": "boston"}',
         "{}\n\ttabs and  double  spaces ' quotes ' , no clean up .\n"]


@pytest.fixture(autouse=True)
def _one_thread(torch_single_thread: None) -> None:
    """Tiny models: one thread avoids barrier waits on a shared machine."""


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5-layer random Llama with a word-level scratch tokenizer, saved as a plain HF folder."""
    tok = build_tokenizer("word", TEXTS)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=5, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=128, pad_token_id=tok.pad_token_id,
                         tie_word_embeddings=True, use_cache=False,
                         # a chat model's config stops at its end-of-turn token, not the EOS
                         # that prompts.encode appends: load_causal must override it
                         eos_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _logits(lm: CausalLM, text: str) -> torch.Tensor:
    ids = torch.tensor([lm.tokenizer(text)["input_ids"]])
    with torch.no_grad():
        return lm.model(ids).logits


# ------------------------------------------------------------------------------ tokenizers


def test_word_tokenizer_pieces_offsets_and_round_trip() -> None:
    tok = build_tokenizer("word", TEXTS)
    enc = tok(TARGET, return_offsets_mapping=True)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    # GPT-2 pre-tokenization, by hand: punctuation runs, words with their leading space
    assert pieces == ['{"', "fromloc", ".", "city", "_", "name", '":', ' "', "new", " york", '"}']
    assert [TARGET[s:e] for s, e in enc["offset_mapping"]] == pieces
    # words of TARGET.split(): '{"fromloc.city_name":', '"new', 'york"}'
    assert word_spans(TARGET, enc["offset_mapping"]) == [0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2]
    for text in [*TEXTS, TARGET, '{"toloc.city_name": "boston"}']:
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids, skip_special_tokens=True) == text


def test_word_tokenizer_maps_unseen_words_to_unk() -> None:
    tok = build_tokenizer("word", TEXTS)
    text = '{"fromloc.city_name": "new denver"}'
    ids = tok(text)["input_ids"]
    assert tok.convert_ids_to_tokens(ids)[-2:] == ["<unk>", '"}']
    # the unk replaces the whole piece " denver" (its leading space included)
    assert tok.decode(ids) == '{"fromloc.city_name": "new<unk>"}'
    assert tok.decode(ids + [tok.eos_token_id], skip_special_tokens=True) == (
        '{"fromloc.city_name": "new"}')


def test_char_tokenizer_one_token_per_character() -> None:
    tok = build_tokenizer("char", TEXTS)
    text = '{"a": "b c"}\n'
    enc = tok(text, return_offsets_mapping=True)
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == list(text)
    assert enc["offset_mapping"] == [(i, i + 1) for i in range(len(text))]
    # words '{"a":' '"b' 'c"}': a space belongs to the next word, the trailing newline to the last
    assert word_spans(text, enc["offset_mapping"]) == [0] * 5 + [1] * 3 + [2] * 5
    for t in [*TEXTS, TARGET]:
        assert tok.decode(tok(t)["input_ids"], skip_special_tokens=True) == t
    assert tok("xQz")["input_ids"][1] == tok.unk_token_id  # "Q" never occurs in TEXTS


def test_bpe_tokenizer_is_byte_level_subwords_with_exact_offsets() -> None:
    tok = build_tokenizer("bpe", TEXTS)
    assert len(tok) <= 1000  # BPE_VOCAB: the merges stop when the texts run out of pairs
    for text in [*TEXTS, TARGET, '{"toloc.city_name": "zürich"}', "unseen ✈ words"]:
        enc = tok(text, return_offsets_mapping=True)
        ids = enc["input_ids"]
        assert tok.unk_token_id not in ids  # every byte is in the vocabulary
        assert tok.decode(ids, skip_special_tokens=True) == text
        spans = enc["offset_mapping"]
        assert spans[0][0] == 0 and spans[-1][1] == len(text)
        if text.isascii():  # one byte per character: the offsets tile the text exactly
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False)), spans
            assert "".join(text[a:b] for a, b in spans) == text
    # sub-words: a seen word is one token, an unseen one several (not one char each)
    assert len(tok(" york", add_special_tokens=False)["input_ids"]) == 1
    n = len(tok(" denverish", add_special_tokens=False)["input_ids"])
    assert 1 < n <= len(" denverish")


@pytest.mark.parametrize("kind", ["word", "char", "bpe"])
def test_special_tokens_and_no_automatic_bos(kind: str) -> None:
    tok = build_tokenizer(kind, list(reversed(TEXTS)))
    assert (tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token) == (
        "<pad>", "<s>", "</s>", "<unk>")
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    assert tok(TEXTS[0])["input_ids"] == tok(TEXTS[0], add_special_tokens=False)["input_ids"]
    # the vocabulary does not depend on the order of the texts
    assert tok.get_vocab() == build_tokenizer(kind, TEXTS).get_vocab()
    # prompts.encode: target = its pieces + EOS, EOS offset (0, 0)
    e = encode(tok, [TEXTS[0]], [TARGET])
    assert e.target_ids[0][-1] == tok.eos_token_id and e.target_offsets[0][-1] == (0, 0)
    assert tok.decode(e.target_ids[0], skip_special_tokens=True) == TARGET


def test_bad_scratch_arguments_are_one_line_errors() -> None:
    with pytest.raises(W2SError, match="unknown scratch tokenizer kind"):
        build_tokenizer("wordpiece", TEXTS)  # type: ignore[arg-type]
    with pytest.raises(W2SError, match="no text"):
        build_tokenizer("char", [])
    with pytest.raises(W2SError, match="divisible"):
        build_scratch_lm("char", TEXTS, hidden=30, heads=4)


# ------------------------------------------------------------------------------ scratch models


def test_scratch_model_shape_seed_and_initial_loss() -> None:
    before = torch.get_rng_state()
    lm = build_scratch_lm("word", TEXTS, layers=2, hidden=32, heads=2, seed=3, max_positions=256)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is untouched
    cfg = lm.model.config
    assert (lm.name, type(lm.model).__name__) == ("gpt-word", "LlamaForCausalLM")
    assert (cfg.vocab_size, cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads,
            cfg.max_position_embeddings) == (len(lm.tokenizer), 2, 32, 2, 256)
    assert lm.model.lm_head.weight.data_ptr() == lm.model.model.embed_tokens.weight.data_ptr()
    assert lm.model.generation_config.eos_token_id == lm.tokenizer.eos_token_id
    assert lm.model.generation_config.pad_token_id == lm.tokenizer.pad_token_id
    same = build_scratch_lm("word", TEXTS, layers=2, hidden=32, heads=2, seed=3)
    other = build_scratch_lm("word", TEXTS, layers=2, hidden=32, heads=2, seed=4)
    w = lm.model.model.layers[0].mlp.up_proj.weight
    assert torch.equal(w, same.model.model.layers[0].mlp.up_proj.weight)
    assert not torch.equal(w, other.model.model.layers[0].mlp.up_proj.weight)
    # near-zero logits at init (std 0.02 weights): the loss is ≈ ln V, the uniform guess
    ids = torch.tensor([lm.tokenizer(TEXTS[1])["input_ids"]])
    with torch.no_grad():
        loss = lm.model(ids, labels=ids).loss.item()
    assert abs(loss - math.log(len(lm.tokenizer))) < 0.1


def test_char_model_learns_a_target_and_generate_stops_at_eos() -> None:
    lm = build_scratch_lm("char", TEXTS, layers=1, hidden=32, heads=2, seed=0, name="teacher")
    tok = lm.tokenizer
    e = encode(tok, [TEXTS[0]], [TARGET])
    prompt, target = e.prompt_ids[0], e.target_ids[0]
    ids = torch.tensor([prompt + target])
    labels = torch.tensor([[-100] * len(prompt) + target])  # loss on target + EOS only
    opt = torch.optim.Adam(lm.model.parameters(), lr=1e-2)
    lm.model.train()
    for _ in range(60):
        opt.zero_grad()
        lm.model(ids, labels=labels).loss.backward()
        opt.step()
    lm.model.eval()
    out = lm.model.generate(torch.tensor([prompt]), max_new_tokens=len(target) + 5,
                            do_sample=False)
    new = out[0, len(prompt):].tolist()
    assert new == target  # the target, then EOS, where generation stopped
    assert tok.decode(new, skip_special_tokens=True) == TARGET


# ------------------------------------------------------------------------------ loading


def test_load_local_folder_matches_direct_load(tiny_folder: Path) -> None:
    lm = load_causal(str(tiny_folder))
    ref = LlamaForCausalLM.from_pretrained(tiny_folder).eval()
    ids = torch.tensor([lm.tokenizer(TARGET)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(lm.model(ids).logits, ref(ids).logits)
    assert lm.model.config.use_cache is True and not lm.model.training
    assert ref.generation_config.eos_token_id == lm.tokenizer.bos_token_id  # as saved
    assert lm.model.generation_config.eos_token_id == lm.tokenizer.eos_token_id
    assert lm.model.generation_config.pad_token_id == lm.tokenizer.pad_token_id
    assert lm.model.dtype == torch.float32 and lm.device == torch.device("cpu")
    assert lm.tokenizer.decode(ids[0], skip_special_tokens=True) == TARGET


def test_packaged_names_load_the_materialized_folder_truncated(
        tiny_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def fake_materialize(base: str) -> Path:  # stands in for the SmolLM2 conversion
        asked.append(base)
        return tiny_folder

    monkeypatch.setattr(assets, "materialize", fake_materialize)
    full = load_causal("smollm2-135m")
    cut = load_causal("smollm2-4l")  # registry: base smollm2-135m, layers=4
    assert asked == ["smollm2-135m", "smollm2-135m"]
    assert (full.name, cut.name) == ("smollm2-135m", "smollm2-4l")
    assert full.model.config.num_hidden_layers == 5
    assert cut.model.config.num_hidden_layers == 4 and len(cut.model.model.layers) == 4
    # independent expectation: a 4-layer model built from config + the weights of layers 0–3
    cfg = LlamaForCausalLM.from_pretrained(tiny_folder).config
    cfg.num_hidden_layers = 4
    four = LlamaForCausalLM(cfg)
    four.load_state_dict({k: v for k, v in full.model.state_dict().items()
                          if ".layers.4." not in k})
    expect = _logits(CausalLM("four", four.eval(), cut.tokenizer), TARGET)
    torch.testing.assert_close(_logits(cut, TARGET), expect)
    assert not torch.allclose(_logits(full, TARGET), expect)  # layer 4 does change the output


def test_names_that_are_not_causal_lms(tiny_encoder_dir: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("nothing should be loaded")

    monkeypatch.setattr(assets, "load_pretrained", boom)
    with pytest.raises(W2SError, match="an encoder model, not a causal LM.*smollm2-135m"):
        load_causal("minilm-l6")
    with pytest.raises(W2SError, match="tf-idf"):
        load_causal("tfidf-logreg")
    for name in ("gpt-word", "gpt-char", "gpt-bpe"):
        with pytest.raises(W2SError, match=f"^{name} is trained from scratch — build it with "
                                           "build_scratch_lm$"):
            load_causal(name)
    monkeypatch.undo()
    # a local BERT would load with a fresh random LM head: refused after reading its config
    with pytest.raises(W2SError, match="not a causal LM.*BertModel"):
        load_causal(str(tiny_encoder_dir))


def test_unreachable_hub_id_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assets, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(W2SError, match="could not load 'no-such-org/no-such-causal-w2s'") as err:
        load_causal("no-such-org/no-such-causal-w2s")
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------ save / reload


@pytest.mark.parametrize("kind", ["word", "char", "bpe"])
def test_save_and_reload_gives_identical_logits(kind: str, tmp_path: Path) -> None:
    lm = build_scratch_lm(kind, TEXTS, layers=1, hidden=32, heads=2, seed=1)
    folder = tmp_path / "models" / "teacher"
    save_causal(lm, folder)
    back = load_saved(folder, "teacher-0")
    assert back.name == "teacher-0" and back.model.config.use_cache is True
    assert back.tokenizer.get_vocab() == lm.tokenizer.get_vocab()
    for text in (TEXTS[0], TARGET):
        assert back.tokenizer(text)["input_ids"] == lm.tokenizer(text)["input_ids"]
        assert back.tokenizer.decode(back.tokenizer(text)["input_ids"],
                                     skip_special_tokens=True) == text
        assert torch.equal(_logits(back, text), _logits(lm, text))
    assert (folder / "model.safetensors").is_file()
    assert sorted(p.name for p in folder.parent.iterdir()) == ["teacher"]  # no temp left


def test_save_replaces_whole_folder_and_failed_save_keeps_old(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    folder = tmp_path / "lm"
    first = build_scratch_lm("char", TEXTS, layers=1, hidden=32, heads=2, seed=1)
    save_causal(first, folder)
    (folder / "stale.txt").write_text("from an older save")
    second = build_scratch_lm("char", TEXTS, layers=1, hidden=32, heads=2, seed=2)
    save_causal(second, folder)
    assert not (folder / "stale.txt").exists()
    assert torch.equal(_logits(load_saved(folder, "b"), TARGET), _logits(second, TARGET))

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    third = build_scratch_lm("char", TEXTS, layers=1, hidden=32, heads=2, seed=3)
    monkeypatch.setattr(third.tokenizer, "save_pretrained", fail)
    with pytest.raises(OSError, match="disk full"):
        save_causal(third, folder)
    assert torch.equal(_logits(load_saved(folder, "b"), TARGET), _logits(second, TARGET))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lm"]


def test_load_saved_without_a_model_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(W2SError, match="no saved model.*save_causal"):
        load_saved(tmp_path, "x")
