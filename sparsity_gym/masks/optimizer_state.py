"""Optimizer state of units that change: one place that zeroes it (regrown units, thawed rows)."""

from __future__ import annotations

import torch


def zero_optimizer_state(optimizer: torch.optim.Optimizer | None, param: torch.Tensor, where: torch.Tensor) -> None:
    """Zero every per-parameter optimizer state tensor of ``param``'s shape where ``where`` is True."""
    if optimizer is None:
        return
    state = optimizer.state.get(param)
    if not state:
        return
    where = where.expand_as(param)
    for value in state.values():
        if torch.is_tensor(value) and value.shape == param.shape:
            value.masked_fill_(where, 0)
