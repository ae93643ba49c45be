"""Torch's thread pool in forked children: one intra-op thread, so a fork after torch ran cannot hang.

A child forked after the parent ran torch operations inherits the parent's OpenMP state but not its worker
threads; the child's first parallel torch operation then waits forever in an OpenMP barrier (GNU libgomp is
not fork-safe). This is what hangs Gymnasium's ``AsyncVectorEnv`` under its default ``fork`` context: it
builds one env in the parent (torch runs) before it forks the workers. PyTorch's own ``DataLoader`` workers
avoid it the same way, with one thread (``torch.set_num_threads(1)``): a single-thread parallel region runs
inline and never enters OpenMP.

``import sparsity_gym`` imports this module, which records the importing process; an environment built, reset
or stepped in any other process that inherited that record (a fork) calls :func:`limit_threads_if_forked`
before its first torch operation there. Spawned and forkserver children import afresh and are left alone
(forkserver children of a server that preloaded the package count as forks: one thread there too, which costs
nothing as their server ran no torch). Only this module touches the setting, and only once per process.
"""

from __future__ import annotations

import os

_HOME_PID = os.getpid()
_limited_pid: int | None = None


def is_forked_child() -> bool:
    """Whether this process was forked from the one that imported :mod:`sparsity_gym`."""
    return os.getpid() != _HOME_PID


def limit_threads_if_forked() -> bool:
    """In a forked child, set torch to one intra-op thread (once per process); return whether it did."""
    global _limited_pid
    if not is_forked_child() or _limited_pid == os.getpid():
        return False
    import torch  # only a process that builds an environment gets here, and it needs torch anyway

    _limited_pid = os.getpid()
    if torch.get_num_threads() > 1:
        torch.set_num_threads(1)
    return True


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one, else the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
