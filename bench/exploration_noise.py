"""What exploration noise costs a schedule: the tuned cell played with Gaussian action noise, affine vs log map.

The cell's schedule (``--cell``, its allocation rule tilted as in a task run) is played on a task's first train
network with i.i.d. Gaussian noise of standard deviation sigma added to every layer's action at every decision,
as PPO's exploration does; printed is the final validation accuracy per (action map, sigma), mean over seeds.
Both maps ask for the same densities without noise, so the sigma = 0 rows agree.

    python bench/exploration_noise.py [--task mnist1d_cnn] [--target 0.03] [--cell cubic@0.75+lamp]
        [--sigmas 0 0.05 0.135] [--seeds 2] [--workers 2]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor

import numpy as np


def noisy_episode(task: str, target: float, cell: str, scale: str, sigma: float, seed: int) -> float:
    """Final validation accuracy of ``cell`` with action noise ``sigma`` under action map ``scale``."""
    import torch

    from baselines.handcrafted import parse_cell
    from baselines.schedules import SCHEDULES
    from sparsity_gym.env.sparsity_env import SparsityEnv
    from sparsity_gym.env.tasks import task_config

    torch.set_num_threads(1)
    shape, end, allocation = parse_cell(cell)
    rule = {"allocation": allocation, "allocation_tilt": True} if allocation else {}
    low = 0.02 if scale == "linear" else 0.001
    env = SparsityEnv(
        task_config(task, target_density=target, action_scale=scale, min_density=low, observations=(), **rule)
    )
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    window = {} if end is None else {"p_end": end}
    n, decision, done, info = env.action_space.shape[0], 0, False, {}
    while not done:
        progress = decision * env.config.decision_interval / env.config.total_iterations
        density = SCHEDULES[shape](progress, target, **window)
        action = env.density_to_action(np.full(n, density)) + sigma * rng.standard_normal(n)
        _, _, terminated, truncated, info = env.step(np.clip(action, -1, 1).astype(np.float32))
        done, decision = terminated or truncated, decision + 1
    return float(info["val_accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mnist1d_cnn")
    parser.add_argument("--target", type=float, default=0.03)
    parser.add_argument("--cell", default="cubic@0.75+lamp")
    parser.add_argument("--sigmas", type=float, nargs="*", default=[0.0, 0.05, 0.135])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    keys = [(scale, sigma, seed) for scale in ("linear", "log") for sigma in args.sigmas for seed in range(args.seeds)]
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(noisy_episode, args.task, args.target, args.cell, *key) for key in keys]
        scores = [f.result() for f in futures]
    by = defaultdict(list)
    for (scale, sigma, _), score in zip(keys, scores, strict=True):
        by[(scale, sigma)].append(score)
    print(f"{args.task}, target {args.target}, {args.cell}, {args.seeds} seeds: final validation accuracy (%)")
    for (scale, sigma), values in by.items():
        each = ", ".join(f"{100 * v:.1f}" for v in values)
        print(f"{scale:6s} sigma {sigma:5.3f}: {100 * np.mean(values):6.2f}  ({each})")


if __name__ == "__main__":
    main()
