"""Budgets: what ``EnvConfig.budget`` counts, as a :class:`~sparsity_gym.env.projection.BudgetModel` of the masks.

* ``layer``: every controlled layer ends at ``target_density`` (no model needed).
* ``global``: active weights over every prunable layer, the :meth:`MaskedNetwork.global_density` definition.
* ``flops``: inference FLOPs, ``2 * P_l`` per active weight of layer l (:mod:`sparsity_gym.env.flops`), the
  ``info["flops"] / info["dense_flops"]`` fraction (AMC's constraint, He et al. 2018).

At neuron granularity a layer's active weights are its active rows times the input columns its controlled
predecessor leaves active (the column maps of :meth:`MaskedNetwork.successors`), so the model is bilinear.
"""

from __future__ import annotations

import numpy as np
import torch

from sparsity_gym.env.projection import BudgetModel
from sparsity_gym.masks.masked_network import MaskedNetwork


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
