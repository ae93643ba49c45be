"""Wall time of an evaluation grid run sequentially and with the process backend, and the speedup ratio.

The grid: the handcrafted schedules (``baselines.available_policies("schedule")``) × ``--seeds`` seeds on the
default task (mlp on digits) with ``--iterations`` iterations. Both backends run the same jobs in this process,
one after the other (sequential first, with torch's default threads or ``--sequential-threads``, then
``--workers`` spawned processes of cores // workers torch threads each);
the results are checked to be the same episodes. Pool start-up (spawning interpreters, importing torch) is
included in the process time, as a user pays it. Shared machines are noisy: run it on an idle one for figures.
On a busy machine torch's multi-threaded kernels lose far more than one thread does (threads spin waiting for
cores), which inflates the ratio; ``--sequential-threads 1`` isolates the gain from the parallel processes.

    python bench/eval_grid.py [--seeds 2] [--iterations 200] [--interval 20] [--workers 2] [--sequential-threads N]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import time

import torch

import baselines
from sparsity_gym.experiments.grid import make_grid, run_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--interval", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--sequential-threads", type=int, default=None, help="torch threads of the sequential run (default: torch's)"
    )
    args = parser.parse_args()
    if args.sequential_threads is not None:
        torch.set_num_threads(args.sequential_threads)
    schedules = baselines.available_policies("schedule")
    policies = {name: functools.partial(baselines.make_policy, name) for name in schedules}
    config = {"total_iterations": args.iterations, "decision_interval": args.interval}
    jobs = make_grid(policies, {"mlp (digits)": config}, seeds=range(args.seeds))

    times, results = {}, {}
    for backend, workers in (("sequential", None), ("process", args.workers)):
        start = time.perf_counter()
        results[backend] = run_grid(jobs, backend=backend, workers=workers, progress=False)
        times[backend] = time.perf_counter() - start

    def comparable(rows: list) -> list[dict]:
        return [{k: v for k, v in dataclasses.asdict(r).items() if k != "wall_time_s"} for r in rows]

    same = comparable(results["sequential"]) == comparable(results["process"])
    n = len(jobs)
    print(f"grid: {len(schedules)} schedules x {args.seeds} seeds = {n} episodes of {args.iterations} iterations")
    print(f"sequential: {times['sequential']:.2f} s  (torch threads in this process: {torch.get_num_threads()})")
    print(f"process   : {times['process']:.2f} s  ({args.workers} workers, pool start-up included)")
    print(f"speedup   : x{times['sequential'] / times['process']:.2f}   same episodes: {same}")


if __name__ == "__main__":
    main()
