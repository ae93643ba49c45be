r"""The room table: how much a learned schedule could win per task and target, before anyone trains an agent.

For each task (``sparsity_gym.env.tasks``) and target density it prints the dense network's test accuracy, the
*tuned handcrafted* cell (best mean validation accuracy on the task's train networks, ``tuning`` seeds, cached in
``--run-dir``; :mod:`sparsity_gym.experiments.tuning`), the *oracle* (best cell per held-out network on its own
test results: an upper bound, not a baseline), the ceiling gap (dense − tuned), the std over seeds of the tuned
cell and the std of a paired difference (two cells on the same seed: the median over the grid's other cells of
the std of tuned − cell), all on the held-out networks (``benchmark`` seeds), and names the settings where the gap
is at least twice the paired std. Statistics are left out of the observation (``observations=()``: fixed schedules
only read the progress column, and statistics do not change training), which saves time::

    .venv/bin/python bench/room_table.py --workers 1 --shapes linear cubic constant --windows 0.5 0.9 \\
        --allocations uniform erk lamp --seeds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

import baselines
from baselines.fixed_policies import make_schedule_policy
from sparsity_gym.core.io import atomic_write_text
from sparsity_gym.datasets import available_datasets
from sparsity_gym.env.tasks import Task, available_tasks, get_task
from sparsity_gym.experiments.evaluation import EpisodeResult
from sparsity_gym.experiments.grid import GridJob, run_grid
from sparsity_gym.experiments.paired_intervals import oracle
from sparsity_gym.experiments.seeds import seed_start
from sparsity_gym.experiments.seeds import seeds as seed_range
from sparsity_gym.experiments.tuning import Cell, tune

FAST = {"observations": ()}


def grid_cells(shapes: list[str], windows: list[float], allocations: list[str | None]) -> list[Cell]:
    """The handcrafted grid as cells (``baselines.handcrafted_grid`` names; before budgets: shape@window only)."""
    if hasattr(baselines, "handcrafted_grid"):
        names = baselines.handcrafted_grid(shapes, windows, allocations)
        return [Cell(n, functools.partial(baselines.make_policy, n), baselines.env_kwargs(n)) for n in names]
    if allocations != [None]:
        raise ValueError(f"allocations={allocations!r} need the budgets branch; expected none without it")
    cells = []
    for shape in shapes:
        for window in [None] if shape == "constant" else windows:
            if window is None:
                cells.append(Cell(shape, functools.partial(make_schedule_policy, name=shape)))
            else:
                factory = functools.partial(make_schedule_policy, name=shape, p_end=window)
                cells.append(Cell(f"{shape}@{window:g}", factory))
    return cells


def _heldout_jobs(task: Task, cells: list[Cell], target: float, networks: list[str], seeds: list[int]) -> list[GridJob]:
    return [
        GridJob(
            cell.name,
            cell.factory,
            {**task.env_kwargs(net, target), **FAST, **dict(cell.env_kwargs)},
            seeds=seeds,
            split="heldout",
            network=f"{net}@{target:g}",
        )
        for cell in cells
        for net in networks
    ]


def _dense_jobs(task: Task, networks: list[str], seeds: list[int]) -> list[GridJob]:
    dense = functools.partial(make_schedule_policy, name="constant")
    layer = dataclasses.replace(task, budget="layer")  # dense: no budget to project onto
    return [
        GridJob("dense", dense, {**layer.env_kwargs(net), **FAST, "target_density": None}, seeds=seeds, network=net)
        for net in networks
    ]


def _by(results: list[EpisodeResult]) -> dict[tuple[str, str], dict[int, float]]:
    out: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for r in results:
        out[(r.policy, r.network)][r.seed] = 100 * r.test_accuracy
    return out


def _row(task: Task, target: float, tuned: str, cells: list[str], nets: list[str], acc: dict, dense: dict) -> dict:
    keys = [f"{n}@{target:g}" for n in nets]
    tuned_acc = [v for k in keys for v in acc[(tuned, k)].values()]
    dense_acc = [v for n in nets for v in dense[("dense", n)].values()]
    best = oracle(
        [
            EpisodeResult(c, k, "heldout", s, "", "", target, v / 100, 0, 0, 0, 0, 0, 0, False, 0)
            for c in cells
            for k in keys
            for s, v in acc[(c, k)].items()
        ],
        cells,
        None,
    )
    oracle_acc = [float(np.mean(list(acc[(cell, k)].values()))) for k, cell in best.items()]
    seed_sd = float(np.mean([np.std(list(acc[(tuned, k)].values()), ddof=1) for k in keys]))
    paired = []
    for other in (c for c in cells if c != tuned):
        per_net = []
        for k in keys:
            diffs = [acc[(tuned, k)][s] - acc[(other, k)][s] for s in acc[(tuned, k)]]
            per_net.append(np.std(diffs, ddof=1))
        paired.append(float(np.mean(per_net)))
    paired_sd = float(np.median(paired)) if paired else float("nan")
    gap = float(np.mean(dense_acc) - np.mean(tuned_acc))
    return {
        "task": task.name,
        "budget": task.budget,
        "target": target,
        "dense": float(np.mean(dense_acc)),
        "tuned": float(np.mean(tuned_acc)),
        "tuned_cell": tuned,
        "oracle": float(np.mean(oracle_acc)),
        "oracle_cells": ", ".join(sorted(set(best.values()))),
        "gap": gap,
        "seed_sd": seed_sd,
        "paired_sd": paired_sd,
        "room": gap >= 2 * paired_sd,
    }


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| task | budget | target | dense | tuned handcrafted (cell) | oracle† (cells) | gap dense − tuned "
        "| std over seeds | paired std | gap ≥ 2× paired std |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['budget']} | {r['target']:g} | {r['dense']:.2f} | {r['tuned']:.2f} "
            f"({r['tuned_cell']}) | {r['oracle']:.2f} ({r['oracle_cells']}) | {r['gap']:+.2f} | {r['seed_sd']:.2f} "
            f"| {r['paired_sd']:.2f} | {'**yes**' if r['room'] else 'no'} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Parse the flags, tune per task and target, run the grid on the held-out networks, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    registered = [t for t in available_tasks() if get_task(t).dataset in available_datasets()]
    parser.add_argument("--tasks", nargs="*", default=registered)
    parser.add_argument("--targets", nargs="*", type=float, default=None, help="default: each task's targets")
    parser.add_argument("--shapes", nargs="*", default=["linear", "quadratic", "cubic", "cosine", "constant"])
    parser.add_argument("--windows", nargs="*", type=float, default=[0.3, 0.5, 0.75, 0.9])
    parser.add_argument("--allocations", nargs="*", default=["uniform", "er", "erk", "lamp", "global_magnitude"])
    bench, tuning = seed_start("benchmark"), seed_start("tuning")
    parser.add_argument("--seeds", type=int, default=3, help=f"evaluation seeds per held-out network ({bench}+)")
    parser.add_argument("--tune-seeds", type=int, default=1, help=f"tuning seeds per train network ({tuning}+)")
    parser.add_argument("--train-networks", type=int, default=0, help="tune on the first N train networks (0: all)")
    parser.add_argument("--heldout-networks", type=int, default=0, help="the first N held-out networks (0: all)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker (1: no oversubscription)")
    parser.add_argument("--run-dir", default="runs/room_table")
    parser.add_argument(
        "--layer-budget", action="store_true", help="every task at a per-layer budget (uniform allocation only)"
    )
    args = parser.parse_args()

    start = time.perf_counter()
    seeds = list(seed_range("benchmark", args.seeds))
    tune_seeds = list(seed_range("tuning", args.tune_seeds))
    rows = []
    for name in args.tasks:
        task = get_task(name)
        if args.layer_budget:
            task = dataclasses.replace(task, budget="layer")
        if args.train_networks:
            task = dataclasses.replace(task, train=task.train[: args.train_networks])
        nets = list(task.heldout[: args.heldout_networks or None])
        allocations = args.allocations if task.budget != "layer" else [None]  # the schedule's own: today's cells
        cells = grid_cells(args.shapes, args.windows, allocations)
        targets = args.targets or list(task.targets)
        names = [c.name for c in cells]
        dense = _by(run_grid(_dense_jobs(task, nets, seeds), "process", args.workers, args.threads))
        for t in targets:  # one target at a time: an interrupted run has printed its finished rows
            run_dir = Path(args.run_dir) / name
            table = tune(task, cells, t, run_dir, tune_seeds, FAST, "process", args.workers, True, args.threads)
            acc = _by(run_grid(_heldout_jobs(task, cells, t, nets, seeds), "process", args.workers, args.threads))
            rows.append(_row(task, t, table.best, names, nets, acc, dense))
            print(_markdown(rows), f"\n({time.perf_counter() - start:.0f} s so far)", flush=True)
    wall = time.perf_counter() - start
    grid = (
        f"shapes {args.shapes} × windows {args.windows} × allocations {args.allocations} (none under a layer "
        f"budget: every layer ends at the target); tuning: {args.tune_seeds} seed(s) on "
        f"{args.train_networks or 'all'} train network(s); held-out: {args.seeds} seeds (test accuracy, %); "
        f"workers {args.workers}"
    )
    note = "† upper bound, chosen on its own test results."
    text = f"{_markdown(rows)}\n\n{note}\n\nGrid: {grid}. Wall time {wall:.0f} s."
    print("\n" + text)
    atomic_write_text(Path(args.run_dir) / "room_table.md", text + "\n")


if __name__ == "__main__":
    main()
