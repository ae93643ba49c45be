"""One small registry type behind every name-to-object table (datasets, networks, selectors, regrowth)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from sparsity_gym.core.checks import check_choice

T = TypeVar("T")


class Registry(Generic[T]):
    """Names mapped to objects, filled by a decorator; lookups of unknown names are a clear ``ValueError``.

    Args:
        field: The config field the names are given in (named in the error message).

    """

    def __init__(self, field: str) -> None:
        self.field = field
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator that registers its argument under ``name`` and returns it unchanged."""

        def decorator(item: T) -> T:
            self.add(name, item)
            return item

        return decorator

    def add(self, name: str, item: T) -> None:
        """Register ``item`` under ``name`` (a later registration of the same name replaces it)."""
        self._items[name] = item

    def names(self) -> tuple[str, ...]:
        """The registered names, sorted."""
        return tuple(sorted(self._items))

    def get(self, name: str) -> T:
        """The object registered under ``name``; ``ValueError`` naming the field and the allowed names."""
        check_choice(self.field, name, self._items)
        return self._items[name]

    def items(self) -> tuple[tuple[str, T], ...]:
        """``(name, object)`` pairs in registration order."""
        return tuple(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items
