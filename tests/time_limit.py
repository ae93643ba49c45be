"""A time limit on every case of a suite (pytest-timeout is not a dependency): ``time_limit = case_time_limit(s)``."""

import signal

import pytest


def case_time_limit(seconds: int):
    """An autouse fixture that fails a case running past ``seconds`` (SIGALRM in the main thread), not a hang.

    Assign it in a suite's ``conftest.py``: ``time_limit = case_time_limit(300)``.
    """

    @pytest.fixture(autouse=True)
    def time_limit():
        def expired(signum, frame):
            raise TimeoutError(f"test case ran past {seconds} s (a hang?)")

        previous = signal.signal(signal.SIGALRM, expired)
        signal.alarm(seconds)
        yield
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

    return time_limit
