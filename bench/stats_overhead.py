"""Overhead of the observed statistic families, as ratios to the same env with none, in one run.

Episodes of the default task (mlp 64-256-256-10 on digits, 400 iterations, a decision every 40) with
``observations=()`` (the baseline), each family alone, and all four; configurations are interleaved round by
round and the medians compared. Then the Linear second-moment capture against a plain backward and against
``torch.func`` per-sample gradients (``bench/stats_kernels.py``).

    python bench/stats_overhead.py [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from env_overhead import env_episode as episode
from stats_kernels import kernel_times
from timing import interleaved_medians

from sparsity_gym.env.env_config import OBSERVATION_FAMILIES
from sparsity_gym.env.sparsity_env import SparsityEnv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    configs = {"none": (), **{f: (f,) for f in OBSERVATION_FAMILIES}, "all four": OBSERVATION_FAMILIES}
    envs = {name: SparsityEnv(observations=obs, device=args.device) for name, obs in configs.items()}
    medians = interleaved_medians({name: partial(episode, env) for name, env in envs.items()}, args.repeats)
    base = medians["none"]
    print(f"default task, device {args.device}, torch threads {torch.get_num_threads()}, median of {args.repeats}")
    print(f"stats_window = {envs['none'].config.stats_window} of {envs['none'].config.decision_interval} steps")
    for name, med in medians.items():
        print(f"observations={name:14s} {med:7.3f} s/episode   x{med / base:5.3f}")
    kernels = kernel_times(128, 200, 20, torch.device(args.device))
    plain, capture, vmapped = kernels.values()
    print(
        f"Linear second moment (δ²)ᵀ(x²): x{capture / plain:5.2f} a plain forward+backward, "
        f"x{capture / vmapped:5.3f} torch.func per-sample gradients (those: x{vmapped / plain:5.1f} plain)"
    )


if __name__ == "__main__":
    main()
