"""Handcrafted density schedules: pure functions of training progress (CRITERIA §5).

With progress p in [0, 1] and pruning between ``p_start`` and ``p_end``, ``q = clip((p - p_start) /
(p_end - p_start), 0, 1)`` is the progress of the pruning window and ``d_T`` the target density:

* polynomial (AGP, Zhu & Gupta): ``d(p) = d_T + (1 - d_T) * (1 - q)**k`` with k = 1 linear, 2 quadratic,
  3 cubic;
* cosine: ``d(p) = d_T + (1 - d_T) * (1 + cos(pi * q)) / 2``;
* constant: ``d(p) = d_T``.

Every schedule starts at 1 (dense; constant excepted) at or before ``p_start`` and equals ``d_T`` from
``p_end`` on. The defaults prune over the first 75% of training and fine-tune at the target for the rest.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from sparsity_gym.core.checks import check_number

Schedule = Callable[[float, float], float]
DEFAULT_P_START = 0.0
DEFAULT_P_END = 0.75


def window_progress(p: float, p_start: float = DEFAULT_P_START, p_end: float = DEFAULT_P_END) -> float:
    """Progress q in [0, 1] of the pruning window ``[p_start, p_end]`` at training progress ``p``."""
    check_number("p_start", p_start, low=0.0, high=1.0)
    check_number("p_end", p_end, low=p_start, high=1.0, low_inclusive=False)
    return float(np.clip((p - p_start) / (p_end - p_start), 0.0, 1.0))


def polynomial(
    p: float, target: float, power: float = 3, p_start: float = DEFAULT_P_START, p_end: float = DEFAULT_P_END
) -> float:
    """AGP: ``d_T + (1 - d_T) * (1 - q)**power`` (any positive real ``power``; 1, 2, 3 name the shapes below)."""
    q = window_progress(p, p_start, p_end)
    return target + (1.0 - target) * (1.0 - q) ** power


def linear(p: float, target: float, **window: float) -> float:
    """Polynomial schedule of power 1."""
    return polynomial(p, target, 1, **window)


def quadratic(p: float, target: float, **window: float) -> float:
    """Polynomial schedule of power 2."""
    return polynomial(p, target, 2, **window)


def cubic(p: float, target: float, **window: float) -> float:
    """Polynomial schedule of power 3 (AGP's default)."""
    return polynomial(p, target, 3, **window)


def cosine(p: float, target: float, p_start: float = DEFAULT_P_START, p_end: float = DEFAULT_P_END) -> float:
    """``d_T + (1 - d_T) * (1 + cos(pi * q)) / 2``."""
    q = window_progress(p, p_start, p_end)
    return target + (1.0 - target) * (1.0 + math.cos(math.pi * q)) / 2.0


def constant(p: float, target: float, **window: float) -> float:
    """The target density from the first decision on."""
    return target


SCHEDULES: dict[str, Schedule] = {
    "linear": linear,
    "quadratic": quadratic,
    "cubic": cubic,
    "cosine": cosine,
    "constant": constant,
}
