"""A run's full identity: one typed, frozen ``RunSpec`` is the single source of the run id, the
stored ``config.json``, the run-index columns and every grouping key.

Why one object: runs that differ in *any* setting (an option such as ``kl_scale``, the training
config, the resolved precision) must never be pooled. When the id, the stored config and the
grouping columns are all derived from the same object, a new field cannot be hashed but forgotten
by the report (or the other way round).

Torch-free on purpose: the dashboard reads these columns and must not import torch, so options
are held as a plain mapping (``dataclasses.asdict`` of ``MethodOptions``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from w2s_core import catalog

Kind = Literal["ceiling", "transfer", "dpo"]  # dpo: preference optimisation after a transfer run

# Run-index columns that identify a run (everything else in a row is a metric).
ID_COLUMNS = ("run_id", "task", "kind", "method", "k", "subset", "aux", "seed", "data_seed",
              "setting", "train_setting", "precision")
# Settings that vary inside one experiment (the rest is fixed by the experiment id); their
# values are flattened into ``opt_<name>`` columns so tables can say which option set a row is.
OPTION_COLUMNS = ("evidence", "kl_scale", "aux_max", "aux_warmup", "aux_schedule", "weights",
                  "lam", "target_mode", "split", "temperature", "support", "joint_score",
                  "dpo_eps")
# options whose values mix numbers and words (ε = 0.1 or "confidence"): stored as text so one
# parquet column holds them
MIXED_OPTIONS = ("dpo_eps",)
# Runs pool (mean and interval over subsets, seeds, replicates) only within one of these groups.
GROUP_KEYS = ("setting", "method", "aux", "k")
# Two methods are compared on runs that match on all of these (same subset, seed, split, options).
PAIR_KEYS = ("setting", "data_seed", "subset", "seed", "aux")


def config_hash(obj: Any) -> str:
    """12 hex digits of SHA-256 over canonical JSON (sorted keys, no whitespace)."""
    blob = json.dumps(plain(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def plain(obj: Any) -> Any:
    """Tuples → lists, mapping keys → str: the JSON form that is hashed and stored."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run's result.

    ``options`` is None for ceilings: a student trained on gold labels uses no method option,
    so one ceiling serves every option set of its training setting. ``train`` holds the
    student, its mode, the result-affecting training hyper-parameters and the *resolved*
    precision (``auto`` resolves differently on different machines).
    """

    experiment_id: str
    kind: Kind
    method: str
    subset: tuple[str, ...]
    aux: bool
    seed: int
    data_seed: int
    train: Mapping[str, Any]
    options: Mapping[str, Any] | None = None
    # transfer runs train for a fixed number of epochs: no validation labels at all
    validation_labels: str = field(default="none")
    # one identity for both tasks; hashed only when not "classification", so the run ids of
    # classification stores written before generation existed stay valid
    task: str = field(default="classification")

    def __post_init__(self) -> None:
        if self.kind not in ("ceiling", "transfer", "dpo"):
            raise ValueError(f"kind must be ceiling, transfer or dpo, not {self.kind!r}")
        if (self.kind == "ceiling") != (self.options is None):
            raise ValueError("ceilings have no options; transfer runs need them")
        object.__setattr__(self, "subset", tuple(self.subset))

    @property
    def k(self) -> int:
        return len(self.subset)

    def to_dict(self) -> dict[str, Any]:
        """The identity as plain JSON data (what is hashed)."""
        task = {} if self.task == "classification" else {"task": self.task}
        return plain({**task, "experiment_id": self.experiment_id, "kind": self.kind,
                       "method": self.method, "subset": list(self.subset), "k": self.k,
                       "aux": self.aux, "seed": self.seed, "data_seed": self.data_seed,
                       "train": dict(self.train),
                       "options": None if self.options is None else dict(self.options),
                       "validation_labels": self.validation_labels})

    @property
    def run_id(self) -> str:
        return config_hash(self.to_dict())

    @property
    def train_setting(self) -> str:
        """Hash of the training setting alone: a transfer run's PGR uses the ceiling with the
        same train_setting, data_seed and seed."""
        return config_hash(self.train)

    @property
    def setting(self) -> str:
        """Hash of everything except what runs are pooled over (subset, seeds) and what groups
        are drawn by (method, aux, K): runs pool only within one setting."""
        return config_hash({"train": dict(self.train), "options": (
            None if self.options is None else dict(self.options))})

    def stored_config(self, **extra: Any) -> dict[str, Any]:
        """``config.json``: the identity plus derived read-outs (e.g. the resolved λ) that the
        identity determines and so must not enter the hash, and the method's revision (a
        bug fix's bump makes the stored result stale without changing the run id)."""
        return {"run_id": self.run_id, **self.to_dict(),
                "revision": catalog.revision(self.task, self.method, self.options), **extra}

    def index_row(self) -> dict[str, Any]:
        """The run-index columns of this run (metrics are appended by the store)."""
        opts = self.options or {}
        row: dict[str, Any] = {"run_id": self.run_id, "task": self.task, "kind": self.kind,
                               "method": self.method,
                               "k": self.k, "subset": "+".join(self.subset), "aux": self.aux,
                               "seed": self.seed, "data_seed": self.data_seed,
                               "setting": self.setting, "train_setting": self.train_setting,
                               "precision": str(self.train.get("precision", ""))}
        flat = {**opts, **{f"dpo_{k}": v for k, v in (opts.get("dpo") or {}).items()}}
        for name in OPTION_COLUMNS:
            v = flat.get(name)
            row[f"opt_{name}"] = None if v is None else (
                v if isinstance(v, (str, int, float, bool)) and name not in MIXED_OPTIONS
                else json.dumps(plain(v)) if not isinstance(v, (str, int, float, bool))
                else str(v))
        return row

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunSpec:
        """Rebuild from a stored ``config.json`` (extra keys such as ``lambda`` are ignored)."""
        return cls(experiment_id=d["experiment_id"], kind=d["kind"], method=d["method"],
                   subset=tuple(d.get("subset") or ()), aux=bool(d["aux"]), seed=int(d["seed"]),
                   data_seed=int(d["data_seed"]), train=dict(d["train"]),
                   options=None if d.get("options") is None else dict(d["options"]),
                   validation_labels=d.get("validation_labels", "none"),
                   task=d.get("task", "classification"))


def setting_labels(settings: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Setting hash → a short human label naming only what differs between the settings
    (e.g. ``"kl_scale=0.1 · evidence=relu"``); one setting → ``"as configured"``."""
    flat = {s: _flatten(v) for s, v in settings.items()}
    if len(flat) <= 1:
        return {s: "as configured" for s in flat}
    keys = sorted({k for f in flat.values() for k in f})
    varying = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True)
                                       for f in flat.values()}) > 1]
    out = {}
    for s, f in flat.items():
        parts = [option_label(k, f.get(k)) for k in varying]
        out[s] = " · ".join(parts) or s
    return out


def option_label(key: str, value: Any) -> str:
    """``"options.target_mode", "frozen"`` → ``"target_mode=frozen"``."""
    return f"{key.rsplit('.', 1)[-1]}={_short(value)}"


def option_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The flattened option keys (``options.target_mode``, ``train.lr`` …) whose values differ
    between settings ``a`` and ``b``, each with (a's value, b's value)."""
    fa, fb = _flatten(a), _flatten(b)
    return {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb))
            if json.dumps(fa.get(k), sort_keys=True) != json.dumps(fb.get(k), sort_keys=True)}


def flat_options(d: Mapping[str, Any]) -> dict[str, Any]:
    """Nested options → ``{"options.kl_scale": 1.0, …}`` (how settings are compared)."""
    return _flatten(d)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_short(x) for x in v) + "]"
    return str(v)
