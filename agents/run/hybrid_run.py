"""What a training run adds for search-then-learn: the noise and reward callbacks, the evaluations' record, the curve.

* :func:`exploration_callbacks`: the log-std schedule and the reward normaliser's saver (:mod:`agents.ppo.exploration`).
* :class:`EvaluationRecorder` (attached to the periodic evaluation by :func:`attach_evaluation_log`): each
  evaluation's mean validation accuracy at its timestep and training episodes goes to ``evaluations.csv``; the
  schedules of the untrained policy's evaluation (timestep 0: the prior itself) and of the best one go to
  ``evaluated_schedules.json``, what :mod:`agents.reports.distill` fits a static point to.
* :func:`write_budget_curve`: ``budget_curve.png`` / ``.csv`` (:mod:`sparsity_gym.experiments.budget_curve`): every
  study of the run folder (TPE and random, each sampler seed) and the learned policy's evaluations, shifted by
  the prior search's episodes.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger

from agents.ppo.exploration import LogStdSchedule, SaveVecNormalize
from agents.reports.costs import prior_search_episodes
from agents.reports.heldout import HeldoutEvaluation
from agents.run.callbacks import PeriodicEvalCallback
from agents.settings.train_config import TrainConfig
from sparsity_gym.core.io import atomic_write_text
from sparsity_gym.experiments.budget_curve import evaluation_trace, study_trace
from sparsity_gym.experiments.budget_curve import write_budget_curve as write_curve

EVALUATIONS_FILE = "evaluations.csv"
SCHEDULES_FILE = "evaluated_schedules.json"
_COLUMNS = ("timestep", "episodes", "val_accuracy")


def exploration_callbacks(cfg: TrainConfig, checkpoints: Path) -> list[BaseCallback]:
    """The log-std schedule (``--log-std-final``) and the ``VecNormalize`` saver (``--norm-reward``), as set."""
    callbacks: list[BaseCallback] = []
    if cfg.log_std_final is not None:
        callbacks.append(LogStdSchedule(cfg.log_std_init, cfg.log_std_final, cfg.log_std_decay, cfg.total_timesteps))
    if cfg.norm_reward:
        callbacks.append(SaveVecNormalize(checkpoints))
    return callbacks


class EvaluationRecorder:
    """An evaluation log (``PeriodicEvalCallback``'s ``logs``): one CSV row per evaluation, the schedules kept.

    Args:
        folder: The run folder (``evaluations.csv``, ``evaluated_schedules.json``).
        decisions: Decisions per episode (timesteps to training episodes).

    """

    def __init__(self, folder: Path, decisions: int) -> None:
        self.csv = Path(folder) / EVALUATIONS_FILE
        self.schedules = Path(folder) / SCHEDULES_FILE
        self.decisions = max(1, int(decisions))

    def __call__(self, logger: Logger, evaluation: HeldoutEvaluation, timestep: int) -> None:
        """Append the row; keep the schedules of timestep 0 (the prior) and of a new best."""
        rows = read_rows(self.csv)
        rows = [r for r in rows if int(r["timestep"]) < timestep]  # a resumed session replays later ones
        row = (timestep, timestep // self.decisions, evaluation.val_accuracy)
        rows.append({k: str(v) for k, v in zip(_COLUMNS, row, strict=True)})
        text = (
            ",".join(_COLUMNS) + "\n" + "".join(f"{r['timestep']},{r['episodes']},{r['val_accuracy']}\n" for r in rows)
        )
        atomic_write_text(self.csv, text)
        kept = json.loads(self.schedules.read_text()) if self.schedules.exists() else {}
        entry = {"timestep": timestep, "val_accuracy": evaluation.val_accuracy, "episodes": episodes_of(evaluation)}
        if timestep == 0:
            kept["prior"] = entry
        if "best" not in kept or evaluation.val_accuracy > kept["best"]["val_accuracy"]:
            kept["best"] = entry
        atomic_write_text(self.schedules, json.dumps(kept))


def episodes_of(evaluation: HeldoutEvaluation) -> list[dict[str, Any]]:
    """Each episode's network, seed, target, decision progress, per-layer densities and layer weight shares."""
    shares = layer_shares(evaluation)
    return [
        {
            "network": r.network,
            "seed": r.seed,
            "target": r.target_density,
            "progress": list(r.progress),
            "schedule": [list(d) for d in r.schedule],
            **({"weights": shares[r.network]} if r.network in shares else {}),
        }
        for r in evaluation.results
    ]


def layer_shares(evaluation: HeldoutEvaluation) -> dict[str, list[float]]:
    """``{network: each layer's share of the prunable weights}``, the ``param_share`` column of its first observation.

    The observations are the episodes' in the results' order, one per decision; a network whose observation
    does not have one row per layer is left out.
    """
    column = evaluation.columns.get("param_share")
    shares: dict[str, list[float]] = {}
    offset = 0
    for r in evaluation.results:
        if column is not None and r.network not in shares and offset < len(evaluation.observations):
            rows = np.asarray(evaluation.observations[offset])
            if rows.ndim == 2 and len(rows) == len(evaluation.layers.get(r.network, ())):
                shares[r.network] = [float(v) for v in rows[:, column]]
        offset += len(r.progress)
    return shares


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file (none when it does not exist)."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def attach_evaluation_log(callbacks: Sequence[BaseCallback], folder: Path, decisions: int) -> None:
    """Add an :class:`EvaluationRecorder` to the periodic evaluation among ``callbacks`` (if there is one)."""
    for callback in callbacks:
        if isinstance(callback, PeriodicEvalCallback):
            callback.logs = (*callback.logs, EvaluationRecorder(folder, decisions))


def budget_curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every trace of the run folder: its studies (each sampler seed) and the learned policy's evaluations."""
    curves: dict[str, list[tuple[int, float]]] = {}
    folders = [run_dir, *sorted(run_dir.glob("sampler_seed_*"))]
    for folder in folders:
        tag = "" if folder == run_dir else f" seed {folder.name.rpartition('_')[2]}"
        for sampler, name in (("tpe", "TPE search"), ("random", "random search")):
            curves[f"{name}{tag}"] = study_trace(folder / f"search_{sampler}.db", sampler)
    if not curves["TPE search"]:  # no opponent ran: the prior's own study
        curves["TPE search (prior)"] = study_trace(run_dir / "prior_search" / "search_tpe.db", "tpe")
    offset = prior_search_episodes(run_dir)
    label = "learned (search, then PPO)" if offset else "learned (PPO)"
    curves[label] = evaluation_trace(read_rows(run_dir / EVALUATIONS_FILE), offset)
    return curves


def write_budget_curve(run_dir: Path, title: str) -> Path | None:
    """``budget_curve.png`` and ``budget_curve.csv`` of the run folder (``None`` when there is nothing to draw)."""
    return write_curve(run_dir, budget_curves(run_dir), title)
