"""The pruning driver: masks, decisions on schedule, budget and allocation, statistics, around any optimizer step.

:class:`~sparsity_gym.pruning.pruner.Pruner` attaches to a model and its optimizer and is stepped after every
``optimizer.step()``, in a user's own training loop or in the env's (the env's episode is a ``Pruner`` without
a policy, stepped by :class:`~sparsity_gym.env.training.TrainingLoop`). Its parts: the run's
:class:`~sparsity_gym.pruning.pruning_config.PruningConfig`, the action map (:mod:`~sparsity_gym.pruning.actions`), a
decision (:class:`~sparsity_gym.pruning.decisions.Decisions`: action, allocation, budget projection, masks), the
budgets and their projection (:mod:`~sparsity_gym.pruning.budget`, :mod:`~sparsity_gym.pruning.projection`),
FLOPs (:mod:`~sparsity_gym.pruning.flops`) and the statistics a policy reads
(:class:`~sparsity_gym.pruning.measurement.Statistics`).

This package sits below :mod:`sparsity_gym.env` and imports masks, observation, models, criteria, stats and
core only. Importing it is cheap: ``Pruner`` and ``PruningConfig`` load on first access.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Pruner", "PruningConfig", "PruningSummary"]


def __getattr__(name: str) -> Any:
    """Load the public names lazily, so that importing the package stays cheap."""
    if name == "Pruner":
        from sparsity_gym.pruning.pruner import Pruner

        return Pruner
    if name == "PruningConfig":
        from sparsity_gym.pruning.pruning_config import PruningConfig

        return PruningConfig
    if name == "PruningSummary":
        from sparsity_gym.pruning.summary import PruningSummary

        return PruningSummary
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
