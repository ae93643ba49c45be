"""Wall time of the default comparison grid run sequentially (one thread) and in the persistent process pool.

The grid: ``agents.reports.comparison.comparison_jobs`` of the default ``TrainConfig`` (every baseline on every held-out
network of the ``mlp`` family, at every comparison target and selector, ``--seeds`` seeds; the learned policy
left out, as there is no model) with ``--iterations`` iterations per episode (10 decisions, as by default).
The sequential run uses one torch thread in this process; the process backend ``--workers`` workers of one
thread each from the shared pool (``sparsity_gym.experiments.pool``). The pool is timed twice: *cold* (its
first grid pays the workers' start-up: interpreters, ``import torch``) and *warm* (a later grid of the same
run: in ``train_agent.py`` the prior's scoring warms it before the comparison). The results are checked to be
the same episodes. Shared machines are noisy; the load average is printed beside the ratios.

    python bench/eval_grid.py [--seeds 3] [--iterations 400] [--workers 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch

from agents.reports.comparison import comparison_jobs
from agents.run.train import split_labeller
from agents.settings.train_config import TrainConfig
from sparsity_gym.experiments.families import get_family
from sparsity_gym.experiments.grid import run_grid
from sparsity_gym.experiments.pool import shutdown_shared_pool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = TrainConfig(eval_seeds=args.seeds)
    env = base.env.replace(total_iterations=args.iterations, decision_interval=args.iterations // 10)
    cfg = dataclasses.replace(base, env=env)
    family = get_family(cfg.family)
    jobs = comparison_jobs(cfg, family.heldout, split_labeller(family), None)
    episodes = sum(job.episodes for job in jobs)
    load = os.getloadavg()[0]

    times, results = {}, {}
    for name, backend in (("sequential", "sequential"), ("pool, cold", "process"), ("pool, warm", "process")):
        start = time.perf_counter()
        results[name] = run_grid(jobs, backend=backend, workers=args.workers, threads_per_worker=1, progress=False)
        times[name] = time.perf_counter() - start
    shutdown_shared_pool()

    def comparable(rows: list) -> list[dict]:
        return [{k: v for k, v in dataclasses.asdict(r).items() if k != "wall_time_s"} for r in rows]

    same = all(comparable(results[k]) == comparable(results["sequential"]) for k in results)
    print(f"default comparison grid: {len(jobs)} jobs, {episodes} episodes of {args.iterations} iterations")
    print(f"load average before / after: {load:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for name, seconds in times.items():
        print(f"{name:11s}: {seconds:7.1f} s   x{times['sequential'] / seconds:.2f} the sequential one-thread run")
    print(f"same episodes: {same}")


if __name__ == "__main__":
    main()
