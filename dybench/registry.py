"""One registry per family of interchangeable things: RL algorithms, backends, dataset families,
metrics. Each entry is declared once, next to its code; everything else (CLI choices, config
validation, docs tables) asks the registry instead of repeating names.

Code outside the package adds entries the same way the package does, by calling `register` when
its module is imported; `dybench.plugins` imports such modules before a command runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from dybench.errors import DyBenchError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names to entries, in registration order; an unknown name is a one-line error listing the known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add `entry` under `name`; a second entry for one name is refused (two plugins fighting
        over a name would otherwise depend on import order)."""
        if not name or name != name.strip():
            raise ValueError(f"{self.kind} name {name!r} must be a non-empty word")
        if name in self._entries and self._entries[name] is not entry:
            raise DyBenchError(f"{self.kind} {name!r} is registered twice; give the second one another name")
        self._entries[name] = entry
        return entry

    def entry(self, name: str) -> Callable[[T], T]:
        """Decorator form of `register`, for entries that are functions or classes."""
        return lambda entry: self.register(name, entry)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise DyBenchError(f"unknown {self.kind} {name!r}; known: {', '.join(self._entries)}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(tuple(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
