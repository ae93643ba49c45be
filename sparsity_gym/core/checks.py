"""Small shared validation helpers: every bad value becomes a ``ValueError`` naming field, value and allowed."""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Collection, Iterable
from typing import Any

import numpy as np
import torch


class UnknownFieldError(TypeError, ValueError):
    """An unknown keyword (a config field that does not exist).

    A ``TypeError``, as Python raises for a bad keyword, and a ``ValueError``, as every other bad setting of the
    project.
    """


def check_fields(owner: str, given: Iterable[str], allowed: Collection[str]) -> None:
    """Raise :class:`UnknownFieldError` for the first name in ``given`` not in ``allowed``, with the close match."""
    for name in given:
        if name not in allowed:
            close = difflib.get_close_matches(name, list(allowed), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownFieldError(f"{owner} has no field {name!r}{hint} (fields: {', '.join(sorted(allowed))})")


def as_python(value: Any) -> Any:
    """A numpy scalar (``np.float32(0.1)``, ``np.int64(10)``, ``np.bool_``, ``np.str_``) as its Python value.

    Anything else is returned unchanged.
    """
    return value.item() if isinstance(value, np.generic) else value


def check_choice(field: str, value: Any, allowed: Collection[Any]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        choices = ", ".join(repr(a) for a in sorted(allowed, key=str))
        raise ValueError(f"{field}={value!r} is not allowed; expected one of: {choices}")


def check_number(
    field: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    integer: bool = False,
) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number (an int if ``integer``) inside the bounds.

    Numpy scalars count as the numbers they hold (``np.int64(10)`` is an integer, ``np.float32(0.1)`` a number).
    """
    kind = "an integer" if integer else "a finite number"
    ok_type = isinstance(value, numbers.Integral) if integer else isinstance(value, numbers.Real)
    if isinstance(value, (bool, np.bool_)) or not ok_type or (not integer and not math.isfinite(value)):
        raise ValueError(
            f"{field}={value!r} is not allowed; expected {kind}{_interval(low, high, low_inclusive, high_inclusive)}"
        )
    below = low is not None and (value < low if low_inclusive else value <= low)
    above = high is not None and (value > high if high_inclusive else value >= high)
    if below or above:
        raise ValueError(
            f"{field}={value!r} is not allowed; expected {kind}{_interval(low, high, low_inclusive, high_inclusive)}"
        )


def _interval(low: float | None, high: float | None, low_inc: bool, high_inc: bool) -> str:
    if low is None and high is None:
        return ""
    left = ("[" if low_inc else "(") + ("-inf" if low is None else f"{low:g}")
    right = ("inf" if high is None else f"{high:g}") + ("]" if high_inc else ")")
    return f" in {left}, {right}"


def unit_mask(active: torch.Tensor | None, size: int, device: torch.device, field: str = "active") -> torch.Tensor:
    """``active`` as a bool mask of ``size`` units on ``device`` (all active when ``None``), shape-checked."""
    if active is None:
        return torch.ones(size, dtype=torch.bool, device=device)
    mask = active.to(device=device, dtype=torch.bool)
    if mask.shape != (size,):
        raise ValueError(f"{field} has shape {tuple(mask.shape)}; expected ({size},)")
    return mask
