"""Student training speed per generation loss: hard CE, soft (naive-soft), token EDL (bayes).

The same causal LM (fresh copies of one set of weights) trains one epoch on the same synthetic
slot-filling examples with K soft label sequences each (``bench_lm_train.synthetic``; every
word of a label gets a seeded teacher log-prob in [log 0.2, 0]) under each loss, in fp32:

- ``ce``: hard labels, the fast path (log p of given tokens on the batch's distinct states);
- ``soft``: naive-soft, detached bridge targets in closed form on the states;
- ``edl``: bayes, token EDL on the states (its KL provably at the clamp: a constant);
- ``edl dense``: the same loss through the (R, T, V) path every token-EDL step took before the
  state path existed (forced here, for the ratio); ``edl k=16``: bayes-restricted, which keeps
  that path (its top-k support follows each row's target).

Tokens/s counts every non-pad token (prompt included), as ``train_lm`` reports it. Runs are
interleaved over ``--repeats`` and each variant's ratio to ``soft`` is taken per repeat (the
speed of a shared machine drifts between minutes), its median printed.

    python benchmarks/bench_token_losses.py                       # tiny random model, smoke
    python benchmarks/bench_token_losses.py --model smollm2-135m  # the real figure
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_lm_train import load_model, synthetic  # noqa: E402

from w2s_core.cli import tune_process  # noqa: E402
from w2s_core.training import lm_train  # noqa: E402
from w2s_core.training.lm_train import (  # noqa: E402
    GenExample,
    LabelSeq,
    LMTrainConfig,
    LossSpec,
    train_lm,
)


def soft_examples(prompts: list[str], targets: list[list[str]], seed: int = 0) -> list[GenExample]:
    """Each label with a teacher log-prob per word, uniform in [log 0.2, 0] (seeded)."""
    rng = random.Random(seed)
    out = []
    for p, ts in zip(prompts, targets, strict=True):
        labels = [LabelSeq(t, [rng.uniform(-1.6, 0.0) for _ in t.split()]) for t in ts]
        out.append(GenExample(p, labels, [1.0 / len(ts)] * len(ts)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny", help="'tiny' or a model name, e.g. smollm2-135m")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per run")
    ap.add_argument("--batch-size", type=int, default=8, help="examples per step")
    ap.add_argument("--labels", type=int, default=3, help="label sequences per prompt (K)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="CPU torch threads (0 = default)")
    args = ap.parse_args()
    tune_process()
    if args.threads:
        torch.set_num_threads(args.threads)
    tiny = args.model == "tiny"
    steps = args.steps or (6 if tiny else 4)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    prompts, targets = synthetic(steps * args.batch_size, labels=args.labels)
    lm = load_model(args.model, prompts + [t for ts in targets for t in ts], device)
    state = {k: v.detach().clone() for k, v in lm.model.state_dict().items()}
    examples = soft_examples(prompts, targets)
    cfg = LMTrainConfig(epochs=1, lr=1e-5, batch_size=args.batch_size, warmup=0.0,
                        precision="fp32")
    print(f"{args.model} on {device} ({torch.get_num_threads()} threads), vocabulary "
          f"{lm.model.get_output_embeddings().weight.shape[0]}: {len(examples)} examples × "
          f"{args.labels} labels, batch {args.batch_size}, {steps} steps per run, fp32")

    def run(spec: LossSpec, dense: bool = False) -> Callable[[], tuple[float, float]]:
        def go() -> tuple[float, float]:
            lm.model.load_state_dict(state)
            on_states = lm_train._edl_on_states
            if dense:  # the path every token-EDL step took before the state path
                lm_train._edl_on_states = lambda *_a: False  # type: ignore[assignment]
            try:
                stats = train_lm(lm, examples, spec, cfg, 0, log=lambda _m: None, device=device)
            finally:
                lm_train._edl_on_states = on_states
            return stats["tokens_per_s"], stats["first_loss"]
        return go

    runs = {"ce": run(LossSpec("ce")), "soft": run(LossSpec("soft")),
            "edl": run(LossSpec("edl")), "edl dense": run(LossSpec("edl"), dense=True),
            "edl k=16": run(LossSpec("edl", support=16))}
    speed: dict[str, list[float]] = {k: [] for k in runs}
    first: dict[str, float] = {}
    for r in range(args.repeats):
        for label, go in runs.items():
            tps, loss = go()
            speed[label].append(tps)
            first[label] = loss
        print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in speed.items()))
    for label, v in speed.items():
        ratio = statistics.median(a / b for a, b in zip(v, speed["soft"], strict=True))
        print(f"{label:10s} {statistics.median(v):8.1f} tokens/s (median of {len(v)}), "
              f"{ratio:.2f}× soft; first loss {first[label]:.5f}")
    # the state path must compute the dense path's loss (to rounding)
    print(f"edl − edl dense, first loss: {first['edl'] - first['edl dense']:+.2e}")


if __name__ == "__main__":
    main()
