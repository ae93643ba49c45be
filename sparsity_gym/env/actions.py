"""The affine action map: an action in [-1, 1] per layer onto a density or a threshold range, and back."""

from __future__ import annotations

import numpy as np


def to_action(value: float | np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The action in [-1, 1] that asks for ``value`` in ``[lo, hi]``: the inverse of the affine action map.

    Clipped to [-1, 1]; an empty range maps everything to +1.
    """
    value = np.asarray(value, dtype=np.float64)
    a = 2.0 * (value - lo) / (hi - lo) - 1.0 if hi > lo else np.ones_like(value)
    return np.clip(a, -1.0, 1.0).astype(np.float32)


def from_action(action: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The affine map of actions clipped to [-1, 1] onto ``[lo, hi]`` (NaN stays NaN)."""
    return lo + (np.clip(action, -1.0, 1.0) + 1.0) / 2.0 * (hi - lo)
