"""Budgets: what ``EnvConfig.budget`` counts, as a :class:`~sparsity_gym.pruning.projection.BudgetModel` of the masks.

* ``layer``: every controlled layer ends at ``target_density`` (no model needed).
* ``global``: active weights over every prunable layer, the :meth:`MaskedNetwork.global_density` definition.
* ``flops``: inference FLOPs, ``2 * P_l`` per active weight of layer l (:mod:`sparsity_gym.pruning.flops`), the
  ``info["flops"] / info["dense_flops"]`` fraction (AMC's constraint, He et al. 2018).

At neuron granularity a layer's active weights are its active rows times the input columns its controlled
predecessor leaves active (the column maps of :meth:`MaskedNetwork.successors`), so the model is bilinear.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sparsity_gym.masks.allocation import ALLOCATIONS
from sparsity_gym.masks.layer_mask import LayerMask
from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.pruning.projection import BudgetModel, bisect_level, project_counts


def budget_model(masks: MaskedNetwork, kind: str) -> BudgetModel:
    """The cost of the controlled layers' unit counts under budget ``kind`` (``global`` or ``flops``)."""
    if kind not in ("global", "flops"):
        raise ValueError(f"budget={kind!r} is not allowed here; expected one of: 'flops', 'global'")
    controlled = {id(m): i for i, m in enumerate(masks.layers)}
    units = np.array([m.num_units for m in masks.layers], dtype=np.int64)
    n = len(masks.all_layers)
    factor = np.array(
        [2.0 * m.info.output_positions if kind == "flops" else 1.0 for m in masks.all_layers], dtype=np.float64
    )
    if masks.granularity == "weight":
        index = np.array([controlled[id(m)] for m in masks.all_layers])
        return BudgetModel(units, factor, index, np.zeros(n), np.full(n, -1), np.zeros(n), np.ones(n))
    position = {id(m): j for j, m in enumerate(masks.all_layers)}
    row_layer = np.array([controlled.get(id(m), -1) for m in masks.all_layers])
    row_const = np.array([m.info.fan_out for m in masks.all_layers], dtype=np.float64)
    col_layer = np.full(n, -1)
    col_scale = np.zeros(n)
    col_const = np.array([m.info.fan_in for m in masks.all_layers], dtype=np.float64)
    for a in masks.layers:  # in update order: the last controlled predecessor sets a layer's input mask
        ones = torch.ones(a.num_units, dtype=torch.bool)
        for b, cols in masks.successors(a):
            j = position[id(b)]
            per_unit = int(cols(ones).sum()) / a.num_units
            kernel = b.info.fan_in / b.info.in_units
            col_layer[j] = controlled[id(a)]
            col_scale[j] = per_unit * kernel
    return BudgetModel(units, factor, row_layer, row_const, col_layer, col_scale, col_const)


def reallocate(layers: Sequence[LayerMask], densities: np.ndarray, rule: str, tilt: bool = False) -> np.ndarray:
    """The densities' parameter-weighted mean (the requested global density), shared out by allocation ``rule``.

    The weights are each layer's dense weights; ``rule`` is a name of
    :data:`sparsity_gym.masks.allocation.ALLOCATIONS`. With ``tilt`` the request's shape is kept as a
    multiplicative tilt of the rule (:func:`tilted`): a uniform request gives the rule's densities exactly.
    """
    weights = np.array([m.info.num_weights for m in layers], dtype=np.float64)
    densities = np.asarray(densities, dtype=np.float64)
    requested = float(np.clip(np.dot(weights, densities) / weights.sum(), 0.0, 1.0))
    shared = ALLOCATIONS.get(rule).allocate(layers, requested)
    if not tilt or np.all(densities == densities[0]) or requested <= 0.0:
        return shared
    return tilted(shared, densities / requested, weights, [1.0 / m.num_units for m in layers])


def tilted(shared: np.ndarray, factors: np.ndarray, weights: np.ndarray, lowest: Sequence[float]) -> np.ndarray:
    """``clip(s * shared_l * factor_l, lowest_l, 1)`` with the one ``s`` that keeps the weighted mean of ``shared``.

    A residual on an allocation rule (``EnvConfig.allocation_tilt``): the rule says how the global density is
    shared, the policy's per-layer densities relative to their weighted mean (``factors``) tilt that share, and
    water-filling (:func:`~sparsity_gym.pruning.projection.bisect_level` on ``s``, layers clipped to [one unit,
    dense]) restores the requested global density
    ``sum_l W_l d_l / sum_l W_l``. Equal factors return ``shared`` unchanged.
    """
    shared = np.asarray(shared, dtype=np.float64)
    factors = np.asarray(factors, dtype=np.float64)
    if np.all(factors == factors[0]):  # no tilt: the rule's densities as they are
        return shared.copy()
    base = shared * np.maximum(factors, 1e-12)
    low = np.minimum(np.asarray(lowest, dtype=np.float64), 1.0)
    budget = float(np.dot(weights, shared))
    level = bisect_level(
        lambda s: float(np.dot(weights, np.clip(s * base, low, 1.0))), budget, float(np.max(1.0 / base))
    )
    return np.clip(level * base, low, 1.0)


def budget_counts(masks: MaskedNetwork, densities: np.ndarray, budget: str, target: float, grows: bool) -> list[int]:
    """Unit counts of the last decision: ``target`` for every layer (``layer``), else the projection.

    Under ``global``/``flops`` the densities are scaled onto ``target`` times the dense cost by water-filling
    within [one unit, all units] (:func:`sparsity_gym.pruning.projection.project_counts`); when units cannot
    return (``grows`` False: ``regrowth="none"``) a layer's upper bound is its active units, and the budget
    may then be out of reach.
    """
    if budget == "layer":
        return [m.target_count(float(d)) for m, d in zip(masks.layers, densities, strict=True)]
    model = budget_model(masks, budget)
    upper = None if grows else np.array([m.num_active for m in masks.layers])
    return [int(c) for c in project_counts(densities, model, target * model.dense_cost, upper)]
