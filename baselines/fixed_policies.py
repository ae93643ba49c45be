"""Fixed policies with stable-baselines3's ``predict`` signature.

``predict(observation, state=None, episode_start=None, deterministic=True) -> (action, state)`` accepts one
observation ``(L, F)`` or a batch ``(n, L, F)`` from a vectorised env, like an SB3 model, so SB3's
``evaluate_policy`` and :func:`sparsity_gym.experiments.evaluation.evaluate` run baselines and learned models alike.

A fixed policy is built on a *pruning context* (:func:`pruning_context`): an env (its ``SparsityEnv``) or a
:class:`sparsity_gym.pruning.Pruner` attached to a user's model. Both offer what a policy reads: the pruning
config (action map, action mode, allocation), the observation layout, the masks (layer widths) and the number of
classes, so every fixed policy acts in the env and in a user's own training loop alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from baselines.schedules import SCHEDULES, Schedule
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.pruning.actions import to_action
from sparsity_gym.pruning.context import PruningContext
from sparsity_gym.pruning.pruner import Pruner


@dataclass(frozen=True)
class ActionMap:
    """The env's map from a value in ``[low, high]`` to an action in [-1, 1] (the bounds and the scale alone)."""

    low: float
    high: float
    scale: str = "linear"

    def __call__(self, value: float | np.ndarray) -> np.ndarray:
        """The action that asks for ``value`` (clipped to [-1, 1])."""
        return to_action(value, self.low, self.high, self.scale)


def pruning_context(obj: Any) -> PruningContext:
    """What a fixed policy binds to: a :class:`Pruner`, or the :class:`SparsityEnv` under an env's wrappers.

    Raises:
        ValueError: naming what was given when it is neither.

    """
    if isinstance(obj, Pruner):
        return obj
    base = getattr(obj, "unwrapped", None)
    if isinstance(base, SparsityEnv):
        return base
    raise ValueError(
        f"context={type(obj).__name__} is not allowed; expected a SparsityEnv (gym.make('SparsityGym/Schedule-v0'), "
        "any wrapper of it) or a sparsity_gym.Pruner"
    )


def density_map(context: Any) -> ActionMap:
    """The density action map of an env or a Pruner (``[min_density, max_density]``, its ``action_scale``)."""
    cfg = pruning_context(context).config
    return ActionMap(float(cfg.min_density), float(cfg.max_density), cfg.action_scale)


class FixedPolicy:
    """Base of the fixed policies: SB3's ``predict`` on one observation or a batch, over :meth:`actions`.

    A fixed policy keeps only what it reads from the context it was built on (an env or a Pruner,
    :func:`pruning_context`): the observation's column names (to find its columns and check an observation's
    width), the action map's bounds and, for the methods that count units, the layers' widths. It never holds
    the context, so it pickles in a few hundred bytes and acts on any env or Pruner whose observation has the
    same columns (and layers, where it counts units); an observation that does not match raises ``ValueError``.
    :attr:`reads` names the columns it reads (a Pruner collects only their statistics).
    """

    name = "fixed"
    reads: tuple[str, ...] = ()

    def __init__(self, context: Any, name: str, layer_units: np.ndarray | None = None) -> None:
        base = pruning_context(context)
        self.name = name
        self.columns: tuple[str, ...] = tuple(base.layout.columns)
        self.layer_units = None if layer_units is None else np.asarray(layer_units, dtype=np.int64)

    def column(self, name: str) -> int:
        """The index of column ``name`` in the observations this policy reads."""
        return self.columns.index(name)

    def check(self, observations: np.ndarray) -> None:
        """Raise ``ValueError`` unless ``observations`` ``(n, L, F)`` have this policy's columns (and layers)."""
        if observations.ndim != 3 or observations.shape[2] != len(self.columns):
            raise ValueError(
                f"observation has shape {observations.shape[1:]}; policy {self.name!r} reads observations of "
                f"{len(self.columns)} columns {self.columns} (an env with the same observations= settings)"
            )
        if self.layer_units is not None and observations.shape[1] != len(self.layer_units):
            raise ValueError(
                f"observation has {observations.shape[1]} layers; policy {self.name!r} was built for "
                f"{len(self.layer_units)} layers of widths {self.layer_units.tolist()} (build it on this env)"
            )

    def actions(self, observations: np.ndarray) -> np.ndarray:
        """Actions ``(n, L)`` for a batch of observations ``(n, L, F)`` (float64; row ``i`` is episode ``i``)."""
        raise NotImplementedError

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """The action for ``observation`` (single ``(L, F)`` or batched ``(n, L, F)``); ``state`` is passed on."""
        obs = np.asarray(observation, dtype=np.float64)
        batched = obs.ndim == 3
        obs = obs if batched else obs[None]
        self.check(obs)
        actions = np.asarray(self.actions(obs), dtype=np.float32)
        return (actions if batched else actions[0]), state


def observed_target(observations: np.ndarray, column: int) -> np.ndarray:
    """Each episode's target density ``(n,)`` from the ``target_density`` column; 1 where none is set (-1)."""
    target = observations[:, 0, column]
    return np.where(target > 0.0, target, 1.0)


class SchedulePolicy(FixedPolicy):
    """Every layer follows ``schedule(progress, target)``, both read from the observation.

    Args:
        context: An env (or a wrapper of it) or a Pruner with the observations the policy will read: gives the
            column layout and the density action map.
        schedule: A pure function ``(p, target) -> density`` (a module-level function or a ``partial`` of one
            pickles with the policy).
        name: A label for reports.

    """

    reads = ("progress", "target_density")

    def __init__(self, context: Any, schedule: Schedule, name: str = "schedule") -> None:
        super().__init__(context, name)
        self.schedule = schedule
        self.action_map = density_map(context)
        self._progress_col = self.column("progress")
        self._target_col = self.column("target_density")

    def density(self, progress: float, target: float) -> float:
        """The density the schedule asks for at ``progress`` for the target density ``target``."""
        return float(self.schedule(progress, target))

    def actions(self, observations: np.ndarray) -> np.ndarray:  # noqa: D102
        progress = observations[:, 0, self._progress_col]
        targets = observed_target(observations, self._target_col)
        layers = observations.shape[1]
        return self.action_map(
            np.array([[self.density(p, t)] * layers for p, t in zip(progress, targets, strict=True)])
        )


def make_schedule_policy(context: Any, name: str, **schedule_kwargs: float) -> SchedulePolicy:
    """The :class:`SchedulePolicy` of the named handcrafted schedule (``schedule_kwargs``: its window)."""
    fn = SCHEDULES[name]
    schedule = partial(fn, **schedule_kwargs) if schedule_kwargs else fn
    return SchedulePolicy(context, schedule, name=name)
