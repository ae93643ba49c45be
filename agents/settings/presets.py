"""Named sets of run settings, and what a task sets: the one place a preset or a task becomes settings.

A run's setting comes from the last of: the field's default (:class:`agents.settings.train_config.TrainConfig`), the
preset (:data:`PRESETS`), the task (:func:`task_settings`), a flag given on the command line
(:func:`agents.settings.train_config.config_from`).
"""

from __future__ import annotations

from typing import Any

from baselines.handcrafted import handcrafted_grid
from sparsity_gym.env.tasks import get_task

PRESETS: dict[str, dict[str, Any]] = {
    "default": {"showcase": ("mnist1d_mlp@0.01",)},
    "long": {
        "total_timesteps": 30000,
        "run_dir": "runs/long",
        "n_steps": 200,
        "batch_size": 200,
        "learning_rate": 1e-4,
        "eval_every": 3000,
        "eval_episodes": 2,
        "eval_seeds": 5,
        "checkpoint_every": 1000,
    },
}
"""Named sets of run settings: ``--preset long`` is the headline run; a task's settings and flags given win."""


TUNE_GRID: tuple[str, ...] = tuple(handcrafted_grid(("linear", "cubic"), (0.75, 0.9), ("uniform", "erk", "lamp")))
"""The handcrafted grid a ``--task`` run tunes: {linear, cubic} × window end {0.75, 0.9} × {uniform, ERK, LAMP}."""

TASK_PRESET: dict[str, Any] = {
    "total_timesteps": 4000,
    "eval_seeds": 5,
    "eval_every": 1000,
    "eval_episodes": 2,
    "tune_cells": TUNE_GRID,
    "prior": "tuned",
    "reward": "paired",
    "seed_pool": 4,
    "log_std_init": -3.0,
    "policies": ("criteria",),
    "showcase": (),
}
"""The run settings every ``--task`` sets besides its own (:func:`task_settings`): the grid is tuned on the train
split, the actor starts from the tuned cell, explores with a smaller noise (log-std -3: about 0.05 in action, a
density ratio of about 1.2 under the tasks' log action map), the reward is paired with it (a pool of 4 seeds per
train network), and the comparison on the held-out split runs 5 seeds of every grid cell (the oracle's), the
criteria and the learned policy at the training target (``--eval-targets`` adds others)."""


def task_settings(task: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a task sets: ``(run settings, env settings)``, the :class:`TrainConfig` and ``EnvConfig`` fields.

    The env settings are the task's own (:meth:`sparsity_gym.env.tasks.Task.settings`: dataset, budget, first
    target, selector, regrowth, granularity, iterations, action map). The run settings are :data:`TASK_PRESET`,
    ``family=<task>`` (the task's train / held-out split), ``run_dir=runs/<task>`` and
    ``eval_selectors=(<task's selector>,)``; ``eval_targets`` follows the run's target density
    (:func:`config_from`). No task sets nothing.
    """
    if task is None:
        return {}, {}
    t = get_task(task)
    run = {**TASK_PRESET, "run_dir": f"runs/{t.name}", "family": t.name, "eval_selectors": (t.selector,)}
    return run, t.settings()
