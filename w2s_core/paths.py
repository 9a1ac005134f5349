"""Where the project keeps its cache (converted models, features) and its results."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Model conversions and feature caches: ``$W2S_CACHE`` or ``~/.cache/w2s``."""
    env = os.environ.get("W2S_CACHE")
    if env:
        path = Path(env).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "w2s"
    path.mkdir(parents=True, exist_ok=True)
    return path


def workspace_dir(arg: str | os.PathLike[str] | None = None) -> Path:
    """Results live here: ``--workspace`` beats ``$W2S_WORKSPACE`` beats ``./w2s_workspace``."""
    raw = arg if arg is not None else os.environ.get("W2S_WORKSPACE", "w2s_workspace")
    return Path(raw).expanduser().resolve()
