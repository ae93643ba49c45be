"""The persistent worker pool keeps its processes across calls."""

import os

from sparsity_gym.experiments.pool import WorkerPool, shared_pool, shutdown_shared_pool


def _pid_and_threads() -> tuple[int, int]:
    import torch

    return os.getpid(), torch.get_num_threads()


def test_shared_pool_keeps_its_workers_until_asked_for_another():
    try:
        pool = shared_pool(1, 1)
        first = pool.submit(_pid_and_threads).result()
        assert shared_pool(1, 1) is pool
        assert pool.submit(_pid_and_threads).result() == first  # the same warm worker, threads set once
        assert first[0] != os.getpid() and first[1] == 1
        assert shared_pool(1, 2) is not pool and pool.broken is False
    finally:
        shutdown_shared_pool()


def test_pool_as_context_manager_rejects_bad_sizes():
    import pytest

    with pytest.raises(ValueError, match=r"^workers=0"):
        WorkerPool(0)
    with WorkerPool(1, 1) as pool:
        assert pool.workers == 1
