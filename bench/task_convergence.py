"""Has the dense network of each benchmark task converged? Validation accuracy at T and at 2T iterations.

For every task (``sparsity_gym.env.tasks.TASKS``) the dense network (no pruning: ``target_density=None`` and
the constant schedule at density 1) of the task's first train network is trained for the task's
``total_iterations`` T and for 2T, with the decision interval scaled along, on ``--seeds`` seeds (0, 1, ...).
A task's training length is long enough when the mean validation accuracy at T is within a point of 2T's::

    .venv/bin/python bench/task_convergence.py                     # every task whose dataset is registered
    .venv/bin/python bench/task_convergence.py --tasks mnist1d_mlp --seeds 3 --workers 1
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import time

import numpy as np

from baselines.fixed_policies import make_schedule_policy
from sparsity_gym.datasets import available_datasets
from sparsity_gym.env.tasks import available_tasks, get_task
from sparsity_gym.experiments.grid import GridJob, run_grid


def main() -> None:
    """Parse the flags, run dense episodes at T and 2T, print one line per task."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", default=list(available_tasks()))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    dense = functools.partial(make_schedule_policy, name="constant")
    jobs = []
    tasks = [t for t in args.tasks if get_task(t).dataset in available_datasets()]
    for name in tasks:
        task = get_task(name)
        for factor in (1, 2):
            config = {
                **dataclasses.replace(task, budget="layer").env_kwargs(),  # dense: no budget to project onto
                "target_density": None,
                "total_iterations": factor * task.total_iterations,
                "decision_interval": factor * task.decision_interval,
                "observations": (),  # statistics do not change training; leaving them out saves time
            }
            jobs.append(GridJob(f"dense@{factor}T", dense, config, seeds=range(args.seeds), network=name))
    start = time.perf_counter()
    results = run_grid(jobs, "process", args.workers, threads_per_worker=1, progress=True)
    wall = time.perf_counter() - start
    print(f"\ndense validation accuracy (%), mean ± std over seeds 0-{args.seeds - 1} ({wall:.0f} s)")
    print("| task | network | T | val at T | val at 2T | 2T − T | converged (within 1 point) |")
    print("|---|---|---|---|---|---|---|")
    for name in tasks:
        task = get_task(name)
        at = {
            f: np.array([100 * r.val_accuracy for r in results if r.network == name and r.policy == f"dense@{f}T"])
            for f in (1, 2)
        }
        gap = at[2].mean() - at[1].mean()
        print(
            f"| {name} | {task.train[0]} | {task.total_iterations} | {at[1].mean():.1f} ± {at[1].std(ddof=1):.1f} "
            f"| {at[2].mean():.1f} ± {at[2].std(ddof=1):.1f} | {gap:+.1f} | {'yes' if gap <= 1.0 else 'no'} |"
        )


if __name__ == "__main__":
    main()
