"""The entry point of the registered ids: the env in a ``TimeLimit`` at its own horizon (see registration)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from sparsity_gym.env.sparsity_env import METADATA, SparsityEnv


def make_env(**kwargs: Any) -> gym.Env:
    """``SparsityEnv(**kwargs)`` in a ``TimeLimit`` at its horizon (``config.num_decisions`` steps)."""
    env = SparsityEnv(**kwargs)
    return gym.wrappers.TimeLimit(env, max_episode_steps=env.config.num_decisions)


# gym.make reads the render modes from the entry point
make_env.metadata = METADATA  # type: ignore[attr-defined]
