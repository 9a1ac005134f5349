"""Generation training under DDP: two CPU processes (gloo, ``torch.distributed.run``) end with
the weights of one process that trains on both halves of every batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_two_process_ddp_training_equals_one_process(tmp_path: Path) -> None:
    # one process, 4 utterances a step; two processes, 2 each (accelerate's micro-batch is
    # batch_size × processes, split rank::world): the same 4 per step, gradients averaged
    subprocess.run([sys.executable, str(WORKER), "4", str(tmp_path / "one")], check=True)
    # gloo on the loopback interface: a CI container's hostname need not resolve to one
    env = {**os.environ, "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node", "2", str(WORKER), "2", str(tmp_path / "ddp")],
                   check=True, capture_output=True, timeout=300, env=env)
    one = torch.load(tmp_path / "one_0.pt")
    r0, r1 = torch.load(tmp_path / "ddp_0.pt"), torch.load(tmp_path / "ddp_1.pt")
    assert torch.equal(r0, r1)  # the ranks' gradients were all-reduced, every parameter
    # float summation order differs; a missing or unsynced gradient moves weights by ~lr = 1e-2
    assert torch.allclose(one, r0, atol=1e-4)
    assert (one - build_untrained()).abs().max() > 1e-3  # and training moved the weights


def build_untrained() -> torch.Tensor:
    import ddp_worker  # tests/ is on sys.path, as for ``checks``

    from w2s_core.models.scratch_lm import build_scratch_lm

    lm = build_scratch_lm("char", ddp_worker.PROMPTS + ddp_worker.TARGETS, layers=2, hidden=32,
                          heads=4, seed=0)
    return torch.cat([p.detach().flatten() for p in lm.model.parameters()])
