"""Run-summary intervals with an explicit unit of resampling (w2s_core.metrics.stats)."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from w2s_core.errors import W2SError
from w2s_core.metrics import intervals as S
from w2s_core.metrics import stats

NAN = float("nan")


def test_t_interval_matches_hand_and_scipy() -> None:
    out = S.t_interval([1.0, 2.0, 3.0, NAN, math.inf])
    # hand: mean 2, s = 1, t_{2, .975} = 4.302653 → half-width 4.302653 / √3 = 2.484138
    assert out["mean"] == 2.0 and out["std"] == pytest.approx(1.0)
    assert out["lo"] == pytest.approx(2 - 2.484138, abs=1e-6)
    assert out["hi"] == pytest.approx(2 + 2.484138, abs=1e-6)
    assert out["n"] == 3 and out["n_undefined"] == 2 and out["method"] == "95% t-interval (n = 3)"
    v = np.random.default_rng(1).normal(0.4, 0.1, size=7)
    lo, hi = sps.t.interval(0.9, 6, loc=v.mean(), scale=sps.sem(v))
    got = S.t_interval(v, ci=0.9)
    assert (got["lo"], got["hi"]) == pytest.approx((lo, hi), rel=1e-12)


def test_t_interval_single_value_gives_no_interval() -> None:
    one = S.t_interval([0.7, NAN])
    assert one["mean"] == 0.7 and one["n"] == 1 and one["n_undefined"] == 1
    assert math.isnan(one["lo"]) and math.isnan(one["hi"]) and math.isnan(one["std"])
    assert one["method"] == "none (n = 1)"
    empty = S.t_interval([NAN])
    assert empty["n"] == 0 and math.isnan(empty["mean"])
    with pytest.raises(W2SError, match="outside"):
        S.t_interval([1.0, 2.0], ci=95)


def test_cluster_bootstrap_one_run_per_cluster_is_ordinary_bootstrap() -> None:
    v = np.random.default_rng(2).normal(size=12)
    labels = [f"subset{c}" for c in "qwertyuiopas"]  # distinct, deliberately unsorted
    out = S.cluster_bootstrap(v, labels, ci=0.9, n_boot=500, seed=5)
    # independent ordinary percentile bootstrap with the same generator and seed
    idx = np.random.default_rng(5).integers(0, 12, size=(500, 12))
    lo, hi = np.quantile(v[idx].mean(axis=1), [0.05, 0.95])
    assert (out["lo"], out["hi"]) == pytest.approx((lo, hi), rel=1e-12)
    assert out["mean"] == pytest.approx(v.mean()) and out["n_clusters"] == 12
    # clusters weigh the same: cluster a = [1, 1, 1], cluster b = [3] → mean 2, not 1.5
    w = S.cluster_bootstrap([1.0, 1.0, 3.0, 1.0, NAN], ["a", "a", "b", "a", "b"])
    assert w["mean"] == 2.0 and w["n"] == 4 and w["n_undefined"] == 1 and w["n_clusters"] == 2
    assert 1.0 <= w["lo"] <= w["hi"] <= 3.0
    single = S.cluster_bootstrap([1.0, 2.0], ["a", "a"])
    assert single["mean"] == 1.5 and math.isnan(single["lo"]) and math.isnan(single["hi"])
    with pytest.raises(W2SError, match="cluster label"):
        S.cluster_bootstrap([1.0, 2.0], ["a"])


def test_unit_of_prefers_data_seed_then_subset_then_seed() -> None:
    df = pd.DataFrame({"data_seed": [0, 0, 1, 1], "subset": ["a", "b", "a", "b"],
                       "seed": [0, 1, 0, 1]})
    assert S.unit_of(df) == ["data_seed"]
    assert S.unit_of(df.assign(data_seed=0)) == ["subset"]
    assert S.unit_of(df.assign(data_seed=0, subset="a+b")) == ["seed"]
    assert S.unit_of(df.drop(columns="data_seed")) == ["subset"]  # missing = constant
    assert S.unit_of(df[["seed"]]) == ["seed"]


def _runs() -> pd.DataFrame:
    return pd.DataFrame({
        "method": ["mv"] * 5 + ["edl"] * 4 + ["one"] * 2,
        "data_seed": 0,
        "subset": ["A", "A", "A", "A", "B"] + ["all"] * 4 + ["x", "x"],
        "seed": [0, 1, 2, 3, 0] + [0, 1, 2, 3] + [0, 0],
        "pgr": [0.1, 0.2, 0.3, NAN, 0.8] + [0.4, 0.5, 0.6, 0.7] + [0.3, 0.5],
    })


def test_summarize_runs_averages_within_units_first() -> None:
    out = S.summarize_runs(_runs(), ["method"], "pgr").set_index("method")
    cols = ["mean", "std", "lo", "hi", "n", "n_units", "n_undefined", "unit", "interval"]
    assert list(out.columns) == cols
    mv = out.loc["mv"]
    # unit means: A = mean(.1, .2, .3) = .2, B = .8 → .5; pooling the runs would give .35
    assert mv["mean"] == pytest.approx(0.5) and mv["n"] == 4 and mv["n_undefined"] == 1
    assert mv["n_units"] == 2 and mv["unit"] == "subset"
    lo, hi = sps.t.interval(0.95, 1, loc=0.5, scale=sps.sem([0.2, 0.8]))
    assert (mv["lo"], mv["hi"]) == pytest.approx((lo, hi))
    assert mv["interval"] == "95% t-interval over 2 teacher subsets"
    edl = out.loc["edl"]  # one subset → the seeds are the units, and are labelled as such
    assert edl["unit"] == "seed" and edl["n_units"] == 4 and edl["mean"] == pytest.approx(0.55)
    pseudo = "95% t-interval over 4 seeds (minibatch order only: pseudo-replicates)"
    assert edl["interval"] == pseudo
    one = out.loc["one"]  # one subset, one seed: a single unit → no interval
    assert one["n_units"] == 1 and one["mean"] == pytest.approx(0.4) and math.isnan(one["lo"])
    assert one["interval"] == "no interval (n = 1)"


def test_summarize_runs_bootstrap_branch_and_determinism() -> None:
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"data_seed": np.repeat(np.arange(6), 4), "subset": "a",
                       "seed": np.tile(np.arange(4), 6), "v": rng.normal(size=24)})
    boot = S.summarize_runs(df, [], "v", n_boot=300, seed=7, min_boot_units=5).iloc[0]
    ref = S.cluster_bootstrap(df["v"], df["data_seed"], n_boot=300, seed=7)
    assert (boot["lo"], boot["hi"]) == pytest.approx((ref["lo"], ref["hi"]))
    assert boot["unit"] == "data_seed" and boot["n_units"] == 6
    assert boot["interval"] == "95% cluster bootstrap over 6 data replicates (300 resamples)"
    means = df.groupby("data_seed")["v"].mean().to_numpy()
    t = S.summarize_runs(df, [], "v", min_boot_units=7).iloc[0]
    assert (t["lo"], t["hi"]) == pytest.approx(sps.t.interval(0.95, 5, means.mean(),
                                                              sps.sem(means)))
    again = S.summarize_runs(df, [], "v", n_boot=300, seed=7, min_boot_units=5)
    assert again.iloc[0].equals(boot)
    with pytest.raises(W2SError, match="no column"):
        S.summarize_runs(df, ["method"], "v")


def test_summarize_runs_is_fast_for_a_sweep() -> None:
    rng = np.random.default_rng(4)
    n = 1000
    df = pd.DataFrame({"method": rng.choice(list("abcd"), n), "k": rng.integers(1, 26, n),
                       "subset": rng.choice(list("abcdefghijklmnopqrstuvwxyz"), n),
                       "seed": rng.integers(0, 3, n), "pgr_mean": rng.normal(size=n)})
    t0 = time.perf_counter()
    out = S.summarize_runs(df, ["method", "k"], "pgr_mean", min_boot_units=2)
    assert len(out) == 100 and time.perf_counter() - t0 < 2.0  # ~0.2 s; generous for 2 cores


def test_paired_summary_pairs_exactly_matched_runs() -> None:
    keys = ["data_seed", "subset", "seed", "aux"]
    a = pd.DataFrame({"method": "a", "data_seed": 0, "subset": ["s1", "s1", "s2", "s2", "s9"],
                      "seed": [0, 1, 0, 1, 0], "aux": False, "pgr": [0.5, 0.6, 0.7, 0.9, 5.0]})
    b = a.assign(method="b", pgr=[0.4, 0.4, 0.6, 0.6, NAN])
    b.loc[4, "subset"] = "s8"  # a's s9 run and b's s8 run have no partner
    other = a.assign(method="c", pgr=-9.0)  # a third method must be ignored
    aux = a.assign(aux=True, pgr=a["pgr"] + 0.1).iloc[:2]  # aux: one subset, two seeds
    aux_b = b.assign(aux=True).iloc[:2]
    df = pd.concat([a, b, other, aux, aux_b], ignore_index=True)
    out = S.paired_summary(df, "a", "b", "pgr", pair_on=keys, by=["aux"]).set_index("aux")
    plain = out.loc[False]
    # diffs: s1 → (.1, .2) mean .15, s2 → (.1, .3) mean .2; mean of subset means .175
    assert plain["pairs"] == 4 and plain["n"] == 4 and plain["n_units"] == 2
    assert plain["mean"] == pytest.approx(0.175) and plain["unit"] == "subset"
    with_aux = out.loc[True]  # diffs (.2, .3) over two seeds of one subset
    assert with_aux["pairs"] == 2 and with_aux["mean"] == pytest.approx(0.25)
    assert with_aux["unit"] == "seed" and "pseudo-replicates" in with_aux["interval"]
    with pytest.raises(W2SError, match="share a pair_on key"):
        S.paired_summary(df, "a", "b", "pgr", pair_on=["data_seed", "subset", "aux"])
    with pytest.raises(W2SError, match="matches"):
        S.paired_summary(df.assign(setting=df["method"]), "a", "b", "pgr",
                         pair_on=[*keys, "setting"])


def test_interval_note_merges_counts() -> None:
    table = pd.DataFrame({"interval": ["95% t-interval over 3 teacher subsets",
                                       "no interval (n = 1)",
                                       "95% t-interval over 9 teacher subsets",
                                       "95% t-interval over 5 teacher subsets"]})
    assert S.interval_note(table) == ("Intervals: 95% t-interval over 3–9 teacher subsets; "
                                      "no interval (n = 1).")
    table = S.summarize_runs(_runs(), ["method"], "pgr")
    assert S.interval_note(table) == (  # groups sorted: edl, mv, one
        "Intervals: 95% t-interval over 4 seeds (minibatch order only: pseudo-replicates); "
        "95% t-interval over 2 teacher subsets; no interval (n = 1).")
    with pytest.raises(W2SError, match="interval"):
        S.interval_note(pd.DataFrame({"mean": [1.0]}))


def _simulate(rng: np.random.Generator, sims: int, n_units: int, per_unit: int,
              unit: str) -> pd.DataFrame:
    """Sweeps with true mean .5: unit effect N(0, .1²) shared by its runs, run noise N(0, .02²)."""
    eff = rng.normal(0, 0.1, (sims, n_units, 1)) + rng.normal(0, 0.02, (sims, n_units, per_unit))
    sim, u, r = np.meshgrid(np.arange(sims), np.arange(n_units), np.arange(per_unit),
                            indexing="ij")
    df = pd.DataFrame({"sim": sim.ravel(), "data_seed": 0, "subset": "all",
                       "seed": r.ravel(), "y": 0.5 + eff.ravel()})
    df[unit] = u.ravel() if unit != "seed" else df["seed"]
    if unit == "data_seed":  # runs within a replicate differ by subset (and share its effect)
        df["subset"] = r.ravel().astype(str)
    return df


def _coverage(table: pd.DataFrame) -> float:
    return float(((table["lo"] <= 0.5) & (table["hi"] >= 0.5)).mean())


@pytest.mark.parametrize(("n_units", "per_unit", "unit"),
                         [(5, 3, "subset"), (3, 4, "data_seed"), (40, 3, "subset")])
def test_new_rule_covers_where_pooled_bootstrap_does_not(n_units: int, per_unit: int,
                                                         unit: str) -> None:
    df = _simulate(np.random.default_rng(n_units), 400, n_units, per_unit, unit)
    new = S.summarize_runs(df, ["sim"], "y", n_boot=1000)
    assert set(new["unit"]) == {unit}
    assert (new["n_units"] >= S.MIN_BOOT_UNITS).all() == (n_units >= S.MIN_BOOT_UNITS)
    old = pd.DataFrame([stats.mean_std_ci(g["y"].to_numpy(), n_boot=1000)
                        for _, g in df.groupby("sim")])  # the old rule: runs pooled
    assert 0.90 <= _coverage(new) <= 0.99
    assert _coverage(old) < 0.85
