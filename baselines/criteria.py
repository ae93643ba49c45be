"""Criterion-driven methods as fixed policies: how many units per layer, from the observation.

Each method is a policy plus the env settings it needs (:func:`baselines.env_kwargs`); the *which* units
(the selector's statistic) and *how* (prune or freeze) live in the env.

* ``neq`` — NEq (Bragagnolo et al., seed 004; CRITERIA §4): every decision, neurons whose velocity is below
  ε = 1e-3 are frozen (not pruned) and the others thawed. As a policy it is a constant threshold action:
  log10 ε on the equilibrium selector's ``log10 |v|`` scale. No neuron is frozen before the velocity exists
  (the third validation pass); the env's saved backward FLOPs follow CRITERIA's convention.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np


class ConstantThresholdPolicy:
    """Ask every layer for the same threshold at every decision (SB3 ``predict`` signature)."""

    def __init__(self, env: gym.Env, threshold: float, name: str) -> None:
        base = env.unwrapped
        if base.config.action_mode != "threshold":
            raise ValueError(
                f"action_mode={base.config.action_mode!r} is not allowed for policy {name!r}; expected 'threshold' "
                f"(build the env with baselines.env_kwargs({name!r}))"
            )
        self.name = name
        self.threshold = threshold
        self._action = np.full(base.action_space.shape, base.threshold_to_action(threshold), dtype=np.float32)

    def predict(
        self, observation: np.ndarray, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        """The constant action, for one observation ``(L, F)`` or a batch ``(n, L, F)``."""
        obs = np.asarray(observation)
        if obs.ndim == 3:
            return np.tile(self._action, (obs.shape[0], 1)), state
        return self._action.copy(), state


def make_neq_policy(env: gym.Env, eps: float = 1e-3) -> ConstantThresholdPolicy:
    """NEq: freeze the neurons with velocity |v| < ``eps`` (threshold log10 ``eps``)."""
    return ConstantThresholdPolicy(env, math.log10(eps), name="neq")


NEQ_ENV_KWARGS = {
    "selector": "equilibrium",
    "effect": "freeze",
    "action_mode": "threshold",
    "granularity": "neuron",
    "target_density": None,
}
