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
