"""One small registry type shared by every pluggable axis (dataset, model, method, metric)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

from w2s_core.errors import W2SError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name → entry mapping whose lookup error lists the known names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} '{name}' registered twice")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise W2SError(
                f"unknown {self.kind} '{name}'", f"known: {', '.join(sorted(self._items))}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def names(self) -> list[str]:
        return list(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())


def from_catalog(kind: str, infos: Sequence[Any], functions: Mapping[str, Any], field: str,
                 make: Callable[..., T]) -> Registry[T]:
    """A registry built from the torch-free catalog's metadata (``infos``, dataclasses with a
    ``name``) plus each entry's function (``make(**info fields, field=functions[name])``), so
    a name and its description live in one place. A catalog entry without its function, or
    the reverse, is a programming error and fails at import."""
    names = {i.name for i in infos}
    if names != set(functions):
        raise RuntimeError(f"{kind} catalog and functions disagree: "
                           f"{sorted(names ^ set(functions))}")
    reg: Registry[T] = Registry(kind)
    for info in infos:
        fields = {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}
        reg.register(info.name, make(**fields, **{field: functions[info.name]}))
    return reg
