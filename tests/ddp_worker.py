"""One process of ``test_lm_ddp``: train_lm on the shared-prompt test examples, weights saved.

Run under ``torch.distributed.run`` (2 processes, gloo on CPU) or alone; argv: batch size per
process, output file stem.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for w2s_core

from w2s_core.models.scratch_lm import build_scratch_lm  # noqa: E402
from w2s_core.training import lm_train  # noqa: E402
from w2s_core.training.lm_train import GenExample, LabelSeq, LMTrainConfig, LossSpec  # noqa: E402

PROMPTS = [f"Slots as JSON. Sentence: \"fly from {a} to {b}\" JSON:" for a, b in
           (("boston", "denver"), ("dallas", "miami"), ("austin", "reno"), ("tulsa", "waco"))]
TARGETS = [f'{{"from": "{a}", "to": "{b}"}}' for a, b in
           (("boston", "denver"), ("dallas", "miami"), ("austin", "reno"), ("tulsa", "waco"))]


def main() -> None:
    batch, out = int(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    lm = build_scratch_lm("char", PROMPTS + TARGETS, layers=2, hidden=32, heads=4, seed=0)
    ex = [GenExample(PROMPTS[i], [LabelSeq(TARGETS[i]), LabelSeq(TARGETS[i - 1]),
                                  LabelSeq(TARGETS[i][:-2] + ', "x": "y"}')], [0.5, 0.3, 0.2])
          for i in range(4)]
    # 3-row chunks: each process's 2 examples run as 2 chunks that share one instruction pass
    # (``Forward.root``, outside DDP's forward) — the path whose gradients must still sync
    lm_train.SHARED_CHUNK = 3
    cfg = LMTrainConfig(epochs=2, lr=1e-2, batch_size=batch, warmup=0.0)
    lm_train.train_lm(lm, ex, LossSpec("ce"), cfg, 0)
    rank = int(os.environ.get("RANK", 0))
    torch.save(torch.cat([p.detach().flatten() for p in lm.model.parameters()]),
               f"{out}_{rank}.pt")


if __name__ == "__main__":
    main()
