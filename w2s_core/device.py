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


# A forward pass (or decoding step) of a small model on a GPU is bound by kernel launches, not
# by rows: 8x the rows cost about the same time there, while on a CPU every row costs (the CPU
# sizes in the callers were measured on 2 cores). Measured on an H200: SmolLM2-135M training in
# chunks of 4 rows spent 1.15 s a step of 32 rows, 7.7x an HF Trainer's whole-batch step. A
# model of ≥ 1B parameters fills a GPU with a few rows already, and 8x the rows could exhaust
# its memory (a 7B student's activations), so it keeps the CPU sizes. Rows per pass are not part
# of a run's identity, like the device itself.
GPU_BATCH_SCALE = 8
GPU_SCALE_MAX_PARAMS = 1_000_000_000


def scaled_rows(device_type: str, n_params: int, cpu_size: int) -> int:
    """Rows per pass for a model of ``n_params`` parameters on a ``device_type`` device."""
    if device_type == "cuda" and n_params < GPU_SCALE_MAX_PARAMS:
        return cpu_size * GPU_BATCH_SCALE
    return cpu_size


def rows_per_pass(model: torch.nn.Module, cpu_size: int) -> int:
    """Rows per forward pass, decoding or scoring call of ``model`` where its weights are:
    ``cpu_size`` on a CPU, more on a GPU (``scaled_rows``)."""
    params = list(model.parameters())
    if not params:
        return cpu_size
    return scaled_rows(params[0].device.type, sum(p.numel() for p in params), cpu_size)


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
