"""Gymnasium registration of the ``SparsityGym/`` environment ids."""

from __future__ import annotations

import gymnasium as gym

ENV_IDS: tuple[str, ...] = ("SparsityGym/Schedule-v0",)


def register_envs() -> None:
    """Register the environment ids with Gymnasium (idempotent, imports nothing heavy)."""
    if "SparsityGym/Schedule-v0" not in gym.registry:
        gym.register(
            id="SparsityGym/Schedule-v0",
            entry_point="sparsity_gym.env.sparsity_env:SparsityEnv",
            disable_env_checker=False,
        )
