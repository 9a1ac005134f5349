"""Run-time device choice. Nothing here touches CUDA at import time."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` → cuda if available, else cpu. Called at run time only."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


# A forward pass (or decoding step) of these small models on a GPU is bound by kernel launches,
# not by rows: 8x the rows cost about the same time there, while on a CPU every row costs (the
# CPU sizes in the callers were measured on 2 cores). Measured on an H200: SmolLM2 training in
# chunks of 4 rows spent 1.15 s a step of 32 rows, 7.7x an HF Trainer's whole-batch step.
# Rows per pass are not part of a run's identity, like the device itself.
GPU_BATCH_SCALE = 8


def rows_per_pass(device: torch.device, cpu_size: int) -> int:
    """Rows per forward pass, decoding or scoring call on ``device``: ``cpu_size`` on a CPU,
    ``GPU_BATCH_SCALE`` times it on a GPU."""
    return cpu_size * GPU_BATCH_SCALE if device.type == "cuda" else cpu_size


@contextlib.contextmanager
def autocast_bf16(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """bf16 autocast for the forward pass; parameters (master weights) stay fp32.

    On CPU this uses AMX/AVX-512 bf16 kernels where the processor has them; it is still
    correct (only slower) where it does not.
    """
    if not enabled:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        yield
