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
from w2s_core.data import builtin, files, hub
from w2s_core.data.schema import DataConfig, TextDataset
from w2s_core.registry import Registry, from_catalog

Loader = Callable[[DataConfig], TextDataset]


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
}


DATASETS: Registry[DatasetEntry] = from_catalog("dataset", catalog.datasets(), _LOADERS,
                                                  "loader", DatasetEntry)


def load_dataset(cfg: DataConfig) -> TextDataset:
    """Load ``cfg.name``; an unknown name is a W2SError that lists the known names."""
    return DATASETS.get(cfg.name).loader(cfg)
