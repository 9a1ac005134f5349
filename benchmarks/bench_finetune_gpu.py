"""Training throughput: ``finetune_predict`` against a plain HF ``Trainer`` run.

Both fully fine-tune the same randomly initialised Llama-style causal LM as a 2-class sequence
classifier, at the same per-device batch size and sequence length, on synthetic token ids (no
downloads). Tokens/s is measured after a few warm-up steps. On CUDA the Trainer runs twice: with
its defaults (fp32) and with ``bf16=True``; ``finetune_predict`` runs with its defaults (bf16
autocast on fp32 master weights, fused AdamW).

    python benchmarks/bench_finetune_gpu.py                 # ~0.34B model, for a GPU
    python benchmarks/bench_finetune_gpu.py --tiny          # small config, CPU smoke test
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from w2s_core.models.registry import resolve_model  # noqa: E402
from w2s_core.training.finetune import FinetuneConfig, finetune_predict  # noqa: E402

FULL = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
            num_key_value_heads=16, intermediate_size=2816, vocab_size=32000)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            intermediate_size=128, vocab_size=1000)


def build_model_dir(out: Path, dims: dict[str, int], seq_len: int) -> int:
    """A random-init LlamaForCausalLM plus a word-level tokenizer whose words are token ids
    ("t17" → 17), so synthetic texts tokenize to exactly the ids we choose."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    config = LlamaConfig(**dims, max_position_embeddings=max(seq_len, 128), pad_token_id=0,
                         bos_token_id=1, eos_token_id=1, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    vocab = {f"t{i}": i for i in range(dims["vocab_size"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t1"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="t0", unk_token="t1",
                            eos_token="t1").save_pretrained(out)
    return sum(p.numel() for p in model.model.parameters())


def synthetic(n: int, seq_len: int, vocab: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, vocab, size=(n, seq_len))
    return [" ".join(f"t{i}" for i in row) for row in ids], rng.integers(0, 2, size=n)


class StepClock:
    """Wall time between the end of warm-up and the last step (GPU synchronised there)."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps, self.t0, self.t1 = warmup, steps, 0.0, 0.0

    def tick(self, step: int) -> None:  # step counts from 0
        if step in (self.warmup - 1, self.steps - 1):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if step == self.warmup - 1:
                self.t0 = time.perf_counter()
            else:
                self.t1 = time.perf_counter()

    def tokens_per_s(self, batch: int, seq_len: int) -> float:
        return batch * seq_len * (self.steps - self.warmup) / (self.t1 - self.t0)


def run_ours(model_dir: Path, texts: list[str], y: np.ndarray, args: argparse.Namespace) -> float:
    clock = StepClock(args.warmup, args.steps)
    target = torch.from_numpy(y)

    def loss_fn(logits: torch.Tensor, idx: torch.Tensor, tau: float) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits, target[idx].to(logits.device))

    cfg = FinetuneConfig(mode="full", lr=1e-5, epochs=1, batch_size=args.batch_size,
                         warmup_frac=0.0, progress=False)
    finetune_predict(resolve_model(str(model_dir)), texts, loss_fn, texts[:1], 2, cfg, seed=0,
                     max_length=args.seq_len,
                     on_step=lambda step, loss: clock.tick(step))
    return clock.tokens_per_s(args.batch_size, args.seq_len)


def run_trainer(model_dir: Path, texts: list[str], y: np.ndarray, args: argparse.Namespace,
                bf16: bool) -> float:
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    clock = StepClock(args.warmup, args.steps)

    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):  # noqa: ANN001, ANN003, ANN201
            clock.tick(state.global_step - 1)

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    enc = tok(texts, truncation=True, max_length=args.seq_len)
    data = [{"input_ids": i, "attention_mask": m, "labels": int(label)}
            for i, m, label in zip(enc["input_ids"], enc["attention_mask"], y, strict=True)]
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(output_dir=out, per_device_train_batch_size=args.batch_size,
                                  max_steps=args.steps, learning_rate=1e-5, bf16=bf16,
                                  save_strategy="no", report_to=[], logging_steps=10**6,
                                  disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
                                  seed=0)
        Trainer(model=model, args=targs, train_dataset=data, processing_class=tok,
                callbacks=[Clock()]).train()
    return clock.tokens_per_s(args.batch_size, args.seq_len)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="small config for a CPU smoke test")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--seq-len", type=int, default=None)
    ap.add_argument("--threads", type=int, default=0, help="CPU torch threads (0 = default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    defaults = (12, 3, 4, 32) if args.tiny else (40, 10, 8, 512)
    for name, value in zip(("steps", "warmup", "batch_size", "seq_len"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, value)
    dims = TINY if args.tiny else FULL
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)"
    with tempfile.TemporaryDirectory() as tmp:
        n_params = build_model_dir(Path(tmp), dims, args.seq_len)
        texts, y = synthetic(args.batch_size * args.steps, args.seq_len, dims["vocab_size"])
        print(f"device {device}; Llama {n_params / 1e6:.1f}M params ({dims}); batch "
              f"{args.batch_size} x seq {args.seq_len}; {args.steps} steps, {args.warmup} warm-up")
        ours = run_ours(Path(tmp), texts, y, args)
        rows = [("finetune_predict (defaults)", ours)]
        rows.append(("HF Trainer (defaults: fp32)", run_trainer(Path(tmp), texts, y, args, False)))
        if cuda:
            rows.append(("HF Trainer (bf16=True)", run_trainer(Path(tmp), texts, y, args, True)))
    for label, tps in rows:
        print(f"{label:<30} {tps:12.0f} tokens/s   ours / this = {ours / tps:5.2f}x")


if __name__ == "__main__":
    main()
