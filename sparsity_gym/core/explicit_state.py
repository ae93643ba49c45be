"""Checks and copies for explicit state: the ``state_dict()`` / ``load_state_dict()`` of every stateful part.

A state is a plain dict of tensors, numbers, strings, ``None``, lists and dicts (what
``torch.load(..., weights_only=True)`` reads back), in the style of ``torch.nn.Module.state_dict``. Tensors in a
state are copies (:func:`snapshot`): the state does not move as training goes on, and loading it twice gives two
independent parts. A state that does not fit the part it is loaded into is refused with a ``ValueError`` naming
the part, the field, what was given and what is expected (:func:`check_keys`, :func:`check_names`,
:func:`state_tensor`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

import torch

__all__ = [
    "Stateful",
    "check_keys",
    "check_known_names",
    "check_names",
    "load_together",
    "map_tensors",
    "optional_tensor",
    "snapshot",
    "state_int",
    "state_tensor",
]


class Stateful(Protocol):
    """A part with explicit state."""

    def state_dict(self) -> dict[str, Any]:
        """Its state as plain tensors, numbers and containers (copies)."""
        ...

    def load_state_dict(self, state: Any) -> None:
        """Restore a ``state_dict()``; ``ValueError`` (and nothing changed) for a state that does not fit."""
        ...


def load_together(parts: Sequence[tuple[Stateful, Any]]) -> None:
    """Load each ``(part, state)`` pair; if one is refused, every part gets its own state back and the error is raised.

    So a state made of several parts' states loads whole or not at all.
    """
    before = [part.state_dict() for part, _ in parts]
    try:
        for part, state in parts:
            part.load_state_dict(state)
    except ValueError:
        for (part, _), own in zip(parts, before, strict=True):
            part.load_state_dict(own)
        raise


def snapshot(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """A detached copy of ``tensor`` (``None`` stays ``None``)."""
    return None if tensor is None else tensor.detach().clone()


def check_keys(owner: str, state: Any, keys: Collection[str]) -> Mapping[str, Any]:
    """``state`` as a mapping with exactly ``keys``; otherwise ``ValueError`` naming the missing or extra key."""
    if not isinstance(state, Mapping):
        raise ValueError(f"{owner}: state is a {type(state).__name__}; expected a dict with keys {sorted(keys)}")
    missing = [k for k in keys if k not in state]
    extra = [k for k in state if k not in keys]
    if missing or extra:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        raise ValueError(f"{owner}: state has keys {sorted(map(str, state))} ({what}); expected {sorted(keys)}")
    return state


def check_names(owner: str, field: str, given: Any, expected: Sequence[str]) -> None:
    """``ValueError`` unless ``given`` is a dict whose keys are exactly the layer names ``expected``."""
    check_known_names(owner, field, given, expected)
    missing = [n for n in expected if n not in given]
    if missing:
        raise ValueError(f"{owner}: {field} lacks layer {missing[0]!r}; expected the layers {list(expected)}")


def check_known_names(owner: str, field: str, given: Any, expected: Sequence[str]) -> None:
    """``ValueError`` unless ``given`` is a dict whose keys are among the layer names ``expected``."""
    if not isinstance(given, Mapping):
        raise ValueError(f"{owner}: {field} is a {type(given).__name__}; expected a dict by layer name")
    unknown = [n for n in given if n not in expected]
    if unknown:
        raise ValueError(f"{owner}: {field} has layer {unknown[0]!r}, which is not one of its layers {list(expected)}")


def state_tensor(
    owner: str,
    field: str,
    value: Any,
    shape: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
    dim: int | None = None,
) -> torch.Tensor:
    """``value`` if it is a tensor of ``shape`` / ``dtype`` / ``dim`` (each when given); otherwise ``ValueError``."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{owner}: {field} is a {type(value).__name__}; expected a tensor")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise ValueError(f"{owner}: {field} has shape {tuple(value.shape)}; expected {tuple(shape)}")
    if dim is not None and value.dim() != dim:
        raise ValueError(f"{owner}: {field} has shape {tuple(value.shape)}; expected a {dim}-D tensor")
    if dtype is not None and value.dtype != dtype:
        raise ValueError(f"{owner}: {field} has dtype {value.dtype}; expected {dtype}")
    return value


def optional_tensor(
    owner: str, field: str, value: Any, present: bool, shape: Sequence[int] | None = None
) -> torch.Tensor | None:
    """A tensor of ``shape`` where ``present``, ``None`` otherwise; ``ValueError`` for the other one."""
    if not present:
        if value is not None:
            raise ValueError(f"{owner}: {field} is a {type(value).__name__}; expected None (this part holds none)")
        return None
    if value is None:
        raise ValueError(f"{owner}: {field} is None; expected a tensor (this part holds one)")
    return state_tensor(owner, field, value, shape)


def state_int(owner: str, field: str, value: Any, low: int = 0) -> int:
    """``value`` if it is an int ``>= low`` (not a bool); otherwise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{owner}: {field}={value!r}; expected an integer >= {low}")
    return value


def map_tensors(state: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``state`` with ``fn`` applied to every tensor inside its dicts, lists and tuples (e.g. a move to a device)."""
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, Mapping):
        return {k: map_tensors(v, fn) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(map_tensors(v, fn) for v in state)
    return state
