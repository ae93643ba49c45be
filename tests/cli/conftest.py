"""The command-line suite: a time limit on every case (pytest-timeout is not a dependency)."""

import signal

import pytest

CASE_TIMEOUT_S = 300  # generous: the 2-core machine is shared; a hang is what this catches, not slowness


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
