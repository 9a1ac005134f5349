"""Which teacher subsets a sweep runs: all of them, or a seeded size-stratified sample."""

from __future__ import annotations

import itertools
import math

import numpy as np


def subsets(teachers: tuple[str, ...], max_subsets: int | None, seed: int,
            sizes: tuple[int, ...] | None = None) -> list[tuple[str, ...]]:
    """All non-empty subsets in config order, by size; a stratified seeded sample if capped.
    ``sizes`` keeps only subsets of those sizes K; the sample drawn for a K does not depend on
    ``sizes`` (the same seeded draw, then filtered), so adding a K later adds runs only."""
    out: list[tuple[str, ...]] = []
    total = 2 ** len(teachers) - 1
    rng = np.random.default_rng(seed)
    for k in range(1, len(teachers) + 1):
        combos = list(itertools.combinations(teachers, k))
        if max_subsets is not None and total > max_subsets:
            take = max(1, math.ceil(max_subsets * len(combos) / total))
            keep = sorted(rng.choice(len(combos), size=min(take, len(combos)), replace=False))
            combos = [combos[i] for i in keep]
        if sizes is None or k in sizes:
            out += combos
    return out
