"""Gymnasium registration of the ``SparsityGym/`` environment ids, with the episode's horizon.

The number of steps of an episode depends on its config (``total_iterations / decision_interval``), so a
fixed ``max_episode_steps`` at registration would cut every longer episode short. The id's entry point,
:func:`sparsity_gym.env.factory.make_env`, wraps the environment in ``TimeLimit`` at its own horizon instead: ``env.spec
.max_episode_steps`` then reports the horizon of the config that was made, and the time limit coincides with
the environment's own end. A shorter ``gym.make(..., max_episode_steps=k)`` adds an outside ``TimeLimit``;
see :class:`sparsity_gym.env.SparsityEnv` (Episode End) for what such a truncation means.
"""

from __future__ import annotations

import gymnasium as gym

import sparsity_gym.core.threads  # noqa: F401  (records the importing process: see limit_threads_if_forked)

ENV_IDS: tuple[str, ...] = ("SparsityGym/Schedule-v0",)


def register_envs() -> None:
    """Register the environment ids with Gymnasium (idempotent, imports nothing heavy)."""
    if "SparsityGym/Schedule-v0" not in gym.registry:
        gym.register(
            id="SparsityGym/Schedule-v0",
            entry_point="sparsity_gym.env.factory:make_env",
            disable_env_checker=False,
        )
