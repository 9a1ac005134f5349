"""One small registry type shared by every pluggable axis (dataset, model, method, metric)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

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
