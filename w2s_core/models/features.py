"""Frozen sentence features for many models at once, fast and cached on disk.

Why it is fast: specs that share a ``base`` (mpnet-2l/4l/base) come out of ONE forward pass via
``output_hidden_states``; texts are sorted by token length so batches carry almost no padding;
matmuls run in bf16 autocast where the hardware has bf16 units (weights stay fp32); and each
(model, texts) result is cached, so sweeps over methods and seeds never recompute features.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from w2s_core.device import autocast_bf16, pick_device
from w2s_core.models import assets, packages
from w2s_core.models.registry import is_causal_config
from w2s_core.models.spec import ModelSpec
from w2s_core.paths import cache_dir

CACHE_VERSION = 1  # bump when pooling or padding changes, so stale caches are not reused


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when this CPU has native bf16 matmul units (AVX-512 BF16 or AMX).

    torch reports the AVX-512 capability level; where /proc/cpuinfo exists the bf16 flag is
    checked too, because on AVX-512 CPUs without it bf16 is emulated and slower than fp32.
    """
    cap = torch.backends.cpu.get_cpu_capability()
    if "AVX512" not in cap and "AMX" not in cap:
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto" → "bf16" on CUDA with bf16 support and on CPUs with bf16 units, else "fp32"."""
    if precision in ("bf16", "fp32"):
        return precision
    if precision != "auto":
        raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', not {precision!r}")
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"


def pool(states: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Masked mean (encoders) or the last non-pad token (causal LMs), in fp32.

    The last real token is found from the mask itself, so left and right padding both work.
    """
    states, mask = states.float(), mask.to(states.device)
    if how == "last":
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = (mask.long() * positions).argmax(dim=1)
        return states[torch.arange(states.shape[0], device=states.device), last]
    m = mask.unsqueeze(-1).float()
    return (states * m).sum(1) / m.sum(1).clamp(min=1.0)


def pad_batch(ids: list[list[int]], rows: np.ndarray | list[int], pad_id: int,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of the given rows, right-padded to the longest one
    (pooling reads the mask, so the padding side does not matter)."""
    width = max(len(ids[i]) for i in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, i in enumerate(rows):
        input_ids[r, :len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
        mask[r, :len(ids[i])] = 1
    return input_ids.to(device), mask.to(device)


def effective_pooling(spec: ModelSpec, model: torch.nn.Module) -> str:
    """The spec's pooling, except that hub models that turn out causal pool the last token."""
    causal = is_causal_config(model.config)  # type: ignore[attr-defined]
    return "last" if causal else spec.pooling


def _final_norm(model: torch.nn.Module) -> torch.nn.Module | None:
    """Decoder LMs normalise only after the last block; a truncated model applies that norm to
    its own last block, so depth-k features from the full model need it applied too."""
    for name in ("norm", "ln_f", "final_layer_norm"):
        module = getattr(model, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    return None


def _base_identity(base: str) -> dict[str, object]:
    """What decides the weights: package versions, or file sizes/mtimes of a local folder."""
    if base in packages.PACKAGES:
        return {"base": base, "packages": {n: packages.package(n).version
                                           for n in packages.PACKAGES[base]}}
    path = Path(base)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        return {"base": str(path), "files": [(p.name, p.stat().st_size, p.stat().st_mtime_ns)
                                             for p in files]}
    return {"base": base}


def _cache_path(spec: ModelSpec, ident: dict[str, object], precision: str, max_length: int,
                texts_sha: str, truncation_side: str = "right") -> Path:
    key = {"v": CACHE_VERSION, "id": ident, "layers": spec.layers, "pooling": spec.pooling,
           "precision": precision, "max_length": max_length, "texts": texts_sha}
    if truncation_side != "right":  # keeps the keys (and caches) of right-truncated features
        key["truncation_side"] = truncation_side
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return cache_dir() / "features" / f"{digest}.npy"


def _load_cached(path: Path, n: int) -> np.ndarray | None:
    """The cached array, ``None`` if absent; raises ``ValueError`` if it is corrupt."""
    if not path.exists():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(str(err)) from None
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] == 0 or arr.dtype != np.float32:
        raise ValueError(f"shape {arr.shape} dtype {arr.dtype}, expected ({n}, D) float32")
    return arr


def _save_atomic(path: Path, arr: np.ndarray) -> None:
    """Write beside the target, then rename: readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _encode_group(specs: list[ModelSpec], texts: list[str], device: torch.device,
                  precision: str, batch_size: int, max_length: int,
                  progress: bool, truncation_side: str = "right") -> dict[str, np.ndarray]:
    """One forward pass of the shared base over all texts; features for every spec's depth."""
    depths = [s.layers for s in specs]
    load_depth = None if None in depths else max(d for d in depths if d is not None)
    model, tok = assets.load_encoder(dataclasses.replace(specs[0], layers=load_depth), device)
    n_layers = model.config.num_hidden_layers  # type: ignore[attr-defined]
    pooling = {s.name: effective_pooling(s, model) for s in specs}
    need_hidden = any(d is not None and d < n_layers for d in depths)
    norm = _final_norm(model)
    tok.truncation_side = truncation_side  # "left" keeps a text's end (where BoolQ's question is)
    ids = tok(texts, truncation=True, max_length=max_length, add_special_tokens=True)["input_ids"]
    # longest first: the largest batch (peak memory) comes first, and padding is minimal
    order = np.argsort([-len(x) for x in ids], kind="stable")
    out: dict[str, np.ndarray] = {}
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    bar = tqdm(total=len(texts), desc=f"features {specs[0].base}", unit="text",
               disable=not progress)
    # bf16 autocast, not a bf16 model: LayerNorm, softmax and the residual stream stay fp32,
    # which keeps embeddings within cosine ~1e-4 of fp32 (a pure-bf16 model drifts further).
    with torch.inference_mode(), bar, autocast_bf16(device, precision == "bf16"):
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            input_ids, mask = pad_batch(ids, rows, pad_id, device)
            res = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=need_hidden)
            for s in specs:
                if s.layers is None or s.layers >= n_layers:
                    states = res.last_hidden_state
                else:
                    states = res.hidden_states[s.layers]
                    states = norm(states) if norm is not None else states
                vec = pool(states, mask, pooling[s.name]).cpu().numpy()
                if s.name not in out:
                    out[s.name] = np.empty((len(texts), vec.shape[1]), dtype=np.float32)
                out[s.name][rows] = vec
            bar.update(len(rows))
    return out


def extract_features(specs: list[ModelSpec], texts: list[str], *, batch_size: int = 64,
                     device: str = "auto", precision: str = "auto", progress: bool = True,
                     max_length: int = 128, truncation_side: str = "right"
                     ) -> dict[str, np.ndarray]:
    """``{spec.name: (N, D) float32}``: frozen pooled features, one forward pass per ``base``.

    ``precision``: "auto" (bf16 autocast where the hardware has bf16 units), "bf16" or "fp32".
    ``max_length`` caps tokens per text (128 covers tweets and short questions);
    ``truncation_side`` says which end a longer text loses ("right" or "left").
    """
    if truncation_side not in ("right", "left"):
        raise ValueError(f"truncation_side must be 'right' or 'left', not {truncation_side!r}")
    for s in specs:
        if s.kind == "tfidf":
            raise ValueError(f"'{s.name}' is a tf-idf model: use tfidf_fit_predict, not features")
    if not texts:
        raise ValueError("extract_features needs at least one text")
    dev = pick_device(device)
    prec = resolve_precision(precision, dev)
    texts = list(texts)
    texts_sha = hashlib.sha256(json.dumps(texts).encode()).hexdigest()
    result: dict[str, np.ndarray] = {}
    corrupt: list[str] = []
    groups: dict[str, list[ModelSpec]] = {}
    idents: dict[str, dict[str, object]] = {}
    for s in dict.fromkeys(specs):  # duplicates would be computed twice
        ident = idents.setdefault(s.base, _base_identity(s.base))
        path = _cache_path(s, ident, prec, max_length, texts_sha, truncation_side)
        try:
            cached = _load_cached(path, len(texts))
        except ValueError:
            corrupt.append(path.name)
            cached = None
        if cached is not None:
            result[s.name] = cached
        else:
            groups.setdefault(s.base, []).append(s)
    if corrupt:
        warnings.warn(f"{len(corrupt)} corrupt feature cache file(s) ({', '.join(corrupt)}); "
                      "recomputing them", RuntimeWarning, stacklevel=2)
    for base, group in groups.items():
        fresh = _encode_group(group, texts, dev, prec, batch_size, max_length, progress,
                              truncation_side)
        for s in group:
            _save_atomic(_cache_path(s, idents[base], prec, max_length, texts_sha,
                                     truncation_side), fresh[s.name])
            result[s.name] = fresh[s.name]
    return {s.name: result[s.name] for s in specs}
