"""The uniform schema every dataset loader returns, and its validation."""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class TextDataset:
    """Texts with integer labels in ``range(len(class_names))`` and stable example ids."""

    name: str
    texts: list[str]
    labels: np.ndarray  # (N,) int64
    class_names: tuple[str, ...]
    ids: list[str] = field(default_factory=list)

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

    def subset(self, idx: np.ndarray) -> TextDataset:
        return TextDataset(self.name, [self.texts[i] for i in idx], self.labels[idx],
                           self.class_names, [self.ids[i] for i in idx])
