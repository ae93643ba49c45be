"""The clients suite: tiny envs, and a time limit on every case (pytest-timeout is not a dependency)."""

import signal

import pytest

TINY = {
    "dataset": "synthetic",
    "network_kwargs": {"widths": (16, 12)},
    "total_iterations": 8,
    "decision_interval": 2,
    "batch_size": 16,
    "observations": (),
}
CASE_TIMEOUT_S = 240  # generous: the 2-core machine is shared; a hang is what this catches, not slowness


@pytest.fixture(autouse=True)
def time_limit():
    """Fail a case that runs past CASE_TIMEOUT_S (SIGALRM in the main thread) instead of hanging the suite."""

    def expired(signum, frame):
        raise TimeoutError(f"test case ran past {CASE_TIMEOUT_S} s (a hang?)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(CASE_TIMEOUT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def tiny() -> dict:
    """A tiny env's settings: synthetic data, a 16-12 MLP, 4 decisions of 2 steps, no statistics."""
    return dict(TINY)
