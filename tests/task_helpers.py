"""Tiny tasks on synthetic data, registered for a test or a module and removed after (``from task_helpers import``)."""

import contextlib
import functools

from sparsity_gym.env.tasks import TASKS, Task, register_task
from sparsity_gym.experiments.families import FAMILIES, task_family
from sparsity_gym.experiments.populations import POPULATIONS, Population, register_population

TASK_DEFAULTS = {
    "dataset": "synthetic",
    "train": ("mlp_8x8", "mlp_8"),
    "heldout": ("mlp_12x6",),
    "budget": "global",
    "targets": (0.3,),
    "total_iterations": 20,
    "decision_interval": 10,
    "env_overrides": {"batch_size": 16},
}
"""A task whose episodes take a blink: synthetic data, two decisions of 10 steps, two tiny train MLPs."""

TINY_CELLS = ("linear+uniform", "cubic@0.9+erk")
"""The tuning grid of a tiny task run."""

TINY_POPULATION = {"kind": "mlp", "size": 8, "depths": (1, 2), "sizes": (4, 6, 10, 12), "input_shape": (1, 4, 4)}
"""A held-out population of 8 tiny MLPs on the synthetic dataset's inputs (4 classes)."""


@contextlib.contextmanager
def registered_task(name: str, population: dict | None = None, **fields):
    """Register the task ``name`` (:data:`TASK_DEFAULTS`, ``fields`` on top) and its family for the block.

    ``population``: :class:`Population` fields besides the task (e.g. :data:`TINY_POPULATION`) register a held-out
    population of it too. Everything registered is removed when the block exits.
    """
    task = register_task(Task(name=name, **{**TASK_DEFAULTS, **fields}))
    FAMILIES.add(name, functools.partial(task_family, name))
    try:
        if population is not None:
            register_population(Population(name, num_classes=4, **population))
        yield task
    finally:
        for registry in (TASKS, FAMILIES, POPULATIONS):
            registry._items.pop(name, None)


def tiny_run(task: str, run_dir, **fields):
    """A ``TrainConfig`` of a task run on ``task`` in a blink: two tuned cells (one seed), the tuned prior and the
    paired reward, 8 timesteps of 4-step rollouts, no periodic evaluation, 2 comparison seeds at the task's target,
    no other baseline, everything in this process; ``fields`` on top."""
    from agents.settings.train_config import TrainConfig
    from sparsity_gym.env.tasks import task_config

    base = {
        "env": task_config(task),
        "task": task,
        "family": task,
        "run_dir": str(run_dir),
        "tune_cells": TINY_CELLS,
        "tune_seeds": 1,
        "prior": "tuned",
        "reward": "paired",
        "seed_pool": 1,
        "total_timesteps": 8,
        "n_steps": 4,
        "batch_size": 4,
        "n_epochs": 1,
        "n_envs": 1,
        "eval_every": 0,
        "eval_seeds": 2,
        "eval_targets": (0.3,),
        "eval_selectors": ("magnitude",),
        "policies": ("none",),
        "backend": "sequential",
        "progress_bar": False,
    }
    return TrainConfig(**{**base, **fields})
