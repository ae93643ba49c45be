"""Fixed policies with stable-baselines3's ``predict`` signature.

``predict(observation, state=None, episode_start=None, deterministic=True) -> (action, state)`` accepts one
observation ``(L, F)`` or a batch ``(n, L, F)`` from a vectorised env, like an SB3 model, so SB3's
``evaluate_policy`` and :func:`sparsity_gym.experiments.evaluation.evaluate` run baselines and learned models alike.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np

from baselines.schedules import SCHEDULES, Schedule


class FixedPolicy:
    """Base of the fixed policies: SB3's ``predict`` on one observation or a batch, over :meth:`actions`."""

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
        actions = np.asarray(self.actions(obs if batched else obs[None]), dtype=np.float32)
        return (actions if batched else actions[0]), state


class SchedulePolicy(FixedPolicy):
    """Every layer follows ``schedule(progress, target)``, read from the observation's ``progress`` column.

    Args:
        env: The environment (or a wrapper of it) the policy acts in: gives the column layout, the target
            density and the action map.
        schedule: A pure function ``(p, target) -> density``.
        name: A label for reports.

    """

    def __init__(self, env: gym.Env, schedule: Schedule, name: str = "schedule") -> None:
        base = env.unwrapped
        self.name = name
        self.schedule = schedule
        self.target = base.config.target_density if base.config.target_density is not None else 1.0
        self._progress_col = base.layout.columns["progress"]
        self._to_action = base.density_to_action

    def density(self, progress: float) -> float:
        """The density the schedule asks for at ``progress``."""
        return float(self.schedule(progress, self.target))

    def actions(self, observations: np.ndarray) -> np.ndarray:  # noqa: D102
        progress = observations[:, 0, self._progress_col]
        return self._to_action(np.array([[self.density(p)] * observations.shape[1] for p in progress]))


def make_schedule_policy(env: gym.Env, name: str, **schedule_kwargs: float) -> SchedulePolicy:
    """The :class:`SchedulePolicy` of the named handcrafted schedule (``schedule_kwargs``: its window)."""
    fn = SCHEDULES[name]
    schedule = partial(fn, **schedule_kwargs) if schedule_kwargs else fn
    return SchedulePolicy(env, schedule, name=name)
