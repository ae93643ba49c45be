"""A process pool that keeps its workers: interpreters started (and torch imported) once, for every grid after.

Starting a spawn-context worker costs an interpreter and ``import torch`` (seconds on a busy 2-core machine), as
much as a short grid saves. :class:`WorkerPool` keeps its processes; :func:`shared_pool` hands out one
module-level pool per ``(workers, threads)``, so the prior's scoring, the held-out evaluations and the comparison
of a training run reuse the same warm workers. It is shut down at interpreter exit, or earlier with
:func:`shutdown_shared_pool`; a pool used as a context manager (``with WorkerPool(2, 1) as pool:``) is shut down
when the block ends. A pool whose worker died (``BrokenProcessPool``) is replaced on the next request.

Workers are started with ``spawn`` (fresh interpreters: no inherited torch threads or locks), and each sets its
torch intra-op threads once, when it starts.

**Nothing outlives its owner.** A pool is shut down when the process that made it exits normally or through an
exception or Ctrl-C (``atexit``: :func:`shutdown_pools` stops every pool still running); :func:`shutdown_pools`
also serves a test session's teardown. When the owner dies without running its exit handlers (``SIGKILL``,
``SIGTERM``'s default action, a crash), each worker exits by itself: its initializer starts a daemon thread
that waits on the parent's sentinel (``multiprocessing.parent_process().sentinel``, readable once the parent
is gone; or polls ``os.getppid()`` where there is none) and ends the worker with ``os._exit``, even in the
middle of a job. With its last user gone, multiprocessing's resource tracker exits too.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from sparsity_gym.core.checks import check_number

ORPHAN_EXIT_STATUS = 70
"""Exit status of a worker that ended itself because its parent died."""


def set_threads(threads: int) -> None:
    """Limit torch to ``threads`` intra-op threads in this process (Ray's task body sets it per task)."""
    import torch

    torch.set_num_threads(threads)


def exit_with_parent(poll_s: float = 1.0) -> threading.Thread | None:
    """End this process (``os._exit``) as soon as its parent process dies; the watcher thread (daemon).

    Waits on ``multiprocessing.parent_process().sentinel`` (a spawned or forked multiprocessing child), else polls
    ``os.getppid()`` every ``poll_s`` seconds for a change of parent (re-parented: the parent is gone). ``None``
    in a process with no parent to watch.
    """
    parent = multiprocessing.parent_process()
    sentinel = getattr(parent, "sentinel", None)
    first = os.getppid()
    if sentinel is None and first <= 1:
        return None

    def watch() -> None:
        if sentinel is not None:
            multiprocessing.connection.wait([sentinel])
        else:
            while os.getppid() == first:
                time.sleep(poll_s)
        os._exit(ORPHAN_EXIT_STATUS)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread


def start_worker(threads: int) -> None:
    """A pool worker's initializer: ``threads`` torch threads, and exit when the parent dies."""
    exit_with_parent()
    set_threads(threads)


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
            initializer=start_worker,
            initargs=(self.threads,),
        )
        _LIVE.add(self)
        _register_exit()

    @property
    def broken(self) -> bool:
        """Whether a worker died and the pool can take no more work."""
        return bool(getattr(self._executor, "_broken", False))

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` in a worker; its future."""
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self) -> None:
        """Stop the workers (waits for running work; queued work is cancelled). Calling it again does nothing."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        _LIVE.discard(self)

    def pids(self) -> tuple[int, ...]:
        """Process ids of the workers started so far (they start on demand, up to ``workers``)."""
        processes = getattr(self._executor, "_processes", None) or {}
        return tuple(sorted(int(pid) for pid in processes))

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


_SHARED: WorkerPool | None = None
_LIVE: weakref.WeakSet[WorkerPool] = weakref.WeakSet()
_EXIT_REGISTERED: list[bool] = []


def shared_pool(workers: int, threads: int = 1) -> WorkerPool:
    """The module's persistent pool of ``workers`` × ``threads`` (started on first use, replaced if it differs)."""
    global _SHARED
    if _SHARED is not None and (_SHARED.workers, _SHARED.threads) == (workers, threads) and not _SHARED.broken:
        return _SHARED
    shutdown_shared_pool()
    _SHARED = WorkerPool(workers, threads)
    return _SHARED


def shutdown_shared_pool() -> None:
    """Stop the shared pool if one runs."""
    global _SHARED
    if _SHARED is not None:
        pool, _SHARED = _SHARED, None
        pool.shutdown()


def live_pools() -> tuple[WorkerPool, ...]:
    """Every pool of this process not shut down yet (the shared one included)."""
    return tuple(_LIVE)


def shutdown_pools() -> None:
    """Stop every pool this process started and has not shut down (run at interpreter exit, and by tests)."""
    shutdown_shared_pool()
    for pool in live_pools():
        pool.shutdown()


def _register_exit() -> None:
    """Register :func:`shutdown_pools` at interpreter exit, once (when the first pool starts)."""
    if not _EXIT_REGISTERED:
        _EXIT_REGISTERED.append(True)
        atexit.register(shutdown_pools)
