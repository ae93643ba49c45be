"""Building a :class:`~sparsity_gym.pruning.pruner.Pruner`: its config from a policy and keywords, its masks.

Kept apart from the driver's stepping so each reads top to bottom.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from sparsity_gym.core.checks import check_fields, check_number
from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.models.graph import PRUNABLE
from sparsity_gym.models.layers import LayerCache, LayerInfo, find_prunable_layers
from sparsity_gym.pruning.measurement import rule_statistics
from sparsity_gym.pruning.policy_binding import declared_reads, default_interval, families_read, merge_settings
from sparsity_gym.pruning.pruning_config import PruningConfig, pruning_field_names


def resolve_config(
    policy: Any, explicit: Mapping[str, Any], settings: Mapping[str, Any], steps_per_epoch: int | None
) -> PruningConfig:
    """The run's config: the policy's settings, the user's keywords, derived observations and interval."""
    allowed = [f for f in pruning_field_names() if f not in explicit]
    check_fields("Pruner", settings, allowed)
    given = {**{k: v for k, v in explicit.items() if v is not None}, **settings}
    if "total_steps" not in given:
        raise ValueError("total_steps=None is not allowed; expected the optimizer steps of the run (an integer >= 1)")
    check_number("total_steps", given["total_steps"], low=1, integer=True)
    merged = merge_settings(policy, given, steps_per_epoch) if policy is not None else dict(given)
    _budget_of_allocation(merged, "budget" in given)
    if "observations" not in merged:
        merged["observations"] = () if policy is None else families_read(declared_reads(policy))
    if "decision_interval" not in merged:
        total = merged["total_steps"]
        merged["decision_interval"] = default_interval(total) if isinstance(total, int) else total
    return PruningConfig(**merged)


def _budget_of_allocation(merged: dict[str, Any], given: bool) -> None:
    """An allocation rule (``+erk``) spreads one global budget over the layers: ``budget`` defaults to ``global``.

    Under ``budget="layer"`` the last decision would replace the rule's densities by the uniform ones of the
    per-layer budget (weights regrown at zero, the rule's shape lost at the end): refused when asked for.
    """
    allocation = merged.get("allocation", "policy")
    if allocation == "policy":
        return
    if "budget" not in merged:
        merged["budget"] = "global"
    elif merged["budget"] == "layer" and given:
        raise ValueError(
            f"budget='layer' is not allowed with allocation={allocation!r}: the rule spreads one budget over the "
            "layers, and a per-layer budget undoes it at the last decision; expected budget='global' (the default "
            "with an allocation rule) or 'flops'"
        )


def input_shapes_of(
    model: nn.Module, input_shape: Sequence[int] | None, example: torch.Tensor | None
) -> list[tuple[int, ...]]:
    """One sample's shape: given, or from ``example``; else the candidates ``(in_features,)`` of the Linear layers.

    The candidates come in declaration order, each once (a model may declare its head before its body); the
    first on which the probe forward pass runs is the input shape.
    """
    if input_shape is not None:
        return [tuple(int(s) for s in input_shape)]
    if example is not None:
        return [tuple(int(s) for s in example.shape[1:])]
    first = next((m for m in model.modules() if isinstance(m, PRUNABLE)), None)
    if isinstance(first, nn.Linear):
        widths = [int(m.in_features) for m in model.modules() if isinstance(m, nn.Linear)]
        return [(w,) for w in dict.fromkeys(widths)]
    kind = "no prunable layer" if first is None else f"a first prunable layer {type(first).__name__}"
    raise ValueError(
        f"input_shape=None is not allowed for a network with {kind}; expected input_shape= one sample's shape "
        "(e.g. (3, 32, 32)) or example_input= a batch"
    )


_HOLDERS: weakref.WeakKeyDictionary[nn.Module, weakref.ref[Any]] = weakref.WeakKeyDictionary()
"""The live Pruner holding each prunable layer (one Pruner per layer: two would fight over its masks)."""


def claim_layers(pruner: Any, infos: Sequence[LayerInfo]) -> None:
    """Record ``pruner`` as the holder of ``infos``' layers; ``ValueError`` if a live Pruner holds one already."""
    for info in infos:
        holder = _HOLDERS.get(info.module)
        other = holder() if holder is not None else None
        if other is not None and other is not pruner and not other._removed:
            raise ValueError(
                f"model= is not allowed: its layer {info.name!r} is already pruned by another Pruner (two Pruners "
                "would each re-apply their own masks); expected pruner.remove() on the first one before building "
                "another"
            )
    for info in infos:
        _HOLDERS[info.module] = weakref.ref(pruner)


def release_layers(pruner: Any) -> None:
    """Forget ``pruner`` as the holder of its layers (after :meth:`Pruner.remove`)."""
    for module, holder in list(_HOLDERS.items()):
        if holder() is pruner:
            del _HOLDERS[module]


def check_optimizer(optimizer: torch.optim.Optimizer, infos: Sequence[LayerInfo]) -> None:
    """``ValueError`` when ``optimizer`` updates none of the prunable layers' weights (another model's optimizer)."""
    updated = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if not any(id(info.module.weight) in updated for info in infos):
        names = ", ".join(info.name for info in infos[:3]) + (", ..." if len(infos) > 3 else "")
        raise ValueError(
            f"optimizer={type(optimizer).__name__} is not allowed: it updates none of the model's prunable weights "
            f"({names}); expected the optimizer over this model's parameters (torch.optim.SGD(model.parameters()))"
        )


def discover_layers(
    model: nn.Module, shapes: Sequence[tuple[int, ...]], example: torch.Tensor | None, cache: LayerCache | None
) -> list[LayerInfo]:
    """The prunable layers, probed with the first of ``shapes`` the model runs on (the first one's error if none)."""
    first: ValueError | None = None
    for shape in shapes:
        try:
            return (
                cache(model, shape, example)
                if cache is not None
                else find_prunable_layers(model, shape, example=example)
            )
        except ValueError as err:
            first = first or err
    assert first is not None
    raise first


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
    if not masks.layers:
        raise ValueError(
            f"granularity={cfg.granularity!r} is not allowed for this network: every layer is kept whole (the output "
            "layer, layers feeding a residual sum, layers not run as modules); expected granularity='weight'"
        )
    if initial_active:
        unknown = sorted(set(initial_active) - {m.info.name for m in masks.layers})
        if unknown:
            raise ValueError(f"initial_active names layers {unknown!r}; expected controlled layers of the network")
        everything = torch.ones(0, dtype=torch.bool)
        masks.set_keep([initial_active.get(m.info.name, everything.new_ones(m.num_units)) for m in masks.layers])
    return masks


def output_units(layers: Sequence[Any]) -> int:
    """Output units of the network's output layer (the last output layer of the data flow)."""
    outputs = [m for m in layers if m.info.is_output] or list(layers[-1:])
    return int(outputs[-1].info.fan_out)


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
