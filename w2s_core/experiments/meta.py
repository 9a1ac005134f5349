"""experiment.json: what an experiment holds, merged across every sweep that wrote into it.

Each data replicate's fingerprint is stored so that a data file that changed under the same path
cannot silently mix with results computed from the old one (the config, and so the run ids, would
look the same). Every config that wrote into the experiment is kept (``configs``), with the option
settings its runs used (``settings``, filled by the sweep's planner) and where it ran
(``provenance``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd

from w2s_core import __version__
from w2s_core.errors import W2SError
from w2s_core.experiments import provenance
from w2s_core.experiments.config import ExperimentConfig
from w2s_core.experiments.protocol import Splits
from w2s_core.experiments.runspec import config_hash

FORMAT = 2  # 1: one replicate, teacher files named after the teachers, no RunSpec
EXAMPLE_COLUMNS = ["data_seed", "example_id", "split", "gold", "text"]


def example_rows(sp: Splits) -> list[tuple[str, str, Any, str]]:
    """(id, split, gold, text): gold is the class index, or a generation split's JSON target."""
    gold = getattr(sp, "gold_value", None) or (lambda i: int(sp.ds.labels[i]))
    return [(sp.ds.ids[i], s, gold(i), sp.ds.texts[i])
            for s in ("weak", "transfer", "test") for i in sp.idx[s]]


def _classes(sp: Splits) -> tuple[str, ...]:
    """Class names, or a slot-filling data set's slot types."""
    return tuple(getattr(sp.ds, "class_names", None) or getattr(sp.ds, "slot_types", ()))


def fingerprint(sp: Splits) -> str:
    """Hash of one replicate's selected examples (id, split, gold, text) and given weak labels."""
    blob = json.dumps(example_rows(sp)).encode()
    # the user's own weak labels are data too
    for name in sorted(getattr(sp.ds, "weak", None) or {}):
        blob += name.encode() + np.ascontiguousarray(sp.ds.weak[name]).tobytes()
    return hashlib.sha256(blob).hexdigest()[:16]


def merge(old: dict[str, Any], exp_id: str, cfg: ExperimentConfig, reps: list[Splits], *,
          device: str, precision: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """The new experiment.json content and this sweep's examples table; raises if a replicate's
    data changed since its runs were computed, or if replicates disagree on the classes."""
    replicates = dict(old.get("replicates") or {})
    frames = []
    for sp in reps:
        fp = fingerprint(sp)
        before = (replicates.get(str(sp.data_seed)) or {}).get("data_fingerprint")
        if before is None and not replicates and sp.data_seed == (
                old.get("splits") or {}).get("seed"):
            before = old.get("data_fingerprint")  # format 1: one replicate at top level
        if before not in (None, fp):
            raise W2SError(f"the data of experiment {exp_id} (data seed {sp.data_seed}) changed "
                           "since its runs were computed", "give the config a new `name`, or "
                           "delete the experiment's folder to recompute")
        replicates[str(sp.data_seed)] = {"splits": sp.info, "data_fingerprint": fp}
        frames.append(pd.DataFrame(example_rows(sp), columns=EXAMPLE_COLUMNS[1:])
                      .assign(data_seed=sp.data_seed))
    first = reps[0]
    for sp in reps[1:]:
        if _classes(sp) != _classes(first):
            raise W2SError(f"data seed {sp.data_seed} has other classes than data seed "
                           f"{first.data_seed}", "use a data set whose classes do not depend "
                           "on the seed")
    config = cfg.to_dict()
    meta = {
        **old, "id": exp_id, "name": cfg.name, "status": "running",
        "created": old.get("created") or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": config, "configs": {**(old.get("configs") or {}), config_hash(config): config},
        "replicates": replicates, "data_seeds": sorted(int(s) for s in replicates),
        # the first replicate's splits at top level: what single-split readers show
        "splits": replicates[str(first.data_seed)]["splits"],
        "data_fingerprint": replicates[str(first.data_seed)]["data_fingerprint"],
        "class_names": list(_classes(first)), "n_classes": len(_classes(first)),
        "task": cfg.task,
        "w2s_version": __version__, "format": FORMAT,
        "teacher_files": old.get("teacher_files") or {}, "settings": old.get("settings") or {},
        "provenance": [*(old.get("provenance") or [])[-49:],
                       provenance.record(device, precision)],
    }
    examples = pd.concat(frames, ignore_index=True)[EXAMPLE_COLUMNS]
    return meta, examples


def merge_examples(prev: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Keep earlier replicates' rows, replace this sweep's; one table sorted by data seed."""
    if "data_seed" in prev.columns:
        keep = prev[~prev["data_seed"].isin(new["data_seed"].unique())]
        new = pd.concat([keep[EXAMPLE_COLUMNS], new], ignore_index=True)
    return new.sort_values("data_seed", kind="stable").reset_index(drop=True)
