"""The batched bisection is the scalar one, row by row."""

import numpy as np

from sparsity_gym.pruning.projection import bisect_level, bisect_levels


def test_bisect_levels_equals_bisect_level_on_every_row():
    rng = np.random.default_rng(0)
    weights = rng.uniform(0.0, 1.0, (64, 7))
    base = rng.uniform(1e-3, 1.0, (64, 7))
    budget = rng.uniform(0.0, 1.5, 64) * weights.sum(-1)  # some rows above the cap: they return high
    high = 1.0 / base.min(-1)

    def cost(level: np.ndarray) -> np.ndarray:
        return (weights * np.clip(level[:, None] * base, 0.0, 1.0)).sum(-1)

    batched = bisect_levels(cost, budget, high)
    for i in range(len(budget)):
        scalar = bisect_level(
            lambda s, i=i: float((weights[i] * np.clip(s * base[i], 0.0, 1.0)).sum()), budget[i], high[i]
        )
        assert batched[i] == scalar  # the same midpoints, the same stop: equal, not close
    assert (batched == high).any() and (batched < high).any()
