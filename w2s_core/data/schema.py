"""The uniform schema every dataset loader returns, and its validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from w2s_core.errors import W2SError


@dataclass(frozen=True)
class DataConfig:
    """Which data set, how it is split. Saved with every run.

    ``path``/``text_column``/``label_column`` are used by file-backed datasets (a user's own
    CSV/JSONL, or a local copy of a hub dataset); ``None`` means the dataset's default.
    Split sizes follow the paper (5k weak / 5k transfer / 1k test); ``n_test=None`` means
    "all the remaining examples".
    """

    name: str = "tweets"
    path: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    n_weak: int = 5000
    n_transfer: int = 5000
    n_test: int | None = None
    seed: int = 0
    # Data replicates: each seed re-draws the weak/transfer/test split (and a seeded
    # subsample such as the tweets' class balancing) and retrains the teachers, so intervals
    # can reflect data and teacher variance. None = the one replicate ``seed``.
    seeds: tuple[int, ...] | None = None
    # Token cap of feature extraction and fine-tuning, and which end a longer text loses:
    # "auto" = the dataset's default (left for CosmosQA/BoolQ, whose deciding text is last).
    max_length: int = 128
    truncation_side: Literal["auto", "right", "left"] = "auto"
    # A user file: its text encoding ("utf-8" tolerates a BOM; e.g. "mac_roman", "cp1252").
    encoding: str = "utf-8"
    id_column: str | None = None  # stable example ids (default: "id" when unique, else row no.)
    # Bring-your-own teachers: teacher name → one column (a hard label, or P(class 1) for a
    # binary task) or one column per class (probabilities in class order).
    weak_labels: dict[str, str | tuple[str, ...]] | None = None
    weak_labels_path: str | None = None  # the weak labels in a separate file, keyed by id_column

    def replicate_seeds(self) -> tuple[int, ...]:
        return tuple(self.seeds) if self.seeds else (self.seed,)

    def given_teachers(self) -> tuple[str, ...]:
        return tuple(self.weak_labels or ())


@dataclass(frozen=True)
class TextDataset:
    """Texts with integer labels in ``range(len(class_names))`` and stable example ids."""

    name: str
    texts: list[str]
    labels: np.ndarray  # (N,) int64
    class_names: tuple[str, ...]
    ids: list[str] = field(default_factory=list)
    # given teachers' soft labels, name → (N, C) rows summing to 1 (bring-your-own weak labels)
    weak: dict[str, np.ndarray] = field(default_factory=dict)
    # what loading did to the data (e.g. {"duplicates_dropped": 12}); recorded with the splits
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.ids:
            object.__setattr__(self, "ids", [f"{self.name}-{i}" for i in range(len(self.texts))])
        object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.int64))
        self.validate()

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.texts)

    def validate(self) -> None:
        n = len(self.texts)
        if n == 0:
            raise W2SError(f"dataset '{self.name}' is empty", "check the file or its filters")
        if len(self.labels) != n or len(self.ids) != n:
            raise W2SError(f"dataset '{self.name}': texts, labels and ids differ in length",
                           "fix the loader output")
        if len(self.class_names) < 2:
            raise W2SError(f"dataset '{self.name}' has fewer than 2 classes",
                           "a classification task needs at least two labels")
        bad = (self.labels < 0) | (self.labels >= self.n_classes)
        if bad.any():
            raise W2SError(
                f"dataset '{self.name}': {int(bad.sum())} labels outside 0..{self.n_classes - 1}",
                f"map labels to the classes {list(self.class_names)}")
        if len(set(self.ids)) != n:
            raise W2SError(f"dataset '{self.name}' has duplicate example ids", "make ids unique")
