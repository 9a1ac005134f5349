"""Causal LMs for generation: a model and its tokenizer travel together as one ``CausalLM``.

``load_causal`` takes every name a user may give (registry name, truncated variant, local folder,
hub id) and resolves it exactly as the encoder loader does (``assets.load_pretrained``: packaged
models from the cache, hub ids from the local HF cache first). ``save_causal`` / ``load_saved``
keep trained students and teachers: a folder appears whole or not at all.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from w2s_core.data.prompts import ensure_pad
from w2s_core.errors import W2SError
from w2s_core.models import assets
from w2s_core.models.registry import MODELS, resolve_model
from w2s_core.models.spec import ModelSpec


@dataclass
class CausalLM:
    """A ``*ForCausalLM`` (fp32 master weights) with its tokenizer (pad set by ``ensure_pad``).

    The model's generation config is pointed at the tokenizer's EOS and pad: targets end with
    ``tokenizer.eos_token_id`` (``prompts.encode``), so that is where generation must stop, even
    for a chat model whose own config stops at an end-of-turn token.
    """

    name: str
    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers.PreTrainedTokenizerBase

    def __post_init__(self) -> None:
        ensure_pad(self.tokenizer)
        gen = getattr(self.model, "generation_config", None)
        if gen is not None:
            gen.eos_token_id = self.tokenizer.eos_token_id
            gen.pad_token_id = self.tokenizer.pad_token_id

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def _causal_architectures() -> set[str]:
    """Every class name transformers loads through ``AutoModelForCausalLM`` (GPT2LMHeadModel,
    LlamaForCausalLM, ...): an architecture outside this set is an encoder or a classifier."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    names: set[str] = set()
    for value in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():
        names.update([value] if isinstance(value, str) else value)
    return names


def _load(spec: ModelSpec, name: str, device: str | torch.device) -> CausalLM:
    from transformers import AutoModelForCausalLM

    try:
        model, tok = assets.load_pretrained(spec, model_class=AutoModelForCausalLM)
    except ValueError as err:  # transformers: "Unrecognized configuration class ..."
        raise W2SError(f"'{name}' is not a causal LM ({str(err).splitlines()[0][:120]})",
                       "use a decoder-only model such as smollm2-135m") from None
    archs = getattr(model.config, "architectures", None) or []
    if archs and not set(archs) & _causal_architectures():
        # AutoModelForCausalLM happily wraps e.g. a BERT encoder in a fresh, untrained LM head
        raise W2SError(f"'{name}' is not a causal LM (architectures: {', '.join(archs)})",
                       "use a decoder-only model such as smollm2-135m")
    if spec.layers is not None:
        assets.truncate_layers(model, spec.layers)
    model.config.use_cache = True  # generation re-reads past keys/values at every new token
    return CausalLM(name, model.to(device).eval(), tok)


def load_causal(name: str, device: str | torch.device = "cpu") -> CausalLM:
    """A registry name (truncated variants too), a local HF folder or a hub id → ``CausalLM``.

    fp32, eval mode, KV cache on, pad token set. Scratch teachers have no weights to load
    (``build_scratch_lm`` makes them) and registry encoders are not causal LMs: both are a
    one-line error before anything is loaded.
    """
    spec = resolve_model(name)
    kind = spec.kind
    if kind == "scratch":
        raise W2SError(f"{name} is trained from scratch", "build it with build_scratch_lm")
    if name in MODELS and kind != "causal":
        causal = [n for n in MODELS.names() if MODELS.get(n).kind == "causal"]
        raise W2SError(f"'{name}' is {'a tf-idf' if kind == 'tfidf' else 'an encoder'} model, "
                       "not a causal LM", f"use one of: {', '.join(causal)}")
    return _load(spec, name, device)


def load_tokenizer(name: str) -> Any:
    """A causal LM's tokenizer without its weights (e.g. to check prompt lengths before any
    model loads): a registry name, local folder or cached hub id; a hub id missing from the
    local cache goes through ``load_causal``, which fetches it."""
    from transformers import AutoTokenizer

    spec = resolve_model(name)
    source = str(assets.materialize(spec.base)) if spec.base in assets.PACKAGES else spec.base
    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=True)
    except OSError:
        return load_causal(name, "cpu").tokenizer


def save_causal(lm: CausalLM, folder: Path) -> None:
    """Model (safetensors) + tokenizer into ``folder``, atomically: written to a temporary
    sibling folder and renamed into place, replacing an older save, so an interrupted save
    never leaves a half-written model that would load with random weights."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=folder.parent))
    try:
        lm.model.save_pretrained(tmp)
        lm.tokenizer.save_pretrained(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; a saved model is an ordinary folder
        assets.replace_folder(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_saved(folder: Path, name: str, device: str | torch.device = "cpu") -> CausalLM:
    """Reload what ``save_causal`` wrote (or any HF causal LM folder) under the name ``name``."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise W2SError(f"no saved model in {folder} (config.json missing)",
                       "train the model again, or point to a folder written by save_causal")
    spec = ModelSpec(name=name, kind="causal", base=str(folder), pooling="last")
    return _load(spec, name, device)


def cache_kwarg(module: torch.nn.Module) -> str:
    """The name a model's forward takes its KV cache by: transformers 5 renamed
    ``past_key_values`` to ``cache`` on the models it has migrated, not yet on all."""
    import inspect

    return "cache" if "cache" in inspect.signature(module.forward).parameters \
        else "past_key_values"
