import pytest

FAST_ENV = {"dataset": "synthetic", "total_iterations": 40, "decision_interval": 10, "batch_size": 32}


@pytest.fixture
def fast_env_kwargs() -> dict:
    """A tiny env: synthetic data, 4 decisions of 10 steps."""
    return dict(FAST_ENV)
