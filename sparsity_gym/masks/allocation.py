"""Allocation rules: how a global density is shared out across the layers, one spec per rule.

An :class:`Allocation` turns a requested global density ``d`` into per-layer densities whose
parameter-weighted mean is ``d`` (``sum_l W_l * d_l = d * sum_l W_l``, ``W_l`` the layer's weights). The env
uses them when ``EnvConfig.allocation`` names one: the policy's densities are reduced to their
parameter-weighted mean and re-allocated by the rule. The rules:

* ``uniform``: every layer at ``d``.
* ``er`` and ``erk`` (Evci, Gale, Menick, Castro, Elsen 2020, "Rigging the Lottery", §3 "Sparsity
  distribution"): ``d_l = min(1, eps * r_l)`` with ``r_l = (n_in + n_out) / (n_in * n_out)`` (Erdős–Rényi) or
  ``r_l = (n_in + n_out + sum kernel dims) / (n_in * n_out * prod kernel dims)`` (ERK), ``n_in`` the input
  channels/features and ``n_out`` the output channels/features; ``eps`` scales the densities onto the budget,
  and a layer that would exceed 1 is kept dense and the excess redistributed over the others, iteratively
  (RigL's procedure). For a Linear layer ER and ERK coincide.
* ``lamp`` (Lee, Park, Mo, Ahn, Shin 2021, "Layer-adaptive sparsity for the magnitude-based pruning", eq. 1–2):
  within each layer the weights are sorted by magnitude, ascending, ``u`` indexing that order, and
  ``score(u) = w_u^2 / sum_{v >= u} w_v^2``; one global threshold over all layers keeps the units of highest
  score (the largest weight of every layer scores 1, so every layer keeps some).
* ``global_magnitude``: one global threshold on ``|w|`` over all layers.

The score-based rules keep the top units of the global ranking until their weights reach ``d * sum_l W_l``
(a tie in score goes to the lower layer, then the lower index), then every layer keeps at least one unit.
Scores are on the dense θ under DPF feedback, otherwise on the masked parameter (pruned weights score 0).

Neuron granularity (units are neurons / conv channels, only the controlled layers take part): the same
formulas apply to units. ER/ERK give each layer's *share of units* from its shape, with ``W_l`` (the layer's
dense weights) still weighting the budget, so the constraint is ``sum_l W_l * d_l = d * sum_l W_l`` on unit
densities. LAMP and global magnitude score a neuron by the l2 norm of its fan-in (the magnitude selector's
neuron score), LAMP on its square, and a kept neuron counts ``W_l / n_l`` weights towards the budget. The
exact number of active weights at neuron granularity also depends on the predecessor's neurons; the final
projection (:mod:`sparsity_gym.pruning.projection`) is what makes the budget exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sparsity_gym.core.checks import check_number
from sparsity_gym.core.registry import Registry
from sparsity_gym.masks.layer_mask import LayerMask

AllocateFn = Callable[[Sequence[LayerMask], float], np.ndarray]


@dataclass(frozen=True)
class Allocation:
    """One allocation rule, registered once in :data:`ALLOCATIONS`.

    Attributes:
        name: The ``EnvConfig.allocation`` value.
        allocate: ``fn(layers, density) -> densities``, one per layer (unit densities in (0, 1]) whose
            parameter-weighted mean is ``density``.
        reads_weights: Whether it reads the layers' weights (score-based) or only their shapes.

    """

    name: str
    allocate: AllocateFn
    reads_weights: bool = False


ALLOCATIONS: Registry[Allocation] = Registry("allocation")


def register_allocation(spec: Allocation) -> Allocation:
    """Add ``spec`` to :data:`ALLOCATIONS`."""
    ALLOCATIONS.add(spec.name, spec)
    return spec


def available_allocations() -> tuple[str, ...]:
    """The registered allocation rules."""
    return ALLOCATIONS.names()


# ----------------------------------------------------------------------------------------------- pure numpy
def er_ratios(n_in: np.ndarray, n_out: np.ndarray, kernels: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """RigL's raw density ratios: ``(n_in + n_out [+ sum k]) / (n_in * n_out [* prod k])`` per layer.

    Args:
        n_in: Input channels/features per layer.
        n_out: Output channels/features per layer.
        kernels: Kernel dims per layer (``()`` for Linear) for ERK; ``None`` for ER (no kernel dims).

    """
    n_in = np.asarray(n_in, dtype=np.float64)
    n_out = np.asarray(n_out, dtype=np.float64)
    if kernels is None:
        return (n_in + n_out) / (n_in * n_out)
    k_sum = np.array([float(sum(k)) for k in kernels])
    k_prod = np.array([float(np.prod(k)) if len(k) else 1.0 for k in kernels])
    return (n_in + n_out + k_sum) / (n_in * n_out * k_prod)


def scaled_ratios(ratios: np.ndarray, weights: np.ndarray, density: float) -> np.ndarray:
    """``d_l = min(1, eps * r_l)`` with ``sum_l W_l d_l = density * sum_l W_l`` (RigL's iterative dense set).

    A layer whose scaled ratio exceeds 1 is made dense and ``eps`` is solved again over the rest, until no
    layer exceeds 1.
    """
    check_number("density", density, low=0.0, high=1.0)
    r = np.asarray(ratios, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    dense = np.zeros(len(r), dtype=bool)
    budget = density * w.sum()
    while True:
        free = ~dense
        if not free.any():
            return np.ones(len(r))
        eps = (budget - w[dense].sum()) / float((w[free] * r[free]).sum())
        over = free & (eps * r > 1.0)
        if not over.any():
            return np.where(dense, 1.0, np.maximum(eps * r, 0.0))
        dense |= over


def lamp_scores(magnitudes: np.ndarray) -> np.ndarray:
    """LAMP scores (Lee et al. 2021, eq. 1-2) of one layer's units, in their original order.

    With the squared magnitudes sorted ascending (stable), ``score(u) = w_u^2 / sum_{v >= u} w_v^2``; 0 where
    the sum is 0.
    """
    sq = np.asarray(magnitudes, dtype=np.float64).ravel() ** 2
    order = np.argsort(sq, kind="stable")
    s = sq[order]
    tail = np.cumsum(s[::-1])[::-1]
    sorted_scores = np.divide(s, tail, out=np.zeros_like(s), where=tail > 0)
    out = np.empty_like(sorted_scores)
    out[order] = sorted_scores
    return out


def top_counts(scores: Sequence[np.ndarray], unit_weights: np.ndarray, budget: float) -> np.ndarray:
    """Per layer, how many of its units are among the global top by score, up to ``budget`` weights.

    Units are taken in decreasing score (ties: lower layer, then lower index) while the weights taken get no
    further from ``budget`` (each unit of layer l weighs ``unit_weights[l]``); every layer keeps at least one.
    """
    flat = np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in scores])
    layer_of = np.concatenate([np.full(np.asarray(s).size, i) for i, s in enumerate(scores)])
    order = np.argsort(-flat, kind="stable")
    cost = np.asarray(unit_weights, dtype=np.float64)[layer_of[order]]
    taken = np.cumsum(cost)
    # the prefix length whose weight is closest to the budget (the shorter one on a tie)
    m = int(np.searchsorted(taken, budget, side="right"))
    if m < len(taken) and (m == 0 or taken[m] - budget < budget - taken[m - 1]):
        m += 1
    counts = np.bincount(layer_of[order[:m]], minlength=len(scores))
    return np.maximum(counts, 1)


# ----------------------------------------------------------------------------------------------- on layers
def _weights(layers: Sequence[LayerMask]) -> np.ndarray:
    return np.array([m.info.num_weights for m in layers], dtype=np.float64)


def _units(layers: Sequence[LayerMask]) -> np.ndarray:
    return np.array([m.num_units for m in layers], dtype=np.float64)


def _shapes(layers: Sequence[LayerMask]) -> tuple[np.ndarray, np.ndarray, list[tuple[int, ...]]]:
    n_in = np.array([m.info.in_units for m in layers])
    n_out = np.array([m.info.fan_out for m in layers])
    kernels = [tuple(int(k) for k in m.dense_weight.shape[2:]) for m in layers]
    return n_in, n_out, kernels


def _magnitudes(layer: LayerMask) -> np.ndarray:
    w = layer.dense_weight.detach().to("cpu", torch.float64)
    return (w.abs().flatten() if layer.granularity == "weight" else w.flatten(1).norm(dim=1)).numpy()


def uniform(layers: Sequence[LayerMask], density: float) -> np.ndarray:
    """Every layer at ``density``."""
    return np.full(len(layers), float(density))


def er(layers: Sequence[LayerMask], density: float) -> np.ndarray:
    """Erdős–Rényi: density proportional to ``(n_in + n_out) / (n_in * n_out)`` (RigL §3)."""
    n_in, n_out, _ = _shapes(layers)
    return scaled_ratios(er_ratios(n_in, n_out), _weights(layers), density)


def erk(layers: Sequence[LayerMask], density: float) -> np.ndarray:
    """Erdős–Rényi-Kernel: the ER ratio with the kernel dims added and multiplied in (RigL §3)."""
    n_in, n_out, kernels = _shapes(layers)
    return scaled_ratios(er_ratios(n_in, n_out, kernels), _weights(layers), density)


def _by_scores(layers: Sequence[LayerMask], density: float, scores: list[np.ndarray]) -> np.ndarray:
    units = _units(layers)
    counts = top_counts(scores, _weights(layers) / units, density * _weights(layers).sum())
    return counts / units


def lamp(layers: Sequence[LayerMask], density: float) -> np.ndarray:
    """LAMP (Lee et al. 2021): one global threshold on the layer-adaptive scores."""
    return _by_scores(layers, density, [lamp_scores(_magnitudes(m)) for m in layers])


def global_magnitude(layers: Sequence[LayerMask], density: float) -> np.ndarray:
    """One global threshold on |w| (a neuron: the l2 norm of its fan-in)."""
    return _by_scores(layers, density, [_magnitudes(m) for m in layers])


register_allocation(Allocation("uniform", uniform))
register_allocation(Allocation("er", er))
register_allocation(Allocation("erk", erk))
register_allocation(Allocation("lamp", lamp, reads_weights=True))
register_allocation(Allocation("global_magnitude", global_magnitude, reads_weights=True))
