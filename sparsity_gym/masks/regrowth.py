"""Regrowth: *how* units return when a layer grows, one spec per rule (CRITERIA §2, §5).

A :class:`Regrowth` is registered once with its function and the statistics it reads. ``feedback`` (DPF,
CRITERIA §1) has no function: :class:`~sparsity_gym.masks.masked_network.MaskedNetwork` re-selects among all
units itself, and units return with their dense weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from sparsity_gym.core.registry import Registry
from sparsity_gym.criteria.dyno import north_select
from sparsity_gym.masks.layer_mask import LayerMask
from sparsity_gym.masks.selectors import SelectionContext

FEEDBACK = "feedback"  # the DPF regrowth: handled by MaskedNetwork itself (re-selection among all units)


@dataclass(frozen=True)
class Growth:
    """What a regrowth rule may return instead of bare indices: the units and their chosen fan-in rows.

    ``fan_in[i]`` (flattened row) initialises unit ``indices[i]`` (neuron granularity; NORTH-Select).
    """

    indices: torch.Tensor
    fan_in: torch.Tensor


RegrowthFn = Callable[[LayerMask, torch.Tensor, int, SelectionContext], "torch.Tensor | Growth"]


@dataclass(frozen=True)
class Regrowth:
    """One regrowth rule and the observers it reads from ``ctx.stats``.

    ``grow(layer, candidates, n, ctx)`` returns flat unit indices or a :class:`Growth`; it is ``None`` for
    ``feedback``, which :class:`MaskedNetwork` handles itself.
    """

    name: str
    grow: RegrowthFn | None
    statistics: tuple[str, ...] = ()


REGROWTH: Registry[Regrowth] = Registry("regrowth")


def register_regrowth(spec: Regrowth) -> Regrowth:
    """Register ``spec`` under ``spec.name``."""
    REGROWTH.add(spec.name, spec)
    return spec


def available_regrowth() -> tuple[str, ...]:
    """Names accepted as ``regrowth=``."""
    return REGROWTH.names()


def random_regrowth(layer: LayerMask, candidates: torch.Tensor, n: int, ctx: SelectionContext) -> torch.Tensor:
    """``n`` units drawn uniformly without replacement among ``candidates`` (a flat bool tensor)."""
    pool = torch.nonzero(candidates.cpu().flatten()).flatten()
    order = torch.randperm(len(pool), generator=ctx.generator)[:n]
    return pool[order].to(layer.device)


def no_regrowth(layer: LayerMask, candidates: torch.Tensor, n: int, ctx: SelectionContext) -> torch.Tensor:
    """Never regrow: a layer's density can only fall."""
    return torch.empty(0, dtype=torch.long, device=layer.device)


def north_regrowth(layer: LayerMask, candidates: torch.Tensor, n: int, ctx: SelectionContext) -> Growth | torch.Tensor:
    """NORTH-Select growth (CRITERIA §2): the ``n`` lowest-index free slots get the best of ``100·n`` fan-ins.

    Candidates are drawn Kaiming-uniform (bound 1/sqrt(fan_in)) from the env's generator and scored by the
    norm of their ReLU activation's residual outside the span of the active neurons' activations on the
    layer's buffered inputs (``ctx.stats["layer_inputs"]``); bias, fan-out and optimizer state start at 0
    (done by :class:`MaskedNetwork`). Neuron granularity; without buffered inputs it falls back to random
    fan-ins. See :func:`sparsity_gym.criteria.dyno.north_select`.
    """
    slots = torch.nonzero(candidates.flatten()).flatten()[:n].to(layer.device)
    inputs = ctx.stats.get("layer_inputs", {}).get(layer.info.name)
    if inputs is None or layer.granularity != "neuron":
        return slots
    module = layer.info.module
    active = layer.unit_mask.flatten()
    fan_in, _ = north_select(
        inputs,
        module.weight.detach()[active].flatten(1),
        None if module.bias is None else module.bias.detach()[active],
        len(slots),
        torch.relu,
        ctx.generator,
    )
    return Growth(slots, fan_in)


register_regrowth(Regrowth("random", random_regrowth))
register_regrowth(Regrowth("none", no_regrowth))
register_regrowth(Regrowth("north", north_regrowth, statistics=("layer_inputs",)))
register_regrowth(Regrowth(FEEDBACK, None))
