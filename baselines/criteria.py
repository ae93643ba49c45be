"""Criterion-driven methods as fixed policies: how many units per layer, from the observation.

Each method is a policy plus the env settings it needs (:func:`baselines.env_kwargs`); the *which* units
(the selector's statistic) and *how* (prune or freeze) live in the env.

* ``neq`` — NEq (Bragagnolo et al., seed 004; CRITERIA §4): every decision, neurons whose velocity is below
  ε = 1e-3 are frozen (not pruned) and the others thawed. As a policy it is a constant threshold action:
  log10 ε on the equilibrium selector's ``log10 |v|`` scale. No neuron is frozen before the velocity exists
  (the third validation pass); the env's saved backward FLOPs follow CRITERIA's convention.
* ``contribution`` — contribution-based neuron pruning (Reddy et al., seed 002; CRITERIA §3): after a
  maturity phase (progress ``start``), every decision is a prune round until the layer's share of neurons is
  at most ``keep``: the lowest-scoring ``ceil(x·N)`` active neurons of each hidden layer go (x = 10%), scored
  by λ1·C_avg + λ2·C_max (λ = 0.5) over all training steps since the last round, ties: the higher index goes.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from sparsity_gym.validation import check_number


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


class ContributionPolicy:
    """Prune rounds of ``ceil(fraction·N_active)`` neurons per hidden layer (SB3 ``predict`` signature).

    Args:
        env: The env, built with ``baselines.env_kwargs("contribution")``.
        fraction: x, the share of a layer's active neurons removed per round (paper: 10%).
        start: Progress before which the network trains dense ("initial maturity").
        keep: Rounds stop once a layer's density (active / all neurons) is at most this: the pruning target.

    """

    def __init__(self, env: gym.Env, fraction: float = 0.1, start: float = 0.2, keep: float = 0.6) -> None:
        base = env.unwrapped
        check_number("fraction", fraction, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
        check_number("start", start, low=0.0, high=1.0)
        check_number("keep", keep, low=0.0, high=1.0, low_inclusive=False)
        self.name = "contribution"
        self.fraction, self.start, self.keep = fraction, start, keep
        self.units = np.array([layer.num_units for layer in base.masks.layers])
        self._progress = base.layout.columns["progress"]
        self._density = base.layout.columns["density"]
        self._to_action = base.density_to_action

    def counts(self, progress: float, densities: np.ndarray) -> np.ndarray:
        """Active neurons per layer after this decision's round (if any)."""
        active = np.rint(densities * self.units).astype(int)
        if progress < self.start:
            return active
        prune = (active > self.keep * self.units) & (active > 1)
        removed = np.ceil(self.fraction * active - 1e-9).astype(int)
        return np.where(prune, np.maximum(active - removed, 1), active)

    def predict(
        self, observation: np.ndarray, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        """The densities of this decision, for one observation ``(L, F)`` or a batch ``(n, L, F)``."""
        obs = np.asarray(observation, dtype=np.float64)
        batched = obs.ndim == 3
        obs = obs if batched else obs[None]
        actions = np.stack(
            [self._to_action(self.counts(o[0, self._progress], o[:, self._density]) / self.units) for o in obs]
        )
        return (actions if batched else actions[0]), state


def make_contribution_policy(env: gym.Env, **kwargs: float) -> ContributionPolicy:
    """The contribution-pruning policy (see :class:`ContributionPolicy` for the arguments)."""
    return ContributionPolicy(env, **kwargs)


CONTRIBUTION_ENV_KWARGS = {
    "selector": "contribution",
    "granularity": "neuron",
    "target_density": None,
    "stats_window": None,
}
