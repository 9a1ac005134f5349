"""Reading experiment configs from YAML/TOML files: one experiment or a suite of them, with
unknown keys and bad values refused in one line each."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import Any

import yaml

from w2s_core.errors import W2SError
from w2s_core.experiments.config import GEN_METHOD_NAMES, ExperimentConfig
from w2s_core.experiments.gen_config import GEN_TEACHERS
from w2s_core.experiments.runspec import config_hash


def from_dict(cls: type, raw: dict[str, Any], where: str = "config", base: Any = None) -> Any:
    """Build a (nested) config dataclass; unknown keys are an error naming the allowed ones.

    A nested mapping overrides only the keys it gives: the rest keep the *field's* default, not
    the nested class's (``generation.scratch.train: {epochs: 12}`` keeps the scratch teachers'
    lr 2e-3 and max_length 768, where ``LMTrainConfig()`` has 1e-4 and 256). ``base``: the
    instance whose values the keys override (None: the class defaults)."""
    if not isinstance(raw, dict):
        raise W2SError(f"{where} must be a mapping, got {type(raw).__name__}",
                       "see configs/*.yaml for the format")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise W2SError(f"unknown key(s) in {where}: {', '.join(unknown)}",
                       f"allowed: {', '.join(sorted(fields))}")
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            inner = getattr(base, key) if base is not None else _field_default(fields[key])
            kwargs[key] = from_dict(hint, value or {}, f"{where}.{key}",  # type: ignore[arg-type]
                                    inner)
        elif isinstance(value, list):
            kwargs[key] = tuple(value)
        elif hint is float and isinstance(value, int) and not isinstance(value, bool):
            kwargs[key] = float(value)  # YAML `epochs: 2` and `2.0`: one config, one id
        else:
            kwargs[key] = value
    try:
        return cls(**kwargs) if base is None else dataclasses.replace(base, **kwargs)
    except TypeError as e:
        raise W2SError(f"bad value in {where}: {e}",
                       "check the config against the README") from None


def _field_default(f: dataclasses.Field) -> Any:
    """A dataclass field's default value (None when it has none)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read one ExperimentConfig from YAML (.yaml/.yml) or TOML (.toml)."""
    cfgs = load_configs(path)
    if len(cfgs) != 1:
        raise W2SError(f"{Path(path).name} holds {len(cfgs)} experiments, not one",
                       "run it with `w2s sweep --config`, or read it with load_configs")
    return cfgs[0]


def load_configs(path: str | Path) -> list[ExperimentConfig]:
    """Read a config file: one experiment, or a suite — an ``experiments:`` list whose items
    override the rest of the file (deep-merged, e.g. only ``name`` and ``data.name``), so one
    protocol runs on several data sets without repeating it."""
    raw = _read_raw(path)
    name = Path(path).name
    suite = raw.pop("experiments", None)
    if suite is None:
        return [from_dict(ExperimentConfig, _generation_defaults(raw), name).validate()]
    if not isinstance(suite, list) or not suite or not all(isinstance(x, dict) for x in suite):
        raise W2SError(f"{name}: `experiments` must be a non-empty list of mappings",
                       "write one `- {name: ..., data: {...}}` item per experiment")
    cfgs = [from_dict(ExperimentConfig, _generation_defaults(_deep_merge(raw, item)),
                      f"{name} experiments[{i}]")
            .validate() for i, item in enumerate(suite)]
    ids = [config_hash(c.to_dict()) for c in cfgs]
    if len(set(ids)) != len(ids):
        raise W2SError(f"{name}: two items of `experiments` are identical",
                       "give each item its own name, data or options")
    return cfgs


def _generation_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """A generation config gets the generation defaults only for keys it does NOT give, so an
    explicit classification data set or student is validated (and refused), never replaced."""
    if raw.get("task") != "generation":
        return raw
    out = {"teachers": list(GEN_TEACHERS), "student": "smollm2-135m",
           "methods": list(GEN_METHOD_NAMES), **raw}
    out["data"] = {"name": "atis-slots", **(raw.get("data") or {})}
    from w2s_core.catalog import datasets

    given = {d.name: d.task for d in datasets()}.get(out["data"]["name"])
    if given == "classification":  # caught here: the dataclass cannot tell given from default
        raise W2SError(f"'{out['data']['name']}' is a classification data set",
                       "use atis-slots, slurp or slots-file with task: generation")
    return out


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(
            out.get(k), dict) else v
    return out


def _read_raw(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise W2SError(f"config file {p} not found", "check the path")
    text = p.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text) if p.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise W2SError(f"cannot parse {p}: {first}", "fix the YAML/TOML syntax") from None
    if raw is not None and not isinstance(raw, dict):
        raise W2SError(f"{p.name} must be a mapping of settings, got {type(raw).__name__}",
                       "see configs/*.yaml for the format")
    return dict(raw or {})
