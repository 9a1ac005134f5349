"""Weak teachers trained from scratch: a word- or character-level tokenizer built from the weak
split's own texts, and a small randomly initialised Llama over it.

Such a teacher knows only what it has seen: the word-level one maps every unseen word piece of a
test sentence to ``<unk>`` (so it cannot copy an unseen city name into its answer), the
character-level one can spell anything but must learn spelling from a few thousand examples.

Both tokenizers are exact: ``decode(encode(s), skip_special_tokens=True) == s`` for any text made
of seen pieces (no normalizer, no added spaces, ``clean_up_tokenization_spaces=False``), and the
fast tokenizer's offsets are the pieces' character spans, as the word bridge needs. No
post-processor adds BOS/EOS: ``prompts.encode`` appends EOS to targets itself, and a prompt
tokenized with ``add_special_tokens=True`` equals the same prompt without.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from w2s_core.errors import W2SError
from w2s_core.models.causal import CausalLM

ScratchKind = Literal["word", "char", "bpe"]

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)  # ids 0..3 in this order

# GPT-2's pre-tokenizer pattern: a word piece carries its leading space (" york"), runs of
# punctuation stay together ('{"', '":'), whitespace before a word is its own piece.
GPT2_PIECES = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# One piece per character; "[\s\S]" rather than "." because "." does not match a newline.
CHARS = r"[\s\S]"
BPE_VOCAB = 1000  # byte-level BPE: 256 bytes + 4 specials + ~740 merges learnt from the texts


def build_tokenizer(kind: ScratchKind, texts: Sequence[str], max_length: int = 1024) -> Any:
    """A ``PreTrainedTokenizerFast`` whose vocabulary is every piece of ``texts``.

    word: GPT-2-style pieces (see ``GPT2_PIECES``) as whole tokens; char: one token per
    character. Vocabulary = the four specials (``<pad>`` 0, ``<s>`` 1, ``</s>`` 2, ``<unk>`` 3),
    then the pieces sorted, so the ids do not depend on the order of ``texts``. A piece outside
    the vocabulary becomes ``<unk>``; decoding shows it as the string "<unk>" (and drops it under
    ``skip_special_tokens=True``, as every HF tokenizer does with its unk token).
    bpe: byte-level BPE (``BPE_VOCAB`` tokens, same specials) learnt on ``texts`` — sub-words,
    unlike both and unlike the student's, and no unknown piece (every byte is in).
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if kind not in ("word", "char", "bpe"):
        raise W2SError(f"unknown scratch tokenizer kind {kind!r}", "use 'word', 'char' or 'bpe'")
    if kind == "bpe":
        return _byte_bpe(texts, max_length)
    pre = pre_tokenizers.Split(Regex(GPT2_PIECES if kind == "word" else CHARS),
                               behavior="isolated")
    pieces = {piece for text in texts for piece, _ in pre.pre_tokenize_str(text)}
    pieces -= set(SPECIALS)
    if not pieces:
        raise W2SError(f"no text to build a {kind}-level vocabulary from",
                       "pass the weak split's prompts and targets as texts")
    vocab = {tok: i for i, tok in enumerate([*SPECIALS, *sorted(pieces)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = pre
    backend.decoder = decoders.Fuse()  # concatenate the pieces: no spaces between tokens
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        clean_up_tokenization_spaces=False, model_max_length=max_length,
    )


def _byte_bpe(texts: Sequence[str], max_length: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if not any(texts):
        raise W2SError("no text to build a bpe vocabulary from",
                       "pass the weak split's prompts and targets as texts")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    # sorted: the merges (hence the ids) must not depend on the order of the texts
    backend.train_from_iterator(sorted(texts), trainers.BpeTrainer(
        vocab_size=BPE_VOCAB, special_tokens=list(SPECIALS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        clean_up_tokenization_spaces=False, model_max_length=max_length,
    )


def build_scratch_lm(kind: ScratchKind, texts: Sequence[str], *, layers: int = 2,
                     hidden: int = 128, heads: int = 4, seed: int = 0,
                     max_positions: int = 1024, name: str | None = None) -> CausalLM:
    """A randomly initialised ``LlamaForCausalLM`` over a tokenizer built from ``texts``.

    ``texts`` are the weak split's prompts and targets. The MLP is 4 × ``hidden`` wide (GPT-2's
    ratio), embeddings are tied to the LM head, and the weights depend only on ``seed`` (drawn
    under a forked RNG, so the caller's random state is left alone). fp32, eval mode, KV cache
    on; the generation config stops at ``</s>`` and pads with ``<pad>``.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    if layers < 1 or hidden < 1 or heads < 1 or hidden % heads:
        raise W2SError(f"bad scratch model shape: layers={layers}, hidden={hidden}, "
                       f"heads={heads}", "use layers ≥ 1 and a hidden size divisible by heads")
    tok = build_tokenizer(kind, texts, max_length=max_positions)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=4 * hidden,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=max_positions, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True, use_cache=True,
    )
    config.architectures = ["LlamaForCausalLM"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).float().eval()
    return CausalLM(name or f"gpt-{kind}", model, tok)
