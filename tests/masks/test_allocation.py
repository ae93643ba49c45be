"""Allocation rules (sparsity_gym.masks.allocation) against hand-worked numbers."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from sparsity_gym.masks.allocation import (
    ALLOCATIONS,
    available_allocations,
    er_ratios,
    lamp_scores,
    scaled_ratios,
    top_counts,
)
from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.models import find_prunable_layers


def masked(model: nn.Module, input_shape: tuple[int, ...], granularity: str = "weight") -> MaskedNetwork:
    """The MaskedNetwork of ``model`` (no optimizer)."""
    return MaskedNetwork(find_prunable_layers(model, input_shape), granularity=granularity)


def test_registry_names():
    assert set(available_allocations()) == {"uniform", "er", "erk", "lamp", "global_magnitude"}
    with pytest.raises(ValueError, match="allocation='nope'"):
        ALLOCATIONS.get("nope")


def test_er_two_linear_layers_by_hand():
    # L1: 4 -> 2 (W = 8), L2: 2 -> 2 (W = 4). ER ratios r1 = (4+2)/(4*2) = 0.75, r2 = (2+2)/(2*2) = 1.
    # density 0.5: 6 of 12 weights; 8*0.75 eps + 4*1 eps = 10 eps = 6 -> eps = 0.6 -> d = (0.45, 0.6).
    r = er_ratios(np.array([4, 2]), np.array([2, 2]))
    np.testing.assert_allclose(r, [0.75, 1.0])
    np.testing.assert_allclose(scaled_ratios(r, np.array([8, 4]), 0.5), [0.45, 0.6])
    # density 0.9: 10.8 weights; eps = 1.08 would make L2 1.08 > 1: L2 dense (4), 6 eps = 6.8 ->
    # d1 = 0.75 * 6.8 / 6 = 0.85.
    np.testing.assert_allclose(scaled_ratios(r, np.array([8, 4]), 0.9), [0.85, 1.0])


def test_erk_and_er_on_a_conv_net_by_hand():
    # Conv2d(2 -> 4, 3x3) on 2x5x5 inputs: W = 2*4*9 = 72; flattened 4x3x3 = 36 -> Linear(36 -> 10): W = 360.
    # ERK: r_conv = (2+4+3+3)/(2*4*3*3) = 12/72 = 1/6, r_lin = (36+10)/(36*10) = 46/360.
    #   density 0.1: 43.2 of 432 weights = 72/6 eps + 46 eps = 58 eps -> eps = 43.2/58 = 0.744828
    #   d_conv = eps/6 = 0.124138, d_lin = eps*46/360 = 0.095172.
    # ER:  r_conv = (2+4)/(2*4) = 0.75: 54 eps + 46 eps = 100 eps = 43.2 -> eps = 0.432
    #   d_conv = 0.324, d_lin = 0.432*46/360 = 0.0552.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(36, 10))
    layers = masked(net, (2, 5, 5)).layers
    np.testing.assert_allclose(ALLOCATIONS.get("erk").allocate(layers, 0.1), [0.124138, 0.095172], atol=1e-6)
    np.testing.assert_allclose(ALLOCATIONS.get("er").allocate(layers, 0.1), [0.324, 0.0552], atol=1e-9)
    np.testing.assert_allclose(ALLOCATIONS.get("uniform").allocate(layers, 0.1), [0.1, 0.1])
    for name in ("er", "erk", "uniform"):  # every rule keeps the parameter-weighted mean
        d = ALLOCATIONS.get(name).allocate(layers, 0.1)
        assert np.dot(d, [72, 360]) == pytest.approx(43.2)


def test_lamp_scores_by_hand():
    # [3, -1, 2]: squares 9, 1, 4; ascending 1, 4, 9 with tail sums 14, 13, 9 -> 1/14, 4/13, 9/9
    np.testing.assert_allclose(lamp_scores(np.array([3.0, -1.0, 2.0])), [1.0, 1 / 14, 4 / 13])
    np.testing.assert_allclose(lamp_scores(np.zeros(2)), [0.0, 0.0])


def test_top_counts_ties_and_minimum():
    # scores A = (1, 0.5), B = (1, 0.2): the tie at 1 goes to A first; 3 units: A 2, B 1
    np.testing.assert_array_equal(top_counts([np.array([1.0, 0.5]), np.array([1.0, 0.2])], np.ones(2), 3), [2, 1])
    # a budget of 1: only A's best, but every layer keeps one
    np.testing.assert_array_equal(top_counts([np.array([1.0, 0.5]), np.array([1.0, 0.2])], np.ones(2), 1), [1, 1])


def test_lamp_against_global_magnitude_by_hand():
    # Layer A = Linear(2 -> 2) with weights [[10, 9], [8, 7]], layer B = Linear(2 -> 1) with [[1, 0.5]].
    # LAMP: A squares 49, 64, 81, 100, tail sums 294, 245, 181, 100 -> 7: 0.1667, 8: 0.2612, 9: 0.4475, 10: 1;
    #       B squares 0.25, 1, tail sums 1.25, 1 -> 0.5: 0.2, 1: 1.
    #       order 10 (A), 1 (B), 9, 8, 0.5 (B), 7: keeping 5 of 6 weights -> A 3, B 2 -> (0.75, 1.0).
    # Global magnitude: 10, 9, 8, 7, 1 -> A 4, B 1 -> (1.0, 0.5).
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[10.0, 9.0], [8.0, 7.0]]))
        net[2].weight.copy_(torch.tensor([[1.0, 0.5]]))
    layers = masked(net, (2,)).layers
    np.testing.assert_allclose(ALLOCATIONS.get("lamp").allocate(layers, 5 / 6), [0.75, 1.0])
    np.testing.assert_allclose(ALLOCATIONS.get("global_magnitude").allocate(layers, 5 / 6), [1.0, 0.5])
    # keeping 4: LAMP A 3 (10, 9, 8), B 1 (1); global magnitude A 4, B at its minimum of one unit
    np.testing.assert_allclose(ALLOCATIONS.get("lamp").allocate(layers, 4 / 6), [0.75, 0.5])
    np.testing.assert_allclose(ALLOCATIONS.get("global_magnitude").allocate(layers, 4 / 6), [1.0, 0.5])


def test_neuron_granularity_scores_units():
    # Linear(3 -> 4) -> Linear(4 -> 2): at neuron granularity only the hidden layer is controlled.
    # Its neurons' fan-in norms: rows (3,0,0), (0,1,0), (0,0,2), (1,1,1) -> 3, 1, 2, sqrt(3).
    # Global magnitude at density 0.5 over the controlled layer's 12 weights (3 per neuron): 6 weights = 2
    # neurons -> the norms 3 and 2; LAMP keeps the same two (one layer: LAMP ranks like magnitude).
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[3.0, 0, 0], [0, 1, 0], [0, 0, 2], [1, 1, 1]]))
    layers = masked(net, (3,), "neuron").layers
    assert len(layers) == 1
    np.testing.assert_allclose(ALLOCATIONS.get("global_magnitude").allocate(layers, 0.5), [0.5])
    np.testing.assert_allclose(ALLOCATIONS.get("lamp").allocate(layers, 0.5), [0.5])
    np.testing.assert_allclose(ALLOCATIONS.get("erk").allocate(layers, 0.5), [0.5])
