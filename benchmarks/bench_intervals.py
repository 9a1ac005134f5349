"""Benchmark: real coverage of the run-summary intervals on simulated sweeps with a known mean.

Each simulated sweep has ``n_subsets`` teacher subsets × ``--seeds`` student seeds:
    y[s, e] = μ + a_s + ε_se,   a_s ~ σ_s·(subset effect),   ε_se ~ N(0, σ_e²)
The seeds share their subset (pseudo-replicates), as in a real sweep. For each size it prints
how often the 95 % interval covers μ for
    (a) pooled   — ``mean_std_ci`` over all runs (the old rule: runs treated as independent),
    (b) cl-boot  — ``cluster_bootstrap`` over subsets (mean of subset means),
    (c) t-unit   — ``t_interval`` over subset means,
    (d) rule     — ``summarize_runs`` with ``MIN_BOOT_UNITS`` (t below it, cl-boot from it),
plus the mean interval width and the time per interval. ``MIN_BOOT_UNITS`` is the smallest
size where (b) reaches ≥ 0.93. Monte-Carlo error of a coverage: ±1.96·√(.95·.05/sims).

    python benchmarks/bench_intervals.py                  # 2000 sims, normal + skewed effects
    python benchmarks/bench_intervals.py --sims 1000 --effects normal
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from w2s_core.metrics.intervals import (
    MIN_BOOT_UNITS,
    cluster_bootstrap,
    summarize_runs,
    t_interval,
)
from w2s_core.metrics.stats import mean_std_ci

MU = 0.5


def subset_effects(rng: np.random.Generator, n: int, sigma: float, kind: str) -> np.ndarray:
    """(n,) zero-mean subset effects with sd ``sigma``; 'skewed' = centred exponential
    (skewness 2), the shape where a t-interval is least exact."""
    if kind == "normal":
        return rng.normal(0.0, sigma, n)
    return sigma * (rng.exponential(1.0, n) - 1.0)


def simulate(rng: np.random.Generator, sims: int, n_sub: int, n_seed: int, sigma_s: float,
             sigma_e: float, kind: str) -> pd.DataFrame:
    """A run table of ``sims`` independent sweeps (column ``sim``), one row per run."""
    eff = np.stack([subset_effects(rng, n_sub, sigma_s, kind) for _ in range(sims)])  # (S, n)
    y = MU + eff[:, :, None] + rng.normal(0.0, sigma_e, (sims, n_sub, n_seed))  # (S, n, e)
    sim, sub, seed = np.meshgrid(np.arange(sims), np.arange(n_sub), np.arange(n_seed),
                                 indexing="ij")
    return pd.DataFrame({"sim": sim.ravel(), "subset": [f"s{i}" for i in sub.ravel()],
                         "seed": seed.ravel(), "data_seed": 0, "y": y.ravel()})


def unit_means(y: np.ndarray, units: np.ndarray) -> np.ndarray:
    """(n_units,) mean of ``y`` per unit label."""
    inv = np.unique(units, return_inverse=True)[1]
    return np.bincount(inv, weights=y) / np.bincount(inv)


def score(intervals: list[dict] | pd.DataFrame) -> tuple[float, float]:
    """(coverage of μ, mean width) of a list of interval dicts or a summary table."""
    t = pd.DataFrame(intervals)
    return float(((t["lo"] <= MU) & (MU <= t["hi"])).mean()), float((t["hi"] - t["lo"]).mean())


def run_size(df: pd.DataFrame, n_boot: int) -> dict[str, float]:
    """Coverage, width and ms per interval of the four rules on one simulated table."""
    out: dict[str, float] = {}
    groups = [(g["y"].to_numpy(), g["subset"].to_numpy()) for _, g in df.groupby("sim")]
    rules = {
        "pooled": lambda y, s: mean_std_ci(y, n_boot=n_boot),
        "cl-boot": lambda y, s: cluster_bootstrap(y, s, n_boot=n_boot),
        "t-unit": lambda y, s: t_interval(unit_means(y, s)),
    }
    for name, rule in rules.items():
        t0 = time.perf_counter()
        res = [rule(y, s) for y, s in groups]
        out[f"{name} ms"] = 1e3 * (time.perf_counter() - t0) / len(groups)
        out[name], out[f"{name} w"] = score(res)
    t0 = time.perf_counter()
    table = summarize_runs(df, ["sim"], "y", n_boot=n_boot)
    out["rule ms"] = 1e3 * (time.perf_counter() - t0) / len(groups)
    out["rule"], out["rule w"] = score(table)
    return out


def sweep_timing(n_boot: int) -> float:
    """Seconds for summarize_runs on a sweep-like index: 1,000 runs in ~100 groups."""
    rng = np.random.default_rng(1)
    n = 1000
    df = pd.DataFrame({"method": rng.choice(list("abcd"), n), "aux": rng.integers(0, 2, n) > 0,
                       "k": rng.integers(1, 14, n), "seed": rng.integers(0, 3, n),
                       "subset": rng.choice([f"s{i}" for i in range(40)], n),
                       "data_seed": 0, "pgr_mean": rng.normal(size=n)})
    summarize_runs(df.head(50), ["method"], "pgr_mean")  # warm caches/imports
    t0 = time.perf_counter()
    out = summarize_runs(df, ["method", "aux", "k"], "pgr_mean", n_boot=n_boot, min_boot_units=2)
    secs = time.perf_counter() - t0
    print(f"\nsummarize_runs, 1,000 runs in {len(out)} groups, all cluster bootstrap: "
          f"{secs:.3f} s")
    return secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=2000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[3, 5, 10, 20, 30, 40])
    ap.add_argument("--seeds", type=int, default=3, help="student seeds per subset")
    ap.add_argument("--sigma-s", type=float, default=0.1, help="sd of the subset effect")
    ap.add_argument("--sigma-e", type=float, default=0.02, help="sd of the seed noise")
    ap.add_argument("--effects", choices=["normal", "skewed", "both"], default="both")
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args()
    mc = 1.96 * np.sqrt(0.95 * 0.05 / args.sims)
    kinds = ["normal", "skewed"] if args.effects == "both" else [args.effects]
    print(f"true mean {MU}, σ_s = {args.sigma_s}, σ_e = {args.sigma_e}, {args.seeds} seeds per "
          f"subset, {args.sims} sims, {args.n_boot} resamples, MIN_BOOT_UNITS = "
          f"{MIN_BOOT_UNITS}; coverage ± {mc:.3f} (Monte Carlo)")
    cols = ["pooled", "cl-boot", "t-unit", "rule"]
    for kind in kinds:
        rng = np.random.default_rng(0)
        rows = {}
        for n_sub in args.sizes:
            df = simulate(rng, args.sims, n_sub, args.seeds, args.sigma_s, args.sigma_e, kind)
            rows[n_sub] = run_size(df, args.n_boot)
        t = pd.DataFrame(rows).T.rename_axis("subsets")
        print(f"\n{kind} subset effects — coverage of the 95% interval (target 0.95)")
        print(t[cols].round(3).to_string())
        print("mean width")
        print(t[[f"{c} w" for c in cols]].round(4).to_string())
        print("ms per interval")
        print(t[[f"{c} ms" for c in cols]].round(3).to_string())
    sweep_timing(args.n_boot)


if __name__ == "__main__":
    main()
