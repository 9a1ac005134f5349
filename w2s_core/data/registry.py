"""The dataset registry: every loader the CLI, API and app can name.

Names and descriptions come from ``w2s_core.catalog`` (torch-free, read by the dashboard); this
module only attaches each loader. Registration lives here rather than in the loader modules, so
those stay plain functions (importable and testable alone) and there is no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from w2s_core import catalog
from w2s_core.catalog import DatasetInfo
from w2s_core.data import builtin, files, hub, slots
from w2s_core.data.schema import DataConfig, TextDataset
from w2s_core.data.slots import SlotDataset
from w2s_core.errors import W2SError
from w2s_core.registry import Registry, from_catalog

Loader = Callable[[DataConfig], TextDataset | SlotDataset]


@dataclass(frozen=True)
class DatasetEntry(DatasetInfo):
    """The catalog's description of a data set plus the function that loads it."""

    loader: Loader = field(kw_only=True)


_LOADERS: dict[str, Loader] = {
    "tweets": builtin.load_tweets,
    "tweets-3class": builtin.load_tweets_3class,
    "atis-intent": builtin.load_atis_intent,
    "wordnet-qa": builtin.load_wordnet_qa,
    "sciq": hub.load_sciq,
    "cosmos_qa": hub.load_cosmos_qa,
    "boolq": hub.load_boolq,
    "file": files.load_file,
    "atis-slots": slots.load_atis_slots,
    "slurp": slots.load_slurp,
    "slots-file": slots.load_slots_file,
}


DATASETS: Registry[DatasetEntry] = from_catalog("dataset", catalog.datasets(), _LOADERS,
                                                  "loader", DatasetEntry)


def load_dataset(cfg: DataConfig) -> TextDataset:
    """Load a classification data set ``cfg.name``; an unknown name is a W2SError that lists
    the known names."""
    entry = DATASETS.get(cfg.name)
    if entry.task != "classification":
        raise W2SError(f"'{cfg.name}' is a {entry.task} data set",
                       "set task: generation, or pick a classification data set")
    return entry.loader(cfg)  # type: ignore[return-value]


def load_slot_dataset(cfg: DataConfig) -> SlotDataset:
    """Load a slot-filling (generation) data set ``cfg.name``."""
    entry = DATASETS.get(cfg.name)
    if entry.task != "generation":
        raise W2SError(f"'{cfg.name}' is a {entry.task} data set, not a slot-filling one",
                       "use atis-slots, slurp (data.path) or slots-file (data.path)")
    return entry.loader(cfg)  # type: ignore[return-value]
