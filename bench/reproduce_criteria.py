"""Reproduce the shape of each criterion paper's claim on the embedded default, against dense training.

Runs dense training and every registered criterion method (``baselines.available_policies("criterion")``)
for several seeds on the default network and data, each in the env settings the method needs, and prints a
Markdown table: test accuracy, final density, frozen fraction, inference FLOPs and backward FLOPs (with the
share saved against dense). Backward FLOPs follow the env's convention: 2/3 of the training FLOPs of a step,
minus the weight-gradient FLOPs of frozen neurons.

    python bench/reproduce_criteria.py [--seeds 3] [--iterations 400] [--only dense snr] [--out table.md]

Per-method settings beyond ``baselines.env_kwargs`` are in ``SETTINGS`` (SNR pruning updates its masks
every 10 steps, close to DPF's tuned 16; the others decide every 40).
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import numpy as np

from baselines import available_policies, env_kwargs, make_policy
from sparsity_gym.core.io import atomic_write_text
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.experiments.evaluation import run_episode

CLAIMS = {
    "neq": "seed 004: −39% backward FLOPs on ResNet-32 / CIFAR-10, +0.11 points",
    "snr": "seed 001: sparsity 0.71 on MNIST, on par with dense",
    "contribution": "seed 002: about 40% of neurons removed without loss",
    "dyno": "seed 000: widths change both ways, fewer inference FLOPs",
}


SETTINGS: dict[str, dict[str, Any]] = {"snr": {"decision_interval": 10}}


class DensePolicy:
    """Every layer at density 1 (``max_density``) at every decision."""

    def __init__(self, env: SparsityEnv) -> None:
        self.action = np.ones(env.action_space.shape, dtype=np.float32)

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True):
        """Density 1 everywhere."""
        return self.action, state


def run(name: str, seeds: list[int], iterations: int) -> dict[str, Any]:
    kwargs = {"target_density": None} if name == "dense" else env_kwargs(name)
    env = SparsityEnv(total_iterations=iterations, **{**kwargs, **SETTINGS.get(name, {})})
    policy = DensePolicy(env) if name == "dense" else make_policy(name, env)
    rows = []
    units = np.array([m.num_units for m in env.masks.layers])
    for seed in seeds:
        info, _, schedule = run_episode(env, policy, seed)
        widths = np.rint(np.array(schedule) * units)  # (decisions, layers) active units
        start = np.rint(units / env.config.capacity)
        backward = 2 * (info["training_flops"] + info["saved_backward_flops"]) / 3 - info["saved_backward_flops"]
        rows.append(
            {
                "acc": 100 * info["test_accuracy"],
                "density": info["density"],
                "frozen": info["frozen_fraction"],
                "flops": info["flops"],
                "backward": backward,
                "grew": bool((widths > start).any()),
                "shrank": bool((widths < start).any()),
                "widths": (
                    "/".join(f"{int(a)}" for a in start) + " to " + "/".join(f"{int(w)}" for w in widths[-1])
                    if env.config.granularity == "neuron"
                    else "weights"
                ),
            }
        )
    env.close()
    return {k: [r[k] for r in rows] for k in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--out", default=None, help="also write the table to this Markdown file")
    parser.add_argument("--only", nargs="+", default=None, help="methods to run (dense always runs)")
    args = parser.parse_args()
    seeds = list(range(100, 100 + args.seeds))
    methods = ["dense", *(m for m in available_policies("criterion") if args.only is None or m in args.only)]
    results = {m: run(m, seeds, args.iterations) for m in methods}
    dense = results["dense"]
    lines = [
        f"Default task (mlp 64-256-256-10 on digits, {args.iterations} iterations), seeds {seeds}; mean ± std.",
        "",
        "| method | test acc. (%) | Δ vs dense (points) | final density | frozen fraction (end) | "
        "inference kFLOPs | backward GFLOPs | backward saved vs dense | hidden widths (start to end, "
        "first seed; seeds that grew / shrank a layer) | paper's claim |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, r in results.items():
        acc, sd = statistics.mean(r["acc"]), statistics.stdev(r["acc"]) if len(seeds) > 1 else 0.0
        saved = 1 - statistics.mean(r["backward"]) / statistics.mean(dense["backward"])
        lines.append(
            f"| {m} | {acc:.2f} ± {sd:.2f} | {acc - statistics.mean(dense['acc']):+.2f} | "
            f"{statistics.mean(r['density']):.3f} | {statistics.mean(r['frozen']):.3f} | "
            f"{statistics.mean(r['flops']) / 1e3:.1f} | {statistics.mean(r['backward']) / 1e9:.2f} | "
            f"{100 * saved:.1f}% | {r['widths'][0]} ({sum(r['grew'])} / {sum(r['shrank'])}) | "
            f"{CLAIMS.get(m, '')} |"
        )
    missing = [m for m in CLAIMS if m not in available_policies("criterion")]
    if missing:
        lines += ["", f"Not yet implemented as policies: {', '.join(missing)}."]
    table = "\n".join(lines)
    print(table)
    if args.out:
        atomic_write_text(args.out, table + "\n")


if __name__ == "__main__":
    main()
