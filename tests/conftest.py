"""Shared fixtures: tiny random-init models (built in-test, no downloads) and a fresh cache.

The tiny models run in milliseconds, so the model, feature and training code paths are tested
without the packaged weights. ``W2S_CACHE`` is NOT redirected globally: tests of the real
packaged models reuse the user cache, where converted models persist between runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# A small vocabulary that covers the sentences the tests use (anything else maps to [UNK]).
TINY_CORPUS = [
    "the movie was great and i loved it",
    "the movie was terrible and i hated it",
    "what a wonderful happy day with friends",
    "what an awful sad day with bad news",
    "good good good excellent amazing fantastic",
    "bad bad bad horrible awful terrible",
    "the flight to boston was late again",
    "my phone battery died this morning",
    "i like this new song a lot",
    "nothing special just an ordinary tuesday",
]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def _tokenizer(with_cls_sep: bool):  # noqa: ANN202 - transformers type, imported lazily
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(TINY_CORPUS, trainers.WordLevelTrainer(special_tokens=SPECIALS))
    if with_cls_sep:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", eos_token="[SEP]",
    )


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide random BERT with its tokenizer, saved as an ordinary HF folder."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    tok = _tokenizer(with_cls_sep=True)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                        pad_token_id=tok.pad_token_id)
    config.architectures = ["BertModel"]
    out = tmp_path_factory.mktemp("tiny_encoder")
    BertModel(config, add_pooling_layer=False).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_causal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide random Llama causal LM with the same vocabulary and a pad token."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = _tokenizer(with_cls_sep=False)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                         max_position_embeddings=64, pad_token_id=tok.pad_token_id,
                         bos_token_id=2, eos_token_id=3, tie_word_embeddings=True)
    out = tmp_path_factory.mktemp("tiny_causal")
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture
def torch_single_thread() -> Iterator[None]:
    """One intra-op thread for tiny-model tests: their ops take microseconds, so on a busy
    machine every multi-thread barrier (waiting for a descheduled worker) costs 100x the op."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``W2S_CACHE`` for this test only (feature/model cache behaviour)."""
    cache = tmp_path / "w2s_cache"
    monkeypatch.setenv("W2S_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real small workspace built once per session by `w2s demo --quick` (packaged models),
    shared with the dashboard tests (same folder), so the demo runs only once."""
    from workspace_factory import demo_workspace as build

    return build(tmp_path_factory.getbasetemp())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201
    """Under CI a skipped test is a failure: CI installs every package, model and browser the
    suite needs, so a skip there means something is missing, not optional."""
    import os

    outcome = yield
    rep = outcome.get_result()
    if os.environ.get("CI") and rep.skipped:
        reason = rep.longrepr[-1] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"skipped under CI (CI=true), which counts as a failure: {reason}"


@pytest.fixture(scope="session")
def gen_workspace(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tiny generation sweep (tests/gen_workspace.py), run once per session and shared by
    the engine tests (test_gen_sweep.py) and the dashboard tests."""
    from gen_workspace import build

    return build(tmp_path_factory.mktemp("gen-sweep"))
