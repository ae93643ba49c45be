"""The projection of a decision's per-layer densities onto a global budget (pure numpy).

A *budget model* (:class:`BudgetModel`) says what a vector of per-layer unit counts costs: the network's
active weights (``budget="global"``) or its inference FLOPs (``budget="flops"``). The cost is the sum over
every prunable layer of ``factor * rows * columns``, where ``rows`` is a controlled layer's active units or a
constant, and ``columns`` the active input columns a controlled predecessor leaves (neuron granularity) or a
constant. At weight granularity every layer is controlled, its units are its weights and ``columns`` is 1, so
the cost is linear: ``sum_l c_l * k_l`` with ``c_l = 1`` (parameters) or ``c_l = 2 * P_l`` (FLOPs, P the
output positions; :mod:`sparsity_gym.pruning.flops`). At neuron granularity a neuron's cost also shrinks with its
predecessor's active units, so the cost is bilinear in the counts; the same procedure applies because the cost
is non-decreasing in every count.

:func:`project_counts` is the water-filling: the policy's densities ``d_l`` are scaled by one factor ``s``,
each layer clipped to its bounds ``[1 unit, n_l units]``, ``x_l(s) = clip(s * d_l * n_l, 1, n_l)``, with ``s``
found by bisection so that the cost of ``x(s)`` equals the budget (a layer that reaches a bound stays there and
the others absorb the rest, which is what water-filling means). Counts are then made integer: ``floor(x_l)``,
and units are added one at a time, layers in decreasing order of their fractional parts (ties: the lower
index), as long as an addition brings the cost at least as close to the budget as it was (largest-remainder
rounding). With a linear cost of unit weights, the result holds exactly ``round(budget)`` units; in general the
cost is within one unit's cost of the budget. Everything is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

_BISECTION_STEPS = 200
_FLOOR_TOLERANCE = 1e-9


@dataclass(frozen=True)
class BudgetModel:
    """What per-layer unit counts cost: ``sum_i factor_i * rows_i * columns_i`` over every prunable layer.

    Attributes:
        units: Units of each controlled layer (``n_l``), int array of length L.
        factor: Per prunable layer (all of them, length M): the cost of one active row × column entry
            (1 for parameters, ``2 * P`` for FLOPs; at weight granularity times nothing else).
        row_layer: Per prunable layer, the controlled layer whose count gives its rows, or -1 (constant).
        row_const: Per prunable layer, its rows when ``row_layer`` is -1.
        col_layer: Per prunable layer, the controlled layer whose count gives its active input columns, or -1.
        col_scale: Columns per active unit of ``col_layer`` (a conv channel flattened into a Linear owns
            several), times the kernel size.
        col_const: Per prunable layer, its columns (times kernel size) when ``col_layer`` is -1.

    """

    units: np.ndarray
    factor: np.ndarray
    row_layer: np.ndarray
    row_const: np.ndarray
    col_layer: np.ndarray
    col_scale: np.ndarray
    col_const: np.ndarray

    @classmethod
    def linear(cls, units: np.ndarray, unit_cost: np.ndarray | None = None) -> BudgetModel:
        """A linear cost ``sum_l unit_cost_l * k_l`` (every layer controlled; weight granularity)."""
        units = np.asarray(units, dtype=np.int64)
        n = len(units)
        cost = np.ones(n) if unit_cost is None else np.asarray(unit_cost, dtype=np.float64)
        return cls(
            units=units,
            factor=cost,
            row_layer=np.arange(n),
            row_const=np.zeros(n),
            col_layer=np.full(n, -1),
            col_scale=np.zeros(n),
            col_const=np.ones(n),
        )

    def cost(self, counts: np.ndarray) -> float:
        """The cost of (possibly fractional) per-layer counts."""
        k = np.asarray(counts, dtype=np.float64)
        rows = np.where(self.row_layer >= 0, k[np.maximum(self.row_layer, 0)], self.row_const)
        cols = np.where(self.col_layer >= 0, k[np.maximum(self.col_layer, 0)] * self.col_scale, self.col_const)
        return float(np.sum(self.factor * rows * cols))

    @property
    def dense_cost(self) -> float:
        """The cost with every unit active."""
        return self.cost(self.units)


def scaled_counts(
    densities: np.ndarray, units: np.ndarray, scale: float, upper: np.ndarray | None = None
) -> np.ndarray:
    """``clip(scale * d_l * n_l, 1, upper_l)``: the fractional counts at one water level (``upper``: ``n_l``)."""
    top = (units if upper is None else upper).astype(np.float64)
    return np.clip(scale * np.asarray(densities, dtype=np.float64) * units, 1.0, top)


def bisect_level(cost: Callable[[float], float], budget: float, high: float) -> float:
    """The smallest scale ``s`` in ``[0, high]`` with ``cost(s) >= budget``, by bisection (``high`` if none).

    ``cost`` must be non-decreasing in ``s``. Bisection halves ``[lo, hi]`` (``cost(lo) < budget <= cost(hi)``)
    for at most 200 steps or until the midpoint equals an end in floating point, and returns ``hi``; when
    ``cost(high) <= budget`` it returns ``high``. Every water-filling of the package (the projection's water
    level, :func:`sparsity_gym.pruning.budget.tilted`) is this one solver with its own cost.
    """
    lo, hi = 0.0, high
    if cost(hi) <= budget:
        return hi
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2.0
        if mid in (lo, hi):
            break
        if cost(mid) < budget:
            lo = mid
        else:
            hi = mid
    return hi


def bisect_levels(cost: Callable[[np.ndarray], np.ndarray], budget: np.ndarray, high: np.ndarray) -> np.ndarray:
    """:func:`bisect_level` on a batch of rows at once: ``cost`` maps levels ``(n,)`` to costs ``(n,)``.

    Each row follows the scalar solver's steps exactly (the same midpoints, the same stop when a midpoint equals
    an end, ``high`` where ``cost(high) <= budget``); rows that have stopped keep their ``hi``.
    """
    lo, hi = np.zeros_like(high), high
    active = cost(hi) > budget
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2.0
        active &= (mid != lo) & (mid != hi)
        if not active.any():
            break
        below = cost(mid) < budget
        lo = np.where(active & below, mid, lo)
        hi = np.where(active & ~below, mid, hi)
    return hi


def water_level(densities: np.ndarray, model: BudgetModel, budget: float, upper: np.ndarray | None = None) -> float:
    """The scale ``s`` at which the fractional counts cost ``budget`` (:func:`bisect_level`; clipped to the range)."""
    d = np.maximum(np.asarray(densities, dtype=np.float64), 1e-12)
    units = model.units
    return bisect_level(
        lambda s: model.cost(scaled_counts(d, units, s, upper)), budget, float(np.max(1.0 / d)) * 1.0000001
    )


def project_counts(
    densities: np.ndarray, model: BudgetModel, budget: float, upper: np.ndarray | None = None
) -> np.ndarray:
    """Integer unit counts, each within ``[1, n_l]``, that keep the densities' allocation and cost ``budget``.

    See the module docstring: water-filling on one scale factor, then largest-remainder rounding. A budget
    below the cost of one unit per layer gives one unit per layer; above the dense cost (or the cost at
    ``upper``), every unit (``upper``).

    Args:
        densities: The policy's per-layer densities (after any allocation rule), each in (0, 1].
        model: What counts cost.
        budget: The target cost (e.g. ``target_density * dense weights``).
        upper: Per-layer upper bounds on the counts (default ``n_l``; e.g. the active units when units cannot
            return), each in ``[1, n_l]``.

    """
    d = np.asarray(densities, dtype=np.float64)
    if d.shape != model.units.shape:
        raise ValueError(f"densities has shape {d.shape}; expected {model.units.shape} (one per controlled layer)")
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise ValueError(f"densities={d.tolist()!r} is not allowed; expected finite values >= 0")
    units = model.units
    top = units if upper is None else np.clip(np.asarray(upper, dtype=np.int64), 1, units)
    x = scaled_counts(d, units, water_level(d, model, budget, top), top)
    counts = np.clip(np.floor(x + _FLOOR_TOLERANCE), 1, top).astype(np.int64)
    fraction = x - counts
    order = sorted(range(len(units)), key=lambda i: (-fraction[i], i))
    cost = model.cost(counts)
    changed = True
    while changed and cost < budget:
        changed = False
        for i in order:
            if counts[i] >= top[i]:
                continue
            counts[i] += 1
            new = model.cost(counts)
            if new - budget <= budget - cost:
                cost, changed = new, True
                if cost >= budget:
                    break
            else:
                counts[i] -= 1
    return counts
