"""Seeded, disjoint, stratified weak / transfer / test splits.

Rule: the paper's sizes (5k weak / 5k transfer) where the data allows, the rest as test.
When the data set is too small for that, weak and transfer shrink in proportion so that
test keeps at least ``min(1000, N // 5)`` examples (and at least one), and
``info["shrunk"]`` says so: a test set of a few dozen examples would make every accuracy
and PGR meaningless.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from w2s_core.data.schema import DataConfig, TextDataset
from w2s_core.errors import W2SError

SPLITS = ("weak", "transfer", "test")


def min_test_size(n_total: int) -> int:
    return max(1, min(1000, n_total // 5))


def split_sizes(n_total: int, cfg: DataConfig) -> tuple[dict[str, int], bool]:
    """The three split sizes for ``n_total`` examples and whether weak/transfer shrank."""
    asked = {"weak": cfg.n_weak, "transfer": cfg.n_transfer, "test": cfg.n_test}
    for name, size in asked.items():
        if size is not None and size <= 0:
            raise W2SError(f"split size n_{name}={size} must be positive",
                           f"set n_{name} to at least 1" + (" or leave it unset (= the rest)"
                                                          if name == "test" else ""))
    w, t = cfg.n_weak, cfg.n_transfer
    if cfg.n_test is not None:
        if w + t + cfg.n_test > n_total:
            raise W2SError(
                f"n_weak={w} + n_transfer={t} + n_test={cfg.n_test} = {w + t + cfg.n_test} "
                f"exceeds the {n_total} examples of '{cfg.name}'",
                "lower the sizes, or leave n_test unset to shrink weak/transfer automatically")
        return {"weak": w, "transfer": t, "test": cfg.n_test}, False
    budget = n_total - min_test_size(n_total)
    if w + t <= budget:
        return {"weak": w, "transfer": t, "test": n_total - w - t}, False
    if budget < 2:
        raise W2SError(f"dataset '{cfg.name}' has only {n_total} examples",
                       "use a data set with at least 3 examples (ideally thousands)")
    new_w = max(1, w * budget // (w + t))
    new_t = max(1, budget - new_w)
    return {"weak": new_w, "transfer": new_t, "test": n_total - new_w - new_t}, True


def _allocate(sizes: list[int], counts: np.ndarray) -> np.ndarray:
    """(n_splits, n_classes) integer table: each split's size spread over the classes in
    proportion to the class counts (largest remainder), never taking more than is left."""
    left = counts.astype(np.int64).copy()
    n_total = int(counts.sum())
    table = np.zeros((len(sizes), len(counts)), dtype=np.int64)
    for s, size in enumerate(sizes):
        quota = size * counts / n_total
        take = np.minimum(np.floor(quota).astype(np.int64), left)
        # hand out the rounding remainder: largest fraction first, then anything with room
        order = np.lexsort((np.arange(len(counts)), -(quota - np.floor(quota))))
        while take.sum() < size:
            room = [c for c in order if take[c] < left[c]]
            for c in room[: size - int(take.sum())]:
                take[c] += 1
        table[s] = take
        left -= take
    return table


def make_splits(ds: TextDataset, cfg: DataConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Disjoint index arrays ``weak``/``transfer``/``test`` into ``ds`` plus an info dict.

    Stratified: each split gets the data's class proportions (up to rounding), from one
    seeded permutation per class. Indices inside a split are in seeded random order, so a
    prefix of a split is still a random sample. Same ``ds`` and ``cfg`` → same arrays.
    """
    n_total = len(ds)
    sizes, shrunk = split_sizes(n_total, cfg)
    counts = np.bincount(ds.labels, minlength=ds.n_classes)
    table = _allocate([sizes[s] for s in SPLITS], counts)
    rng = np.random.default_rng(cfg.seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in range(ds.n_classes):
        members = rng.permutation(np.flatnonzero(ds.labels == c))
        start = 0
        for s, name in enumerate(SPLITS):
            parts[name].append(members[start:start + table[s, c]])
            start += int(table[s, c])
    splits = {name: rng.permutation(np.concatenate(parts[name])).astype(np.int64)
              for name in SPLITS}
    info = split_info(n_total, cfg, splits, shrunk, stratified=True)
    info["class_counts"] = {name: np.bincount(ds.labels[idx], minlength=ds.n_classes).tolist()
                            for name, idx in splits.items()}
    return splits, info


def split_info(n_total: int, cfg: DataConfig, splits: dict[str, np.ndarray], shrunk: bool,
               *, stratified: bool) -> dict[str, Any]:
    """What a split recorded with its experiment says: sizes asked and got, seed, shrinking."""
    return {
        "n_total": n_total,
        "seed": cfg.seed,
        "requested": {"weak": cfg.n_weak, "transfer": cfg.n_transfer, "test": cfg.n_test},
        "sizes": {name: len(idx) for name, idx in splits.items()},
        "shrunk": shrunk,
        "min_test": min_test_size(n_total) if cfg.n_test is None else None,
        "stratified": stratified,
    }
