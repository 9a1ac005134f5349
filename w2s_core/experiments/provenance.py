"""Where and with what a sweep ran: package versions, git commit, resolved device and precision.

Recorded in ``experiment.json`` once per sweep invocation, so a result can be traced to the code
and hardware that produced it, and the report can flag an experiment whose runs were computed
under different resolved settings (``precision: auto`` means bf16 on a CPU with bf16 units and
fp32 elsewhere; the resolved value is also hashed into every run id, so such runs never pool).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import platform
import subprocess
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "transformers", "crowd-kit", "w2s-lab", "numpy", "scikit-learn",
            "accelerate", "peft")
REPO = Path(__file__).resolve().parents[2]


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(repo: Path = REPO) -> str | None:
    """The checkout's commit (with ``+dirty`` for uncommitted changes), None outside git."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def record(device: str, precision: str) -> dict[str, Any]:
    """One provenance entry: ``device`` and ``precision`` as resolved on this machine."""
    return {"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "versions": package_versions(), "git_commit": git_commit(),
            "python": platform.python_version(), "machine": platform.machine(),
            "processor": platform.processor() or None, "device": device, "precision": precision}


def mixed(entries: list[dict[str, Any]]) -> list[str]:
    """Human notes on settings that differ between the sweep invocations of one experiment."""
    notes = []
    for key in ("device", "precision"):
        values = sorted({str(e.get(key)) for e in entries if e.get(key) is not None})
        if len(values) > 1:
            notes.append(f"runs were computed with different {key}s ({', '.join(values)}); "
                         "tables never pool them (each run's id holds its resolved settings)")
    versions = sorted({str((e.get("versions") or {}).get("torch")) for e in entries})
    if len(versions) > 1:
        notes.append(f"runs were computed with different torch versions ({', '.join(versions)})")
    return notes
