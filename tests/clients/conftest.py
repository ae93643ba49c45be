"""The clients suite: tiny envs, and a time limit on every case."""

import pytest
from time_limit import case_time_limit

TINY = {
    "dataset": "synthetic",
    "network_kwargs": {"widths": (16, 12)},
    "total_iterations": 8,
    "decision_interval": 2,
    "batch_size": 16,
    "observations": (),
}
CASE_TIMEOUT_S = 240  # generous: the 2-core machine is shared; a hang is what this catches, not slowness


time_limit = case_time_limit(CASE_TIMEOUT_S)


@pytest.fixture
def tiny() -> dict:
    """A tiny env's settings: synthetic data, a 16-12 MLP, 4 decisions of 2 steps, no statistics."""
    return dict(TINY)
