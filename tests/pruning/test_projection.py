"""The water-filling projection (sparsity_gym.pruning.projection) against independent computations."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsity_gym.pruning.projection import BudgetModel, bisect_level, project_counts, scaled_counts, water_level


def breakpoint_level(d: np.ndarray, n: np.ndarray, c: np.ndarray, budget: float) -> float:
    """The water level by exact piecewise-linear interpolation (independent of the bisection).

    f(s) = sum c_l clip(s d_l n_l, 1, n_l) is piecewise linear with kinks at s = 1/(d_l n_l) and s = 1/d_l.
    """
    kinks = np.unique(np.concatenate([[0.0], 1.0 / (d * n), 1.0 / d]))

    def f(s: float) -> float:
        return float(np.sum(c * np.clip(s * d * n, 1.0, n)))

    values = np.array([f(s) for s in kinks])
    i = int(np.searchsorted(values, budget))  # first kink at or above the budget
    if i == 0:
        return float(kinks[0])
    if i == len(kinks):
        return float(kinks[-1])
    s0, s1, f0, f1 = kinks[i - 1], kinks[i], values[i - 1], values[i]
    return float(s1 if f1 == f0 else s0 + (budget - f0) * (s1 - s0) / (f1 - f0))


def test_hand_worked_three_layers():
    # n = (10, 100, 1000), d = (0.9, 0.5, 0.05), budget 200 units of 1110.
    # s d n = (9s, 50s, 50s); layer 0 saturates at s = 10/9: then 10 + 100 s = 200 -> s = 1.9, which
    # saturates layer 0 (9*1.9 > 10): counts (10, 95, 95).
    model = BudgetModel.linear(np.array([10, 100, 1000]))
    counts = project_counts(np.array([0.9, 0.5, 0.05]), model, 200.0)
    np.testing.assert_array_equal(counts, [10, 95, 95])
    # a budget below one unit per layer: every layer keeps one; above dense: every unit
    np.testing.assert_array_equal(project_counts(np.array([0.9, 0.5, 0.05]), model, 1.0), [1, 1, 1])
    np.testing.assert_array_equal(project_counts(np.array([0.9, 0.5, 0.05]), model, 5000.0), [10, 100, 1000])


def test_largest_remainder_rounding_by_hand():
    # n = (3, 3, 3), d all 0.5, budget 4: x = (4/3, 4/3, 4/3), floors (1, 1, 1), one unit left: equal
    # fractions, the lowest index takes it.
    counts = project_counts(np.full(3, 0.5), BudgetModel.linear(np.array([3, 3, 3])), 4.0)
    np.testing.assert_array_equal(counts, [2, 1, 1])


def brute_force_best(x: np.ndarray, n: np.ndarray, total: int) -> float:
    """min over integer k in [1, n] with sum k = total of sum |k - x| (enumeration)."""
    best = np.inf
    for k in itertools.product(*[range(1, int(m) + 1) for m in n]):
        if sum(k) == total:
            best = min(best, float(np.abs(np.array(k) - x).sum()))
    return best


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 7), st.floats(0.01, 1.0)), min_size=2, max_size=3),
    st.floats(0.0, 1.0),
)
def test_against_brute_force_and_breakpoints(layers, fraction):
    n = np.array([m for m, _ in layers])
    d = np.array([x for _, x in layers])
    total = round(len(n) + fraction * (n.sum() - len(n)))  # a feasible integer budget
    counts = project_counts(d, BudgetModel.linear(n), float(total))
    s = breakpoint_level(d, n, np.ones(len(n)), float(total))
    x = np.clip(s * d * n, 1.0, n)
    assert counts.sum() == total
    assert np.all(np.abs(counts - x) < 1.0 + 1e-9)
    # largest-remainder rounding is the integer vector of that sum closest to x in l1
    assert np.abs(counts - x).sum() == pytest.approx(brute_force_best(x, n, total), abs=1e-7)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 5000), st.floats(0.001, 1.0)), min_size=1, max_size=8),
    st.floats(0.0, 1.0),
)
def test_properties(layers, fraction):
    n = np.array([m for m, _ in layers])
    d = np.array([x for _, x in layers])
    model = BudgetModel.linear(n)
    total = round(len(n) + fraction * (n.sum() - len(n)))
    counts = project_counts(d, model, float(total))
    # exact count, within the bounds
    assert counts.sum() == total
    assert np.all(counts >= 1) and np.all(counts <= n)
    # the water level matches the independent one, and the levels keep the policy's order
    s = water_level(d, model, float(total))
    level = scaled_counts(d, n, s) / n
    assert float(np.sum(scaled_counts(d, n, s))) == pytest.approx(total, rel=1e-9, abs=1e-6)
    for i, j in itertools.permutations(range(len(n)), 2):
        if d[i] <= d[j] and 1.0 / n[i] <= level[j]:
            assert level[i] <= level[j] + 1e-12
    # integer counts within one unit of the level
    assert np.all(np.abs(counts - level * n) < 1.0 + 1e-9)
    # idempotent on feasible input
    again = project_counts(counts / n, model, float(total))
    np.testing.assert_array_equal(again, counts)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 300), st.floats(0.01, 1.0), st.integers(1, 50)), min_size=1, max_size=5),
    st.floats(0.0, 1.0),
)
def test_weighted_units_within_one_unit(layers, fraction):
    # FLOPs: a unit of layer l costs c_l; the cost lands within one unit (the costliest) of the budget
    n = np.array([m for m, _, _ in layers])
    d = np.array([x for _, x, _ in layers])
    c = np.array([float(k) for _, _, k in layers])
    model = BudgetModel.linear(n, c)
    low, high = float(c.sum()), float(np.dot(c, n))
    budget = low + fraction * (high - low)
    counts = project_counts(d, model, budget)
    assert np.all(counts >= 1) and np.all(counts <= n)
    assert abs(model.cost(counts) - budget) <= c.max() + 1e-6


def test_bilinear_model_counts_rows_times_columns():
    # two Linear layers 4 -> 6 -> 3 at neuron granularity: layer 0 controlled (6 neurons, fan-in 4), the
    # output layer's columns are layer 0's active neurons.
    model = BudgetModel(
        units=np.array([6]),
        factor=np.array([1.0, 1.0]),
        row_layer=np.array([0, -1]),
        row_const=np.array([6.0, 3.0]),
        col_layer=np.array([-1, 0]),
        col_scale=np.array([0.0, 1.0]),
        col_const=np.array([4.0, 6.0]),
    )
    assert model.dense_cost == 4 * 6 + 6 * 3
    assert model.cost(np.array([2])) == 2 * 4 + 3 * 2
    # budget 0.5 * 42 = 21 weights; a neuron costs 7: 3 neurons = 21 exactly
    np.testing.assert_array_equal(project_counts(np.array([0.2]), model, 21.0), [3])
    assert project_counts(np.array([0.2]), model, 21.0) / model.units == pytest.approx([0.5])


def test_bad_input():
    model = BudgetModel.linear(np.array([4, 4]))
    with pytest.raises(ValueError, match="densities"):
        project_counts(np.array([0.5]), model, 4.0)
    with pytest.raises(ValueError, match="densities"):
        project_counts(np.array([0.5, np.nan]), model, 4.0)


def test_upper_bounds_by_hand():
    # n = (10, 10), equal densities, layer 0 bounded by 3 units (e.g. no regrowth): budget 10 -> (3, 7);
    # a budget above the bounded total (13) gives every allowed unit.
    model = BudgetModel.linear(np.array([10, 10]))
    np.testing.assert_array_equal(project_counts(np.array([0.5, 0.5]), model, 10.0, np.array([3, 10])), [3, 7])
    np.testing.assert_array_equal(project_counts(np.array([0.5, 0.5]), model, 15.0, np.array([3, 10])), [3, 10])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 5.0), min_size=1, max_size=6), st.floats(0.0, 1.0))
def test_bisect_level_is_the_first_scale_that_reaches_the_budget(slopes, fraction):
    # a non-decreasing piecewise-linear cost sum_i min(s * a_i, 1): the level against a dense scan
    a = np.array(slopes)

    def cost(s: float) -> float:
        return float(np.minimum(s * a, 1.0).sum())

    high = 10.0
    budget = fraction * cost(high)
    level = bisect_level(cost, budget, high)
    assert 0.0 <= level <= high
    if cost(high) <= budget:
        assert level == high
        return
    assert cost(level) >= budget
    scan = np.linspace(0.0, high, 100_001)
    below = scan[np.array([cost(s) for s in scan]) < budget]
    assert level == pytest.approx(float(below.max()) if len(below) else 0.0, abs=2 * high / 100_000)
