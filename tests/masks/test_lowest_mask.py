"""``lowest_mask`` (selection by ``kthvalue``) picks the same units as ``lowest_among`` (a stable full sort)."""

import pytest
import torch

from sparsity_gym.masks.selectors import lowest_among, lowest_mask


@pytest.mark.parametrize("high_index_first", [False, True])
def test_the_same_units_as_a_stable_sort_ties_included(high_index_first):
    gen = torch.Generator().manual_seed(0)
    for trial in range(400):
        n = int(torch.randint(1, 40, (1,), generator=gen))
        # few distinct values: many ties, among active and inactive units alike
        scores = torch.randn(n, generator=gen) if trial % 3 == 0 else torch.randint(0, 4, (n,), generator=gen).float()
        active = torch.rand(n, generator=gen) > 0.3
        k = int(torch.randint(0, n + 2, (1,), generator=gen))
        expected = torch.zeros(n, dtype=torch.bool)
        expected[lowest_among(scores, active, k, high_index_first)] = True
        assert torch.equal(lowest_mask(scores, active, k, high_index_first), expected)


def test_ties_go_by_index_and_nan_falls_back_to_the_sort():
    scores = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0])
    everything = torch.ones(5, dtype=torch.bool)
    assert lowest_mask(scores, everything, 2).tolist() == [False, True, True, False, False]
    assert lowest_mask(scores, everything, 2, high_index_first=True).tolist() == [False, False, True, True, False]
    with_nan = torch.tensor([float("nan"), 3.0, 1.0])
    assert lowest_mask(with_nan, torch.ones(3, dtype=torch.bool), 2).tolist() == [False, True, True]
