"""Tests of the neuron-contribution pruning decision (CRITERIA.md §3)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from sparsity_gym.criteria.contribution_pruning import lowest_fraction, prune_count


def _brute(scores: list[float], fraction: float, active: list[bool]) -> list[int]:
    idx = [i for i, a in enumerate(active) if a]
    k = math.ceil(Fraction(str(fraction)) * len(idx))
    return sorted(idx, key=lambda i: (scores[i], -i))[:k]


def test_ties_higher_index_goes_first() -> None:
    assert lowest_fraction(torch.ones(4), 0.5).tolist() == [3, 2]
    scores = torch.tensor([0.5, 0.1, 0.1, 0.9, 0.1])
    assert lowest_fraction(scores, 0.4).tolist() == [4, 2]
    assert lowest_fraction(scores, 0.6).tolist() == [4, 2, 1]
    assert lowest_fraction(scores, 0.8).tolist() == [4, 2, 1, 0]


def test_default_ten_percent_ceil() -> None:
    scores = torch.arange(30.0)
    assert lowest_fraction(scores).tolist() == [0, 1, 2]  # ceil(0.1·30) = 3 despite 0.1·30 in float
    assert lowest_fraction(torch.arange(31.0)).tolist() == [0, 1, 2, 3]  # ceil(3.1) = 4
    assert lowest_fraction(torch.tensor([7.0])).tolist() == [0]  # ceil(0.1) = 1
    assert lowest_fraction(torch.zeros(0)).numel() == 0


def test_prune_count_against_exact_arithmetic() -> None:
    for fraction in (0.1, 0.2, 0.3, 0.25, 0.15, 0.7, 0.05, 0.0, 1.0):
        for n in range(0, 400):
            assert prune_count(n, fraction) == math.ceil(Fraction(str(fraction)) * n), (fraction, n)


def test_worked_contribution_scores_select_neuron_1() -> None:
    # CRITERIA.md §3 worked example: C_avg = [0.825, 0.0625, 0.1125], C_max = [1, 0.25, 0.25];
    # score = 0.5·C_avg + 0.5·C_max = [0.9125, 0.15625, 0.18125]; ceil(0.1·3) = 1 neuron goes: neuron 1.
    c_avg = torch.tensor([0.825, 0.0625, 0.1125])
    c_max = torch.tensor([1.0, 0.25, 0.25])
    assert lowest_fraction(0.5 * c_avg + 0.5 * c_max).tolist() == [1]
    # the authors'-code option (λ2 = 0) ranks by C_avg only: same neuron.
    assert lowest_fraction(c_avg).tolist() == [1]


def test_active_mask() -> None:
    scores = torch.tensor([0.0, 5.0, 1.0, 1.0, 3.0, 0.0])
    active = torch.tensor([False, True, True, True, True, False])
    # N = 4 active -> ceil(0.5·4) = 2; inactive zeros are never picked.
    assert lowest_fraction(scores, 0.5, active).tolist() == [3, 2]
    assert lowest_fraction(scores, 0.1, torch.zeros(6, dtype=torch.bool)).numel() == 0
    with pytest.raises(ValueError):
        lowest_fraction(scores, 0.5, torch.ones(5, dtype=torch.bool))


def test_against_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        m = int(torch.randint(1, 40, (1,), generator=g))
        scores = torch.randint(0, 5, (m,), generator=g).float() / 4  # many ties
        active = torch.rand(m, generator=g) > 0.3
        fraction = [0.1, 0.25, 0.3, 0.5, 1.0][trial % 5]
        got = lowest_fraction(scores, fraction, active)
        assert got.dtype == torch.long
        assert got.tolist() == _brute(scores.tolist(), fraction, active.tolist()), trial


def test_min_keep_and_validation() -> None:
    assert lowest_fraction(torch.tensor([1.0]), 0.1, min_keep=1).numel() == 0
    assert lowest_fraction(torch.arange(10.0), 0.5, min_keep=8).tolist() == [0, 1]
    with pytest.raises(ValueError, match="NaN"):
        lowest_fraction(torch.tensor([1.0, math.nan]))
    # NaN of an inactive neuron is ignored
    assert lowest_fraction(torch.tensor([1.0, math.nan]), 0.1, torch.tensor([True, False])).tolist() == [0]
    with pytest.raises(ValueError, match="fraction"):
        lowest_fraction(torch.ones(3), 1.5)
    with pytest.raises(ValueError):
        lowest_fraction(torch.ones(3, 1))
