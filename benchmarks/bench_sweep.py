"""Benchmark: the full `w2s demo` cold (empty model/feature cache) and warm (features and
teacher predictions cached, every student retrained). Prints wall time and peak RSS.

Targets (2 cores): warm ≤ 60 s, cold ≤ 4 min, peak RSS ≤ 4 GB. Generation (issue 7): the quick
demo cold ≤ 15 min, where cold means an empty workspace with the models already converted (the
user's model cache), so the teachers are trained and every student run is made.

    python benchmarks/bench_sweep.py            # full demo
    python benchmarks/bench_sweep.py --quick    # the --quick slice
    python benchmarks/bench_sweep.py --warm-only
    python benchmarks/bench_sweep.py --task generation --quick --cold-only
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def run_demo(ws: Path, cache: Path, quick: bool, task: str = "classification"
             ) -> tuple[float, float]:
    """Runs the demo in a child process; returns (seconds, peak RSS of that child in GB)."""
    env = {**os.environ, "W2S_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "w2s_core.cli", "demo", "--no-progress", "--workspace", str(ws),
           "--task", task]
    if quick:
        cmd.append("--quick")
    # time a wrapper child so RUSAGE_CHILDREN holds only this run's peak
    code = ("import resource,subprocess,sys,time;t=time.time();"
            f"r=subprocess.run({cmd!r},env={env!r});"
            "print(time.time()-t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
            "sys.exit(r.returncode)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"demo failed:\n{out.stderr[-2000:]}")
    secs, rss_kb = out.stdout.strip().splitlines()[-1].split()
    return float(secs), float(rss_kb) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--warm-only", action="store_true", help="reuse the user cache (skip cold)")
    ap.add_argument("--cold-only", action="store_true", help="skip the warm rerun")
    ap.add_argument("--task", choices=["classification", "generation"], default="classification")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="w2s-bench-"))
    ws = tmp / "ws"
    from w2s_core.paths import cache_dir

    gen = args.task == "generation"
    # generation's cold keeps the converted models (the definition), not the workspace
    cache = cache_dir() if args.warm_only or gen else tmp / "cache"
    label = ("quick " if args.quick else "full ") + ("generation demo" if gen else "demo")
    print(f"{label}: {os.cpu_count()} CPUs, torch threads default")
    if not args.warm_only:
        secs, rss = run_demo(ws, cache, args.quick, args.task)
        what = "empty workspace, models converted" if gen else "empty cache"
        print(f"cold ({what}): {secs:7.1f} s   peak RSS {rss:.2f} GB")
        if args.cold_only:
            shutil.rmtree(tmp, ignore_errors=True)
            return
    else:
        run_demo(ws, cache, args.quick, args.task)  # make sure features and teachers exist
    # warm: drop every student run, keep cached features and teacher predictions
    for exp in (ws / "experiments").iterdir():
        shutil.rmtree(exp / "runs", ignore_errors=True)
        (exp / "runs.parquet").unlink(missing_ok=True)
    secs, rss = run_demo(ws, cache, args.quick, args.task)
    n = sum(1 for _ in (ws / "experiments").glob("*/runs/*/metrics.json"))
    print(f"warm (features + teachers cached, {n} students retrained): {secs:7.1f} s   "
          f"peak RSS {rss:.2f} GB   ({n / secs:.1f} students/s)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
