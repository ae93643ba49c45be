"""Building a :class:`~sparsity_gym.pruning.pruner.Pruner`: its config from a policy and keywords, its masks.

Kept apart from the driver's stepping so each reads top to bottom.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from sparsity_gym.core.checks import check_fields
from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.models.graph import PRUNABLE
from sparsity_gym.models.layers import LayerInfo
from sparsity_gym.pruning.config import PruningConfig, pruning_field_names
from sparsity_gym.pruning.policies import declared_reads, default_interval, families_read, merge_settings
from sparsity_gym.pruning.statistics import rule_statistics


def resolve_config(
    policy: Any, explicit: Mapping[str, Any], settings: Mapping[str, Any], steps_per_epoch: int | None
) -> PruningConfig:
    """The run's config: the policy's settings, the user's keywords, derived observations and interval."""
    allowed = [f for f in pruning_field_names() if f not in explicit]
    check_fields("Pruner", settings, allowed)
    given = {**{k: v for k, v in explicit.items() if v is not None}, **settings}
    if "total_steps" not in given:
        raise ValueError("total_steps=None is not allowed; expected the optimizer steps of the run (an integer >= 1)")
    merged = merge_settings(policy, given, steps_per_epoch) if policy is not None else dict(given)
    if "observations" not in merged:
        merged["observations"] = () if policy is None else families_read(declared_reads(policy))
    if "decision_interval" not in merged:
        total = merged["total_steps"]
        merged["decision_interval"] = default_interval(total) if isinstance(total, int) else total
    return PruningConfig(**merged)


def input_shape_of(
    model: nn.Module, input_shape: Sequence[int] | None, example: torch.Tensor | None
) -> tuple[int, ...]:
    """One sample's shape: given, from ``example``, or ``(in_features,)`` of a first Linear layer."""
    if input_shape is not None:
        return tuple(int(s) for s in input_shape)
    if example is not None:
        return tuple(int(s) for s in example.shape[1:])
    first = next((m for m in model.modules() if isinstance(m, PRUNABLE)), None)
    if isinstance(first, nn.Linear):
        return (int(first.in_features),)
    kind = "no prunable layer" if first is None else f"a first prunable layer {type(first).__name__}"
    raise ValueError(
        f"input_shape=None is not allowed for a network with {kind}; expected input_shape= one sample's shape "
        "(e.g. (3, 32, 32)) or example_input= a batch"
    )


def build_masks(
    infos: Sequence[LayerInfo],
    cfg: PruningConfig,
    generator: torch.Generator,
    initial_active: Mapping[str, torch.Tensor] | None,
) -> MaskedNetwork:
    """The masks of every prunable layer (not yet attached to an optimizer); ``initial_active`` units only at first."""
    masks = MaskedNetwork(
        infos,
        granularity=cfg.granularity,
        selector=cfg.selector,
        regrowth=cfg.regrowth,
        exchange_fraction=cfg.exchange_fraction,
        generator=generator,
        feedback_updates_pruned=cfg.feedback_updates_pruned,
    )
    if initial_active:
        unknown = sorted(set(initial_active) - {m.info.name for m in masks.layers})
        if unknown:
            raise ValueError(f"initial_active names layers {unknown!r}; expected controlled layers of the network")
        everything = torch.ones(0, dtype=torch.bool)
        masks.set_keep([initial_active.get(m.info.name, everything.new_ones(m.num_units)) for m in masks.layers])
    return masks


def output_units(layers: Sequence[Any]) -> int:
    """Output units of the network's output layer (the last prunable layer found)."""
    return int(layers[-1].info.fan_out)


def check_validation_source(config: PruningConfig, policy: Any, validates: bool) -> None:
    """A driver that decides itself needs ``val_fn`` when the equilibrium statistic is collected (NEq)."""
    needed = (*config.observations, *rule_statistics(config))
    if policy is not None and not validates and "equilibrium" in needed:
        raise ValueError(
            "val_fn=None is not allowed here: the equilibrium statistic (NEq) is measured on a validation pass "
            "at every decision; expected a callable returning the validation accuracy"
        )


def validation_result(result: Any) -> tuple[float, float | None]:
    """``val_fn``'s result as ``(accuracy, loss or None)``; ``ValueError`` naming ``val_fn`` for anything else."""
    if isinstance(result, (tuple, list)) and len(result) == 2:
        return float(result[0]), float(result[1])
    if isinstance(result, (int, float, np.number)) or (isinstance(result, torch.Tensor) and result.numel() == 1):
        return float(result), None
    raise ValueError(f"val_fn returned {type(result).__name__}; expected the validation accuracy or (accuracy, loss)")
