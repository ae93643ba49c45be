"""A trained layer-wise policy acting on raw observations of any depth, checked against where it acts.

:class:`LayerwiseAgent` wraps a PPO model whose policy is :class:`agents.ppo.layerwise_policy.LayerwisePolicy` and gives
it stable-baselines3's ``predict`` signature on an env's raw ``(L, F)`` observation (any ``L``), so
``sparsity_gym.experiments.evaluation.evaluate``, SB3's ``evaluate_policy`` and the pruning driver
(``sparsity_gym.Pruner``) run it like any baseline.

:meth:`LayerwiseAgent.bind` is the checked path: it compares the model's schema (:mod:`agents.ppo.schema`) with the
env's (or the driver's) columns and action settings and refuses a mismatch in one line naming both; then it warns
(:class:`agents.ppo.schema.OutsideTrainingWarning`, once per difference) where the conditions differ from the ones the
model trained under (another target density, budget or dataset, layer kinds it never saw). ``predict`` before
``bind`` warns once that nothing was checked (:class:`agents.ppo.schema.UncheckedPolicyWarning`).

:attr:`LayerwiseAgent.settings` are the settings an env or a driver needs for the model's actions to mean what
they meant in training (action map, allocation rule and tilt, observed statistics); :attr:`LayerwiseAgent.reads`
the columns it reads.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.ppo.layerwise_policy import LayerwisePolicy
from agents.ppo.schema import (
    OutsideTrainingWarning,
    check_agreement,
    describe,
    outside_training,
    required_settings,
    warn_unchecked,
)


class LayerwiseAgent:
    """A trained :class:`LayerwisePolicy` acting on raw ``(L, F)`` observations of any ``L`` (SB3 ``predict``).

    ``predict`` also accepts padded observations (``F + 1`` columns, validity last), single or batched.

    Args:
        model: A PPO model (or its policy) whose policy is a :class:`LayerwisePolicy`.
        name: The label in reports.
        warn_outside: Warn when :meth:`bind` finds conditions other than the training ones (off for deliberate
            transfer tests such as the comparison on held-out networks, whose report names every split).

    """

    def __init__(self, model: Any, name: str = "ppo", warn_outside: bool = True) -> None:
        policy = getattr(model, "policy", model)
        if not isinstance(policy, LayerwisePolicy):
            raise ValueError(
                f"model has policy {type(policy).__name__}; expected agents.ppo.layerwise_policy.LayerwisePolicy"
            )
        self.policy = policy
        self.name = name
        self.warn_outside = warn_outside
        self.checked = False  # set by bind
        self.warned: set[str] = set()

    @property
    def schema(self) -> dict[str, Any]:
        """What the model expects of an env (:mod:`agents.ppo.schema`), as a plain dict.

        ``columns`` (the observation's column names in order), ``action_mode``, ``action_scale``, ``min_density``,
        ``max_density``, ``allocation``, ``allocation_tilt``, ``prior``, and the env settings, ``task`` and
        ``train_networks`` it trained with; a model saved without one: ``schema_version`` 0 with its columns and
        action scale.
        """
        return self.policy.schema

    @property
    def settings(self) -> dict[str, Any]:
        """The env or driver settings the model's actions need (:func:`agents.ppo.schema.required_settings`)."""
        return required_settings(self.schema)

    @property
    def reads(self) -> tuple[str, ...]:
        """The observation columns the model reads: every column it was trained on."""
        return tuple(self.schema.get("columns", ()))

    @classmethod
    def load(cls, path: str | Path, name: str = "ppo", warn_outside: bool = True) -> LayerwiseAgent:
        """Load a model saved with ``PPO.save`` (``ValueError`` if it is missing; a warning if it has no schema)."""
        from stable_baselines3 import PPO

        if not Path(path).exists():
            raise ValueError(f"model={str(path)!r} is not allowed: no such file; expected a model.zip saved by PPO")
        agent = cls(PPO.load(path, device="cpu"), name=name, warn_outside=warn_outside)
        if agent.policy.recorded_schema is None:
            warnings.warn(
                f"model {str(path)!r} was saved without a schema; it is checked on what it recorded "
                f"({describe(agent.schema)}), not on its action mode, density range or allocation",
                UserWarning,
                stacklevel=2,
            )
        return agent

    def bind(self, env: Any) -> LayerwiseAgent:
        """Return ``self`` after checking ``env`` against the model's :attr:`schema` (the checked path).

        ``env``: anything with ``.layout.columns`` and ``.config``: a gym env (read through ``.unwrapped``), a
        :class:`~sparsity_gym.experiments.family_env.FamilyEnv` or the pruning driver. Conditions other than the
        training ones (target density, budget, dataset, layer kinds) are allowed, each with one warning.

        Raises:
            ValueError: The columns (names or order) or an action setting differ; one line naming both.

        """
        check_agreement(self.schema, env)
        self.checked = self.policy.checked = True
        if self.warn_outside:
            for difference in outside_training(self.schema, env):
                if difference not in self.warned:
                    self.warned.add(difference)
                    warnings.warn(f"policy {self.name!r}: {difference}", OutsideTrainingWarning, stacklevel=2)
        return self

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """The action for one observation ``(L, F)`` or a batch ``(n, L, F)``, clipped to [-1, 1].

        Before :meth:`bind`, warns once that nothing was checked (the arrays cannot say which columns they hold).
        """
        warn_unchecked(self, "LayerwiseAgent.predict() before bind(env)", "agent.bind(env)")
        obs = np.asarray(observation, dtype=np.float32)
        batched = obs.ndim == 3
        obs = obs if batched else obs[None]
        n = self.policy.num_features
        if obs.shape[-1] == n:
            obs = np.concatenate([obs, np.ones((*obs.shape[:-1], 1), np.float32)], axis=-1)
        elif obs.shape[-1] != n + 1:
            raise ValueError(f"observation has {obs.shape[-1]} columns; expected {n} (or {n + 1} when padded)")
        self.policy.set_training_mode(False)
        with torch.no_grad():
            actions = self.policy.distribution(torch.as_tensor(obs)).get_actions(deterministic=deterministic)
        out = np.clip(actions.cpu().numpy(), -1.0, 1.0).astype(np.float32)
        return (out if batched else out[0]), state


def load_agent(path: str | Path, env: gym.Env, warn_outside: bool = True) -> LayerwiseAgent:
    """``LayerwiseAgent.load(path).bind(env)``: a picklable policy factory (``functools.partial(load_agent, p)``)."""
    return LayerwiseAgent.load(path, warn_outside=warn_outside).bind(env)
