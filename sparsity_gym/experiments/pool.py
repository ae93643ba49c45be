"""A process pool that keeps its workers: interpreters started (and torch imported) once, for every grid after.

Starting a spawn-context worker costs an interpreter and ``import torch`` (seconds on a busy 2-core machine), as
much as a short grid saves. :class:`WorkerPool` keeps its processes; :func:`shared_pool` hands out one
module-level pool per ``(workers, threads)``, so the prior's scoring, the held-out evaluations and the comparison
of a training run reuse the same warm workers. It is shut down at interpreter exit, or earlier with
:func:`shutdown_shared_pool`; a pool used as a context manager (``with WorkerPool(2, 1) as pool:``) is shut down
when the block ends. A pool whose worker died (``BrokenProcessPool``) is replaced on the next request.

Workers are started with ``spawn`` (fresh interpreters: no inherited torch threads or locks), and each sets its
torch intra-op threads once, when it starts.
"""

from __future__ import annotations

import atexit
import multiprocessing
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from sparsity_gym.core.checks import check_number


def set_threads(threads: int) -> None:
    """Limit torch to ``threads`` intra-op threads in this process (a worker's initializer)."""
    import torch

    torch.set_num_threads(threads)


class WorkerPool:
    """``workers`` spawn-started processes of ``threads`` torch threads each, kept until :meth:`shutdown`.

    Raises:
        ValueError: ``workers`` or ``threads`` below 1.

    """

    def __init__(self, workers: int, threads: int = 1) -> None:
        check_number("workers", workers, low=1, integer=True)
        check_number("threads", threads, low=1, integer=True)
        self.workers, self.threads = int(workers), int(threads)
        self._executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=set_threads,
            initargs=(self.threads,),
        )

    @property
    def broken(self) -> bool:
        """Whether a worker died and the pool can take no more work."""
        return bool(getattr(self._executor, "_broken", False))

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` in a worker; its future."""
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self) -> None:
        """Stop the workers (waits for running work)."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


_SHARED: WorkerPool | None = None


def shared_pool(workers: int, threads: int = 1) -> WorkerPool:
    """The module's persistent pool of ``workers`` × ``threads`` (started on first use, replaced if it differs)."""
    global _SHARED
    if _SHARED is not None and (_SHARED.workers, _SHARED.threads) == (workers, threads) and not _SHARED.broken:
        return _SHARED
    shutdown_shared_pool()
    _SHARED = WorkerPool(workers, threads)
    return _SHARED


def shutdown_shared_pool() -> None:
    """Stop the shared pool if one runs (also called at interpreter exit)."""
    global _SHARED
    if _SHARED is not None:
        pool, _SHARED = _SHARED, None
        pool.shutdown()


atexit.register(shutdown_shared_pool)
