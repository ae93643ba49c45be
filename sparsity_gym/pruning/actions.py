"""The action map: an action in [-1, 1] per layer onto a density or a threshold range, and back.

``linear`` (affine): ``value = lo + (a + 1) / 2 * (hi - lo)``. ``log`` (log-affine, densities only): ``log value``
is affine in ``a``, so equal action steps are equal density *ratios*: at a target density of 0.01 the affine map
over [0.02, 1] spends 0.6% of the action range below 0.025, the log map over [0.001, 1] a third of it below
0.01, which is the resolution (and the exploration noise) low targets need.
"""

from __future__ import annotations

import numpy as np

ACTION_SCALES = ("linear", "log")


def _forward(value: np.ndarray, lo: float, hi: float, scale: str) -> tuple[np.ndarray, float, float]:
    if scale == "log":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(np.maximum(value, 0.0)), float(np.log(lo)), float(np.log(hi))
    return value, lo, hi


def to_action(value: float | np.ndarray, lo: float, hi: float, scale: str = "linear") -> np.ndarray:
    """The action in [-1, 1] that asks for ``value`` in ``[lo, hi]``: the inverse of the action map.

    Clipped to [-1, 1]; an empty range maps everything to +1. ``scale`` is ``linear`` or ``log``.
    """
    value, lo, hi = _forward(np.asarray(value, dtype=np.float64), lo, hi, scale)
    a = 2.0 * (value - lo) / (hi - lo) - 1.0 if hi > lo else np.ones_like(value)
    return np.clip(a, -1.0, 1.0).astype(np.float32)


def from_action(action: np.ndarray, lo: float, hi: float, scale: str = "linear") -> np.ndarray:
    """The map of actions clipped to [-1, 1] onto ``[lo, hi]``, affine or log-affine (NaN stays NaN)."""
    t = (np.clip(action, -1.0, 1.0) + 1.0) / 2.0
    if scale == "log":
        return np.exp(np.log(lo) + t * (np.log(hi) - np.log(lo)))
    return lo + t * (hi - lo)
