"""Reproduce the shape of each criterion paper's claim on the embedded default, against dense training.

Runs dense training and every registered criterion method (``baselines.available_policies("criterion")``)
for several seeds on the default network and data, each in the env settings the method needs, and prints a
Markdown table: test accuracy, final density, frozen fraction, inference FLOPs and backward FLOPs (with the
share saved against dense). Backward FLOPs follow the env's convention: 2/3 of the training FLOPs of a step,
minus the weight-gradient FLOPs of frozen neurons.

    python bench/reproduce_criteria.py [--seeds 3] [--iterations 400] [--out reproduce_criteria.md]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import numpy as np

from baselines import available_policies, env_kwargs, make_policy
from sparsity_gym.env import SparsityEnv
from sparsity_gym.evaluation import run_episode
from sparsity_gym.io import atomic_write_text

CLAIMS = {
    "neq": "seed 004: −39% backward FLOPs on ResNet-32 / CIFAR-10, +0.11 points",
    "snr": "seed 001: sparsity 0.71 on MNIST, on par with dense",
    "contribution": "seed 002: about 40% of neurons removed without loss",
    "dyno": "seed 000: widths change both ways, fewer inference FLOPs",
}


class DensePolicy:
    """Every layer at density 1 (``max_density``) at every decision."""

    def __init__(self, env: SparsityEnv) -> None:
        self.action = np.ones(env.action_space.shape, dtype=np.float32)

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True):
        """Density 1 everywhere."""
        return self.action, state


def run(name: str, seeds: list[int], iterations: int) -> dict[str, Any]:
    kwargs = {"target_density": None} if name == "dense" else env_kwargs(name)
    env = SparsityEnv(total_iterations=iterations, **kwargs)
    policy = DensePolicy(env) if name == "dense" else make_policy(name, env)
    rows = []
    for seed in seeds:
        info, _, _ = run_episode(env, policy, seed)
        backward = 2 * (info["training_flops"] + info["saved_backward_flops"]) / 3 - info["saved_backward_flops"]
        rows.append(
            {
                "acc": 100 * info["test_accuracy"],
                "density": info["density"],
                "frozen": info["frozen_fraction"],
                "flops": info["flops"],
                "backward": backward,
            }
        )
    env.close()
    return {k: [r[k] for r in rows] for k in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--out", default=None, help="also write the table to this Markdown file")
    args = parser.parse_args()
    seeds = list(range(100, 100 + args.seeds))
    methods = ["dense", *available_policies("criterion")]
    results = {m: run(m, seeds, args.iterations) for m in methods}
    dense = results["dense"]
    lines = [
        f"Default task (mlp 64-256-256-10 on digits, {args.iterations} iterations), seeds {seeds}; mean ± std.",
        "",
        "| method | test acc. (%) | Δ vs dense (points) | final density | frozen fraction (end) | "
        "inference kFLOPs | backward GFLOPs | backward saved vs dense | paper's claim |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m, r in results.items():
        acc, sd = statistics.mean(r["acc"]), statistics.stdev(r["acc"]) if len(seeds) > 1 else 0.0
        saved = 1 - statistics.mean(r["backward"]) / statistics.mean(dense["backward"])
        lines.append(
            f"| {m} | {acc:.2f} ± {sd:.2f} | {acc - statistics.mean(dense['acc']):+.2f} | "
            f"{statistics.mean(r['density']):.3f} | {statistics.mean(r['frozen']):.3f} | "
            f"{statistics.mean(r['flops']) / 1e3:.1f} | {statistics.mean(r['backward']) / 1e9:.2f} | "
            f"{100 * saved:.1f}% | "
            f"{CLAIMS.get(m, '')} |"
        )
    missing = [m for m in CLAIMS if m not in methods]
    if missing:
        lines += ["", f"Not yet implemented as policies: {', '.join(missing)}."]
    table = "\n".join(lines)
    print(table)
    if args.out:
        atomic_write_text(args.out, table + "\n")


if __name__ == "__main__":
    main()
