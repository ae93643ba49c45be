"""Input checks and layouts shared by the statistics modules: float precision, units per row, positive counts."""

from __future__ import annotations

import torch
from torch import Tensor


def as_float(tensor: Tensor) -> Tensor:
    """Return ``tensor`` as a floating tensor of at least float32 precision (half/bfloat16 are upcast)."""
    if tensor.dtype in (torch.float32, torch.float64):
        return tensor
    return tensor.to(torch.float32)


def flatten_units(activations: Tensor, name: str = "activations") -> Tensor:
    """Flatten a layer's activations to ``(rows, units)``, channel-major for conv maps.

    ``(n, M)`` is returned as is; ``(n, C, h, w)`` becomes ``(n·h·w, C)`` via ``permute(0, 2, 3, 1)`` and a
    Conv1d's ``(n, C, L)`` becomes ``(n·L, C)`` via ``permute(0, 2, 1)``.
    """
    if activations.ndim == 2:
        return activations
    if activations.ndim in (3, 4):
        return activations.movedim(1, -1).reshape(-1, activations.shape[1])
    raise ValueError(f"{name} must have shape (n, M), (n, C, L) or (n, C, h, w); got {tuple(activations.shape)}")


def check_positive_int(value: int, name: str) -> int:
    """Raise ``ValueError`` unless ``value`` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value
