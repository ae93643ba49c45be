import itertools

import pytest

from sparsity_gym.experiments.seeds import SEED_RANGES, WIDTH, seed_start, seeds


def test_ranges_are_disjoint_and_ordered():
    starts = sorted(SEED_RANGES.values())
    assert all(b - a >= WIDTH for a, b in itertools.pairwise(starts))


def test_seeds_of_a_purpose():
    assert seeds("tuning", 3) == (5000, 5001, 5002)
    assert seeds("comparison", 2, offset=4) == (1004, 1005)
    assert seed_start("selection") == 2000


def test_bad_purpose_and_overflow_are_refused():
    with pytest.raises(ValueError, match="purpose='nope'"):
        seeds("nope", 1)
    with pytest.raises(ValueError, match="at most 1000"):
        seeds("prior", 2, offset=999)
