"""Neuron contribution (CRITERIA.md §3) against the worked example and a brute-force triple loop."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsity_gym.stats import ContributionAccumulator, contribution, contribution_score


def brute_force(a: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Literal definition: c[s,j,k] = |W[j,k]||a[s,k]| / Σ_i |W[j,i]||a[s,i]| (0 if the sum is 0)."""
    a = a.double().abs()
    w = w.double().abs()
    s_count, n = a.shape
    m = w.shape[0]
    total = [0.0] * n
    best = [0.0] * n
    for s in range(s_count):
        for j in range(m):
            denom = sum(float(w[j, i] * a[s, i]) for i in range(n))
            for k in range(n):
                c = float(w[j, k] * a[s, k]) / denom if denom != 0 else 0.0
                total[k] += c
                best[k] = max(best[k], c)
    return torch.tensor(total, dtype=torch.float64) / (s_count * m), torch.tensor(best, dtype=torch.float64)


def test_worked_example():
    a = torch.tensor([[1.0, 0.0, 0.0], [2.0, 1.0, 1.0]])
    w = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, -1.0]])
    c_avg, c_max = contribution(a, w)
    torch.testing.assert_close(c_avg, torch.tensor([0.825, 0.0625, 0.1125], dtype=torch.float64))
    torch.testing.assert_close(c_max, torch.tensor([1.0, 0.25, 0.25], dtype=torch.float64))
    score = contribution_score(c_avg, c_max)
    torch.testing.assert_close(score, 0.5 * c_avg + 0.5 * c_max)
    torch.testing.assert_close(contribution_score(c_avg, c_max, 1.0, 0.0), c_avg)


@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_matches_brute_force_with_zero_denominators(chunk_size):
    g = torch.Generator().manual_seed(0)
    a = torch.relu(torch.randn(7, 5, generator=g))
    a[2] = 0.0  # all-zero sample: every denominator of that sample is 0
    a[4] = torch.tensor([0.0, 0.0, 1.5, 0.0, 0.0])
    w = torch.randn(4, 5, generator=g)
    w[1] = 0.0  # next-layer neuron with no fan-in
    w[3, 2] = 0.0  # with a[4] gives a zero denominator for (s=4, j=3) only... plus disjoint support
    c_avg, c_max = contribution(a, w, chunk_size=chunk_size)
    ref_avg, ref_max = brute_force(a, w)
    torch.testing.assert_close(c_avg, ref_avg)
    torch.testing.assert_close(c_max, ref_max)


def test_conv_reduction_spatial_mean_and_kernel_l1():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(3, 4, 5, 5, generator=g)
    w = torch.randn(6, 4, 3, 3, generator=g)
    got = contribution(a, w)
    ref = brute_force(a.abs().mean((2, 3)), w.abs().sum((2, 3)))
    torch.testing.assert_close(got[0], ref[0])
    torch.testing.assert_close(got[1], ref[1])


def test_linear_after_flatten_groups_columns_per_channel():
    g = torch.Generator().manual_seed(2)
    a = torch.relu(torch.randn(3, 4, 2, 3, generator=g))
    w = torch.randn(5, 4 * 2 * 3, generator=g)  # nn.Flatten on NCHW: channel-major columns
    got = contribution(a, w)
    ref = brute_force(a.abs().mean((2, 3)), w.abs().reshape(5, 4, 6).sum(-1))
    torch.testing.assert_close(got[0], ref[0])
    torch.testing.assert_close(got[1], ref[1])
    # after global pooling, one column per channel
    w_pooled = torch.randn(5, 4, generator=g)
    torch.testing.assert_close(contribution(a, w_pooled)[0], brute_force(a.abs().mean((2, 3)), w_pooled)[0])
    with pytest.raises(ValueError):
        contribution(a, torch.randn(5, 7))
    with pytest.raises(ValueError):
        contribution(torch.randn(3, 4), torch.randn(5, 3))


def test_accumulator_streams_over_passes():
    g = torch.Generator().manual_seed(3)
    batches = [torch.relu(torch.randn(k, 6, generator=g)) for k in (4, 1, 5)]
    weights = [torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g), torch.randn(2, 6, generator=g)]
    acc = ContributionAccumulator(6)
    with pytest.raises(RuntimeError):
        _ = acc.c_avg
    for a, w in zip(batches, weights, strict=True):
        acc.update(a, w)
    # reference: brute force over every (sample, j) of the window, averaged over all of them
    total = torch.zeros(6, dtype=torch.float64)
    count = 0
    best = torch.zeros(6, dtype=torch.float64)
    for a, w in zip(batches, weights, strict=True):
        avg, mx = brute_force(a, w)
        total += avg * a.shape[0] * w.shape[0]
        count += a.shape[0] * w.shape[0]
        best = torch.maximum(best, mx)
    torch.testing.assert_close(acc.c_avg, total / count)
    torch.testing.assert_close(acc.c_max, best)
    torch.testing.assert_close(acc.score(0.3, 0.7), 0.3 * total / count + 0.7 * best)
    assert acc.count == count and acc.num_samples == 10
    acc.reset()
    assert acc.count == 0
    acc.update(batches[0], weights[0])
    torch.testing.assert_close(acc.c_avg, contribution(batches[0], weights[0])[0])
    with pytest.raises(ValueError):
        acc.update(torch.ones(2, 5), torch.ones(3, 5))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 4).flatmap(
        lambda s: st.integers(1, 4).flatmap(
            lambda n: st.integers(1, 3).flatmap(
                lambda m: st.tuples(
                    st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0]), min_size=s * n, max_size=s * n),
                    st.lists(st.sampled_from([0.0, -1.0, 0.25, 3.0]), min_size=m * n, max_size=m * n),
                    st.just((s, n, m)),
                )
            )
        )
    )
)
def test_property_matches_brute_force(data):
    a_vals, w_vals, (s, n, m) = data
    a = torch.tensor(a_vals).reshape(s, n)
    w = torch.tensor(w_vals).reshape(m, n)
    got = contribution(a, w, chunk_size=2)
    ref = brute_force(a, w)
    torch.testing.assert_close(got[0], ref[0])
    torch.testing.assert_close(got[1], ref[1])
