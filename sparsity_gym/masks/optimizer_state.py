"""Optimizer state of units that change: one place that zeroes it (regrown units, thawed rows)."""

from __future__ import annotations

from collections.abc import Collection

import torch


def zero_optimizer_state(
    optimizer: torch.optim.Optimizer | None,
    param: torch.Tensor,
    where: torch.Tensor,
    keys: Collection[str] | None = None,
) -> None:
    """Zero every per-element optimizer state tensor of ``param``'s shape where ``where`` is True.

    Args:
        optimizer: Any optimizer (``None``: nothing to do); its ``state[param]`` entries of ``param``'s shape
            (``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``, ...) are modified in place.
            Per-tensor entries such as Adam's ``step`` are left alone; no state yet: nothing happens.
        param: The parameter.
        where: A bool mask broadcastable to ``param`` (rows: shape ``(n, 1, ...)``; columns: ``(1, m, ...)``).
        keys: Only zero these state entries (default: every per-element entry).

    """
    if optimizer is None:
        return
    state = optimizer.state.get(param)
    if not state:
        return
    where = where.to(param.device).expand_as(param)
    for key, value in state.items():
        if keys is not None and key not in keys:
            continue
        if torch.is_tensor(value) and value.dim() > 0 and value.shape == param.shape:
            value.masked_fill_(where, 0)
