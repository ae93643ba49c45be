"""The task's tuned handcrafted schedule in a training run: the report's reference, the prior, the paired reward's.

Before any held-out result exists, every cell of ``TrainConfig.tune_cells`` (a handcrafted grid,
``shape@window+allocation``) runs on the task's **train** networks with the tuning seeds ``seeds("tuning", n)``
(the picker of :mod:`sparsity_gym.experiments.tuning`, cached in the run folder's ``tuning.json``), and the cell
with the best mean **validation** accuracy is *the tuned handcrafted schedule*. It is then

* the reference of every paired difference and of the verdict in the report;
* with ``--prior tuned``, what the learned actor starts from: its schedule part (``cubic@0.9``) is the actor's
  residual prior and its allocation rule (``+erk``) becomes the env's ``allocation`` with ``allocation_tilt``,
  so the untrained policy plays the tuned cell itself and the actor learns a residual on both the global
  schedule and the rule's allocation;
* with ``--reward paired --reward-reference prior``, the paired reward's reference (the whole cell).

Every cell of the grid also runs in the comparison, so the oracle (per held-out network, the best cell on its
own test results) is an upper bound over the same grid. The tuning's cost (cells × networks × seeds episodes
and their wall seconds) is the ``tuned`` record of the run folder's ``opponents.json``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from agents.settings.train_config import TrainConfig
from baselines import is_static, policy_cell
from baselines.handcrafted import parse_cell
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.experiments.opponents import Opponent, read_opponents, write_opponents
from sparsity_gym.experiments.seeds import seeds
from sparsity_gym.experiments.tuning import TuningTable, tune

# fields a task's networks decide (the tuning runs each train network with its own), and what the tilt changes
_NOT_OVERRIDDEN = frozenset({"network", "network_kwargs", "allocation", "allocation_tilt", "target_density"})


def tuning_overrides(env: EnvConfig) -> dict[str, Any]:
    """The run's env settings the tuning shares: all but the network, the allocation and the target.

    The tuning's episodes skip the observation statistics (``observations=()``): a schedule does not read them
    and the training they watch is the same without them.
    """
    values = {f.name: getattr(env, f.name) for f in dataclasses.fields(EnvConfig) if f.name not in _NOT_OVERRIDDEN}
    return {**values, "observations": ()}


def tune_run(cfg: TrainConfig, run_dir: Path | None) -> TuningTable | None:
    """The tuning table of ``cfg.tune_cells`` on the task's train split at the run's target (``None``: no grid).

    With ``run_dir``, its cost is recorded as the ``tuned`` opponent of ``opponents.json`` (:func:`record_tuning`).
    """
    if not cfg.tune_cells:
        return None
    assert cfg.task is not None  # TrainConfig refuses tune_cells without a task
    table = tune(
        cfg.task,
        [policy_cell(name) for name in cfg.tune_cells],
        target=cfg.env.target_density,
        run_dir=run_dir,
        seeds=seeds("tuning", cfg.tune_seeds),
        env_overrides=tuning_overrides(cfg.env),
        backend=cfg.backend,
        workers=cfg.workers or None,
        progress=cfg.progress_bar,
    )
    if run_dir is not None:
        record_tuning(run_dir, table)
    return table


def record_tuning(run_dir: Path, table: TuningTable) -> Opponent:
    """The tuning's cost as opponent ``tuned`` in ``run_dir/opponents.json``: every cell × network × seed.

    Seconds are those measured when the grid ran; a table read back from ``tuning.json`` keeps the recorded
    seconds (``None`` when none were recorded).
    """
    episodes = len(table.cells) * len(next(iter(table.val.values()))) * len(table.seeds)
    recorded = read_opponents(run_dir).get("tuned")
    seconds = round(table.seconds, 1) if table.seconds is not None else recorded.seconds if recorded else None
    tuned = Opponent("tuned", table.best, episodes, seconds, table.best)
    write_opponents(run_dir, [tuned])
    return tuned


def prior_from_cell(cell: str, env: EnvConfig) -> tuple[str, EnvConfig]:
    """``(actor prior, env)`` that make the untrained residual policy play ``cell``.

    The prior is the cell's schedule and window (``cubic@0.9``); a cell with ``+rule`` sets the env's
    ``allocation=rule`` with ``allocation_tilt=True`` (a uniform request is the rule's allocation exactly).
    A static schedule (``poly[...]``) has no schedule name a prior can take: ``ValueError``.
    """
    if is_static(cell):
        raise ValueError(
            f"prior='tuned' is not allowed with the tuned cell {cell!r}, a static schedule; expected a handcrafted "
            "cell (shape@window+allocation) to start from, or another --prior"
        )
    shape, end, allocation = parse_cell(cell)
    prior = shape if end is None or shape == "constant" else f"{shape}@{end:g}"
    if allocation is None:
        return prior, env.replace(allocation="policy", allocation_tilt=False)
    return prior, env.replace(allocation=allocation, allocation_tilt=True)


def card_reference(cfg: TrainConfig) -> str | None:
    """The card's reference cell when ``evaluate`` runs a shipped policy under ``--prior tuned`` (``None`` else).

    That cell is the one the policy's actor plays on (its allocation is the model's): the comparison's reference
    and the learned policy's env follow it, so the card's re-measure command re-measures the card, whatever a
    tuning on another machine picks. ``--reference tuned`` asks for this run's tuning instead.
    """
    from agents.policies import card, is_shipped

    if cfg.mode != "evaluate" or cfg.reference != "card" or cfg.prior != "tuned" or not cfg.model:
        return None
    return card(cfg.model).reference if is_shipped(cfg.model) else None
