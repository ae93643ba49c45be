"""The plumbing every frozen config dataclass of the project shares (``EnvConfig``, ``PruningConfig``).

Numpy scalars given by a sweep are stored as the Python numbers they hold; mappings are stored as read-only
views that still pickle (process pools, vector envs) and read back as plain dicts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from sparsity_gym.core.checks import as_python


def python_value(value: Any) -> Any:
    """A numpy scalar as its Python value; float16/float32 by their shortest decimal (``np.float32(0.1)`` -> 0.1)."""
    if isinstance(value, np.floating) and value.dtype.itemsize < 8:
        return float(str(value))
    return as_python(value)


def plain(value: Any) -> Any:
    """Read-only mappings as dicts, recursively; anything else unchanged."""
    if isinstance(value, MappingProxyType):
        return {k: plain(v) for k, v in value.items()}
    return value


class FrozenConfig:
    """Base of a frozen dataclass config: normalised values, pickling of its read-only mappings, ``to_dict``."""

    def normalise(self, mappings: Sequence[str]) -> None:
        """Every field as a Python value, the ``mappings`` fields as read-only views (call in ``__post_init__``)."""
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            object.__setattr__(self, f.name, python_value(getattr(self, f.name)))
        for name in mappings:
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def __getstate__(self) -> dict[str, Any]:
        """Plain dicts instead of the read-only mapping views, so a config pickles."""
        return {k: dict(v) if isinstance(v, MappingProxyType) else v for k, v in self.__dict__.items()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, MappingProxyType(value) if isinstance(value, dict) else value)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain values (read-only mappings as dicts): keyword arguments that rebuild the config."""
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
