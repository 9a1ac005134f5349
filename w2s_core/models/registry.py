"""The built-in models and ``resolve_model``: registry name, local folder or hub id → ``ModelSpec``.

The built-in specs live in ``w2s_core.catalog`` (torch-free, read by the dashboard); this module
registers them and resolves every other name a user may give.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

from w2s_core import catalog
from w2s_core.errors import W2SError
from w2s_core.models.spec import ModelSpec
from w2s_core.registry import Registry

MODELS: Registry[ModelSpec] = Registry("model")
for _spec in catalog.models():
    MODELS.register(_spec.name, _spec)

# owner/name as on the Hugging Face hub, or a bare legacy id such as gpt2-large (no owner)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# a bare name at least this similar (difflib ratio) to a registry name is taken for its typo:
# minilm-l7 → minilm-l6 is 0.89, while real bare hub ids score ≤ 0.74 (bert-base vs mpnet-base)
_TYPO_CUTOFF = 0.75


def near_registry_names(name: str) -> list[str]:
    """Registry names that a bare ``name`` is likely a misspelling of (case-insensitive): close
    matches, and names of the same family (the part before the first "-": mpnet → mpnet-base)."""
    low = name.lower()
    names = MODELS.names()
    close = difflib.get_close_matches(low, names, n=3, cutoff=_TYPO_CUTOFF)
    family = [n for n in names if n.split("-")[0] == low.split("-")[0]]
    return list(dict.fromkeys(close + family))


def kind_from_architectures(architectures: list[str] | None) -> str:
    """"causal" for decoder-only LMs (``*ForCausalLM``), else "encoder"."""
    return "causal" if any("ForCausalLM" in a for a in architectures or []) else "encoder"


def is_causal_config(config: object) -> bool:
    """Decoder-only LM? Read from a loaded config, so hub ids need no flag."""
    archs = getattr(config, "architectures", None)
    return kind_from_architectures(archs) == "causal" or bool(getattr(config, "is_decoder", False))


def resolve_model(name: str) -> ModelSpec:
    """A registry name, else a local HF folder (with config.json), else a hub id.

    A hub id is ``owner/name`` or a bare legacy id (``gpt2-large``, ``distilbert-base-uncased``);
    a bare name close to a registry name (``minilm-l7``) is an error that suggests it instead,
    since a typo would otherwise surface much later as a failed download.
    Hub ids get the encoder defaults here; whether the model is causal is decided when it is
    loaded (reading its config may need the network, which resolving a name must not).
    """
    if name in MODELS:
        return MODELS.get(name)
    path = Path(name).expanduser()
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            raise W2SError(f"model folder '{name}' has no config.json",
                           "point to a folder written by save_pretrained, or use a registry name")
        try:
            archs = json.loads(config.read_text()).get("architectures")
        except (OSError, ValueError) as err:
            raise W2SError(f"cannot read {config} ({err})", "re-save the model") from None
        kind = kind_from_architectures(archs)
        return ModelSpec(
            name=name, kind=kind, base=str(path.resolve()),  # type: ignore[arg-type]
            pooling="last" if kind == "causal" else "mean",
            description=f"local model folder ({', '.join(archs or ['unknown architecture'])})",
        )
    if "/" not in name:
        near = near_registry_names(name)
        if near:
            raise W2SError(
                f"unknown model '{name}' (not a registry name, and too close to one to be taken "
                "for a hub id)",
                f"did you mean {', '.join(near)}? known: {', '.join(MODELS.names())}",
            )
    if _HUB_ID.match(name):
        return ModelSpec(name=name, kind="encoder", base=name,
                         description="Hugging Face hub model (needs network or a warm HF cache)")
    raise W2SError(
        f"unknown model '{name}' (not a registry name, a folder with config.json, or a hub id "
        "such as owner/name or gpt2-large)", f"known: {', '.join(MODELS.names())}",
    )
