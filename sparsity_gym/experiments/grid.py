"""Run a grid of evaluations (policy × network / env config × seed) in parallel: processes on one machine, or Ray.

A :class:`GridJob` is one call of :func:`sparsity_gym.experiments.evaluation.evaluate`: a policy factory, a complete env
config and one or a few seeds. :func:`make_grid` builds the product grid; :func:`run_grid` runs the jobs

- ``sequential``: in this process, one after the other;
- ``process``: in a pool of ``workers`` processes started with ``spawn`` (fresh interpreters: no inherited
  torch threads or state), each limited to ``threads_per_worker`` torch threads; the pool is kept for the
  next grid (:mod:`sparsity_gym.experiments.pool`: workers pay their start-up once), or pass your own;
- ``ray``: as Ray tasks of ``threads_per_worker`` CPUs each (``pip install -e ".[ray]"``; an existing
  ``ray.init`` connection is used, else a local one with ``workers`` CPUs is started and shut down after).

and returns every :class:`~sparsity_gym.experiments.evaluation.EpisodeResult`
in job order, then seed order. An episode is a
function of its config and seed (the env seeds the initialisation and the data order at ``reset``), so every
backend returns the same results as ``sequential`` (wall times aside), given the same number of torch threads:
with several threads torch's CPU kernels may split large reductions differently and round differently.

Jobs cross process boundaries by pickling: the policy factory must be importable by name (a top-level function
or a ``functools.partial`` of one, e.g. ``functools.partial(baselines.make_policy, "linear")``), and so must a
callable ``network``. A criterion method needs its env settings in the config (``baselines.env_kwargs(name)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from numbers import Integral
from types import ModuleType
from typing import Any

from sparsity_gym.core.checks import check_choice, check_number
from sparsity_gym.core.threads import usable_cores
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.experiments.evaluation import EpisodeResult, Policy, evaluate
from sparsity_gym.experiments.pool import WorkerPool, set_threads, shared_pool

BACKENDS = ("sequential", "process", "ray")

PolicyFactory = Callable[[SparsityEnv], Policy]
OnResult = Callable[[int, list[EpisodeResult]], None]


@dataclass(frozen=True)
class GridJob:
    """One evaluation: ``policy_factory(env)`` played for each of ``seeds`` in a fresh env built from ``config``.

    Attributes:
        policy_name: Name of the policy in the results.
        policy_factory: ``env -> policy`` (anything with SB3's ``predict``), picklable for the parallel backends.
        config: The env config (an ``EnvConfig``, or its keyword arguments, validated once here); stored as the
            ``EnvConfig`` itself, which pickles.
        seeds: Evaluation seeds (an int or several); stored as a tuple.
        split: The network split the results belong to (``train`` or a held-out split name).
        network: Network label in the results (default: the config's network name).

    """

    policy_name: str
    policy_factory: PolicyFactory
    config: EnvConfig
    seeds: Sequence[int]
    split: str = "train"
    network: str | None = None

    def __post_init__(self) -> None:
        if not callable(self.policy_factory):
            raise ValueError(
                f"policy_factory={self.policy_factory!r} is not allowed; expected a callable env -> policy"
            )
        raw: tuple[Any, ...] = (self.seeds,) if isinstance(self.seeds, Integral) else tuple(self.seeds)
        seeds = tuple(int(s) if isinstance(s, Integral) and not isinstance(s, bool) else s for s in raw)
        if not seeds:
            raise ValueError("seeds=() is not allowed; expected at least one seed")
        for seed in seeds:
            check_number("seeds", seed, low=0, integer=True)
        object.__setattr__(self, "seeds", seeds)
        if not isinstance(self.config, EnvConfig):
            object.__setattr__(self, "config", EnvConfig(**self.config))

    @property
    def episodes(self) -> int:
        """Episodes this job plays (one per seed)."""
        return len(self.seeds)


def make_grid(
    policies: Mapping[str, PolicyFactory],
    configs: Mapping[str, EnvConfig | Mapping[str, Any]],
    seeds: Iterable[int],
    split: str = "train",
) -> list[GridJob]:
    """Every policy × every named config × every seed, one job each (policy-major, then config, then seed)."""
    seed_list = list(seeds)
    return [
        GridJob(name, factory, config if isinstance(config, EnvConfig) else EnvConfig(**config), (seed,), split, label)
        for name, factory in policies.items()
        for label, config in configs.items()
        for seed in seed_list
    ]


def run_job(job: GridJob, progress_bar: Any = None) -> list[EpisodeResult]:
    """Play one job in this process (``progress_bar``, e.g. a tqdm, advanced once per episode)."""
    return evaluate(
        job.policy_factory, job.config, job.seeds, job.policy_name, job.split, job.network, progress_bar=progress_bar
    )


def _run_job_with_threads(job: GridJob, threads: int) -> list[EpisodeResult]:
    """:func:`run_job` with torch limited to ``threads`` intra-op threads (Ray's task body)."""
    set_threads(threads)
    return run_job(job)


def run_grid(
    jobs: Sequence[GridJob],
    backend: str = "sequential",
    workers: int | None = None,
    threads_per_worker: int | None = None,
    progress: bool = True,
    on_result: OnResult | None = None,
    pool: WorkerPool | None = None,
) -> list[EpisodeResult]:
    """Run ``jobs`` on ``backend``; every episode's result, in job order (then seed order within a job).

    Args:
        jobs: The jobs (e.g. from :func:`make_grid`).
        backend: ``sequential``, ``process`` or ``ray`` (see the module docstring).
        workers: Parallel workers (processes; CPUs of a local Ray started here); default: the usable cores,
            at most one per job. Ignored by ``sequential``.
        threads_per_worker: Torch threads of each worker; default: cores // workers, at least 1. Ignored by
            ``sequential``, which keeps this process's setting.
        progress: Show a tqdm progress bar counting episodes.
        on_result: Called here as ``on_result(job_index, results)`` as each job finishes (in any order), e.g.
            to record it (:mod:`sparsity_gym.experiments.episode_log`).
        pool: The ``process`` backend's workers (default: the shared persistent pool of ``workers`` ×
            ``threads_per_worker``, :func:`sparsity_gym.experiments.pool.shared_pool`).

    Raises:
        ValueError: A bad ``backend``, ``workers`` or ``threads_per_worker``.
        ImportError: ``backend="ray"`` without Ray installed (``pip install -e ".[ray]"``).

    """
    check_choice("backend", backend, BACKENDS)
    if workers is not None:
        check_number("workers", workers, low=1, integer=True)
    if threads_per_worker is not None:
        check_number("threads_per_worker", threads_per_worker, low=1, integer=True)
    jobs = list(jobs)
    for i, job in enumerate(jobs):
        if not isinstance(job, GridJob):
            raise ValueError(f"jobs[{i}]={job!r} is not allowed; expected a GridJob")
    cores = usable_cores()
    n_workers = workers if workers is not None else max(1, min(cores, len(jobs)))
    threads = threads_per_worker if threads_per_worker is not None else max(1, cores // n_workers)

    from tqdm.auto import tqdm

    total = sum(job.episodes for job in jobs)
    with tqdm(total=total, desc=f"grid ({backend})", unit="episode", disable=not progress) as bar:
        report = on_result or (lambda index, results: None)
        if backend == "sequential":
            per_job = []
            for index, job in enumerate(jobs):
                per_job.append(run_job(job, progress_bar=bar))
                report(index, per_job[-1])
        elif backend == "process":
            if jobs and pool is None:
                pool = shared_pool(n_workers, threads)
            per_job = _run_processes(jobs, pool, bar, report)
        else:
            per_job = _run_ray(jobs, workers, threads, bar, report)
    return [result for results in per_job for result in results]


def _run_processes(jobs: list[GridJob], pool: Any, bar: Any, report: OnResult) -> list[list[EpisodeResult]]:
    """The jobs in the worker pool; results in job order, the bar advanced and ``report`` called as jobs finish."""
    if not jobs:
        return []
    futures = [pool.submit(run_job, job) for job in jobs]
    index: dict[Future, int] = {f: i for i, f in enumerate(futures)}
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=index.__getitem__):
                results = future.result()  # a failed job fails the grid at once
                bar.update(jobs[index[future]].episodes)
                report(index[future], results)
    finally:
        for future in pending:
            future.cancel()
    return [f.result() for f in futures]


def import_ray() -> ModuleType:
    """``import ray``, or an ``ImportError`` telling how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            'backend="ray" needs Ray, which is not installed; install the extra: pip install -e ".[ray]"'
        ) from exc
    return ray


def _run_ray(
    jobs: list[GridJob], workers: int | None, threads: int, bar: Any, report: OnResult
) -> list[list[EpisodeResult]]:
    """The jobs as Ray tasks of ``threads`` CPUs; a local Ray is started (and stopped) unless one is running."""
    ray = import_ray()
    if not jobs:
        return []
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=threads)(_run_job_with_threads)
        refs = [task.remote(job, threads) for job in jobs]
        index = {ref: i for i, ref in enumerate(refs)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                bar.update(jobs[index[ref]].episodes)
                report(index[ref], ray.get(ref))
        return ray.get(refs)
    finally:
        if started:
            ray.shutdown()
