"""Tests of DYNO grow-and-prune decisions and NORTH-Select growth (CRITERIA.md §2)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from sparsity_gym.criteria.dyno import (
    clamp_prune_count,
    north_select,
    north_select_scores,
    prune_grow_counts,
    select_prune,
)

# ----------------------------------------------------------------------------- trigger counts


@pytest.mark.parametrize(("e", "expected"), [(50, (5, 0)), (60, (0, 0)), (62, (0, 2))])
def test_worked_trigger_counts(e: int, expected: tuple[int, int]) -> None:
    assert prune_grow_counts(0.9, 64, e, e) == expected
    assert prune_grow_counts(0.9, 64, e, e, delta=3e-2) == expected


def test_grow_uses_old_width_and_e_after() -> None:
    # E = 50 prunes 5; E' after pruning is a separate count.
    assert prune_grow_counts(0.9, 64, 50, 62) == (5, 2)


def test_float_snapping() -> None:
    # (1 + 0.1)·0.9·100 = 99.00000000000001 in float64; exact value 99, so E' = 100 grows 1.
    assert (1 + 0.1) * 0.9 * 100 > 99
    assert prune_grow_counts(0.9, 100, 200, 100, delta=0.1) == (0, 1)


def _exact_counts(phi: float, n: int, e: int, e2: int, delta: float) -> tuple[int, int]:
    d, p = Fraction(str(delta)), Fraction(str(phi))
    prune = max(math.trunc((1 - d) * p * n - e), 0)
    grow = max(math.trunc(e2 - (1 + d) * p * n), 0)
    return prune, grow


def test_counts_against_exact_arithmetic() -> None:
    for delta in (0.03, 0.1, 0.05):
        for phi in (1.0, 0.9, 0.7, 0.55, 0.3):
            for n in range(1, 130):
                for e in {0, n // 3, n // 2, int(0.9 * n), n}:
                    got = prune_grow_counts(phi, n, e, e, delta)
                    assert got == _exact_counts(phi, n, e, e, delta), (delta, phi, n, e)


def test_count_validation() -> None:
    with pytest.raises(ValueError):
        prune_grow_counts(0.9, -1, 0, 0)
    with pytest.raises(ValueError):
        prune_grow_counts(math.nan, 10, 0, 0)
    with pytest.raises(ValueError):
        prune_grow_counts(0.9, 10, 0, 0, delta=1.5)


def test_clamp_prune_count() -> None:
    assert clamp_prune_count(5, 64, 10) == 5
    assert clamp_prune_count(60, 64, 10) == 54
    assert clamp_prune_count(10, 10, 0) == 9  # at least one unit always
    assert clamp_prune_count(3, 5, 5) == 0
    assert clamp_prune_count(3, 4, 10) == 0
    assert clamp_prune_count(0, 4, 1) == 0


# ----------------------------------------------------------------------------- prune selection


def _brute_select(acts: torch.Tensor, n_prune: int, active: torch.Tensor) -> list[int]:
    """Independent reference: recompute the whole cosine matrix from scratch every round (numpy)."""
    a = acts.double().numpy()
    act = active.numpy()
    chosen: list[int] = []
    for j in range(a.shape[1]):
        if act[j] and not np.any(a[:, j] != 0) and len(chosen) < n_prune:
            chosen.append(j)
    remaining = [j for j in range(a.shape[1]) if act[j] and np.any(a[:, j] != 0)]
    while len(chosen) < n_prune:
        best, best_val = None, -1.0
        for j in remaining:
            vj = a[:, j] / np.linalg.norm(a[:, j])
            val = 0.0
            for i in remaining:
                if i != j:
                    vi = a[:, i] / np.linalg.norm(a[:, i])
                    val += float(vi @ vj) ** 2
            if val > best_val + 1e-9:
                best, best_val = j, val
        assert best is not None
        chosen.append(best)
        remaining.remove(best)
    return chosen


def test_select_prune_hand_examples() -> None:
    # columns a = e1, b = (e1+e2)/√2, c = e2: b is the most redundant, then a and c tie -> a.
    acts = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    assert select_prune(acts, 1).tolist() == [1]
    assert select_prune(acts, 2).tolist() == [1, 0]
    assert select_prune(acts, 3).tolist() == [1, 0, 2]
    # with b inactive, a and c are orthogonal: tie -> lowest index.
    assert select_prune(acts, 1, torch.tensor([True, False, True])).tolist() == [0]
    # duplicate columns: exact tie -> lowest index, then the copy is orthogonal to the rest.
    acts = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    assert select_prune(acts, 2).tolist() == [0, 1]


def test_select_prune_dormant_first() -> None:
    acts = torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0, 1.0]])
    # columns 1 and 3 are dormant; then 2 and 4 are duplicates -> 2 (lowest index), then the rest.
    assert select_prune(acts, 1).tolist() == [1]
    assert select_prune(acts, 2).tolist() == [1, 3]
    assert select_prune(acts, 3).tolist() == [1, 3, 2]
    # an inactive dormant column is not selected.
    active = torch.tensor([True, False, True, True, True])
    assert select_prune(acts, 2, active).tolist() == [3, 2]


def test_select_prune_scale_invariant_and_bounds() -> None:
    g = torch.Generator().manual_seed(3)
    acts = torch.relu(torch.randn(40, 12, generator=g))
    scaled = acts * torch.rand(12, generator=g).add(0.1) * 10
    assert torch.equal(select_prune(acts, 6), select_prune(scaled, 6))
    assert select_prune(acts, 0).numel() == 0
    assert select_prune(acts, 0).dtype == torch.long
    with pytest.raises(ValueError):
        select_prune(acts, 13)
    with pytest.raises(ValueError):
        select_prune(acts, 5, torch.arange(12) < 4)
    with pytest.raises(ValueError):
        select_prune(acts[0], 1)


def test_select_prune_against_brute_force() -> None:
    g = torch.Generator().manual_seed(4)
    for trial in range(25):
        n, m = 16, 9
        acts = torch.relu(torch.randn(n, m, generator=g))
        if trial % 3 == 0:
            acts[:, 2] = 0.0  # dormant
        if trial % 4 == 0:
            acts[:, 5] = acts[:, 1] * 2.0  # duplicate direction
        active = torch.rand(m, generator=g) > 0.2
        n_active = int(active.sum())
        for n_prune in range(n_active + 1):
            got = select_prune(acts, n_prune, active).tolist()
            assert got == _brute_select(acts, n_prune, active), (trial, n_prune)
            assert len(set(got)) == n_prune
            assert all(bool(active[j]) for j in got)


def test_select_prune_conv_flattened() -> None:
    # (n, C, h, w) -> (n·h·w, C), channel-major columns.
    g = torch.Generator().manual_seed(5)
    h = torch.relu(torch.randn(4, 6, 3, 3, generator=g))
    h[:, 4] = 0.0
    flat = h.permute(0, 2, 3, 1).reshape(-1, 6)
    assert select_prune(flat, 1).tolist() == [4]


# ----------------------------------------------------------------------------- NORTH-Select


def _spec_example() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    inputs = torch.eye(3)
    existing = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    candidates = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.0, 0.5], [-1.0, -1.0, -1.0]])
    return inputs, existing, candidates


def test_north_scores_worked_example_relu() -> None:
    # CRITERIA.md's numbers [0, 1, 0.5, 0] hold with ReLU activations ([−1,−1,−1] → 0).
    inputs, existing, candidates = _spec_example()
    scores = north_select_scores(torch.relu(inputs @ existing.T), torch.relu(inputs @ candidates.T))
    assert torch.allclose(scores, torch.tensor([0.0, 1.0, 0.5, 0.0]), atol=1e-6)


def test_north_scores_worked_example_identity() -> None:
    # With the identity activation the last candidate's residual is −e3: score 1, not 0 (spec discrepancy).
    inputs, existing, candidates = _spec_example()
    scores = north_select_scores(inputs @ existing.T, inputs @ candidates.T)
    assert torch.allclose(scores, torch.tensor([0.0, 1.0, 0.5, 1.0]), atol=1e-6)


def test_north_scores_rank_deficient_and_empty() -> None:
    inputs, existing, candidates = _spec_example()
    ex = inputs @ existing.T
    deficient = torch.cat([ex, ex[:, :1] * 3.0, torch.zeros(3, 1), ex.sum(1, keepdim=True)], dim=1)
    cand = inputs @ candidates.T
    assert torch.allclose(north_select_scores(deficient, cand), north_select_scores(ex, cand), atol=1e-6)
    assert torch.allclose(north_select_scores(torch.zeros(3, 0), cand), cand.norm(dim=0))
    assert torch.allclose(north_select_scores(torch.zeros(3, 2), cand), cand.norm(dim=0))


def test_north_scores_against_pinv() -> None:
    g = torch.Generator().manual_seed(6)
    for m in (1, 4, 10, 25):
        ex = torch.randn(20, m, generator=g, dtype=torch.float64)
        cand = torch.randn(20, 7, generator=g, dtype=torch.float64)
        a, c = ex.numpy(), cand.numpy()
        ref = np.linalg.norm(c - a @ np.linalg.pinv(a) @ c, axis=0)
        got = north_select_scores(ex, cand).numpy()
        np.testing.assert_allclose(got, ref, atol=1e-9)


def test_north_select_matches_manual_draw() -> None:
    g = torch.Generator().manual_seed(7)
    inputs = torch.randn(30, 5, generator=g)
    existing = torch.randn(3, 5, generator=g)
    bias = torch.randn(3, generator=g)
    n_grow, per = 2, 10
    new_w, new_b = north_select(
        inputs, existing, bias, n_grow, torch.relu, torch.Generator().manual_seed(11), candidates_per_unit=per
    )
    assert new_w.shape == (2, 5) and new_b.shape == (2,)
    assert torch.equal(new_b, torch.zeros(2))
    # reproduce the documented draw and selection
    gen = torch.Generator().manual_seed(11)
    bound = 1 / math.sqrt(5)
    cand = torch.rand((n_grow * per, 5), generator=gen) * (2 * bound) - bound
    scores = north_select_scores(torch.relu(inputs @ existing.T + bias), torch.relu(inputs @ cand.T))
    best = torch.argsort(scores, descending=True, stable=True)[:n_grow]
    assert torch.equal(new_w, cand[best])
    assert float(new_w.abs().max()) <= bound
    # determinism from the generator alone
    again, _ = north_select(
        inputs, existing, bias, n_grow, torch.relu, torch.Generator().manual_seed(11), candidates_per_unit=per
    )
    assert torch.equal(new_w, again)


def test_north_select_prefers_orthogonal_direction() -> None:
    inputs, existing, _ = _spec_example()
    new_w, _ = north_select(inputs, existing, None, 1, lambda x: x, torch.Generator().manual_seed(0))
    # identity activation, existing span = {e1, e2}: the winner maximises |w·e3| among 100 draws.
    gen = torch.Generator().manual_seed(0)
    bound = 1 / math.sqrt(3)
    cand = torch.rand((100, 3), generator=gen) * (2 * bound) - bound
    assert float(new_w[0, 2].abs()) == pytest.approx(float(cand[:, 2].abs().max()))


def test_north_select_edge_cases() -> None:
    inputs = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    w, b = north_select(inputs, torch.zeros(0, 4), None, 0, torch.relu, torch.Generator())
    assert w.shape == (0, 4) and b.shape == (0,)
    w, b = north_select(inputs, torch.zeros(0, 4), None, 3, torch.relu, torch.Generator().manual_seed(2))
    assert w.shape == (3, 4)
    with pytest.raises(ValueError):
        north_select(inputs, torch.zeros(2, 5), None, 1, torch.relu, torch.Generator())
    with pytest.raises(ValueError):
        north_select(inputs, torch.zeros(2, 4), None, -1, torch.relu, torch.Generator())


# ----------------------------------------------------------------------------- growth mechanics
