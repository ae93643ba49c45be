"""The environment: its config, an episode's parts, :class:`SparsityEnv`, wrappers, tasks, registration.

An episode (:mod:`sparsity_gym.env.episode`) is a network, its optimizer and training loop, and a pruning driver
(:class:`sparsity_gym.pruning.Pruner`) stepped by that loop; the action maps, budgets and projection live in
:mod:`sparsity_gym.pruning`.

Importing this package imports nothing heavy (``import sparsity_gym`` registers the ids through it);
``SparsityEnv``, ``EnvConfig`` and ``to_action`` are loaded on first access.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EnvConfig", "SparsityEnv", "to_action"]


def __getattr__(name: str) -> Any:
    """Load the public names lazily, so that importing the package stays cheap."""
    if name == "SparsityEnv":
        from sparsity_gym.env.sparsity_env import SparsityEnv

        return SparsityEnv
    if name == "EnvConfig":
        from sparsity_gym.env.env_config import EnvConfig

        return EnvConfig
    if name == "to_action":
        from sparsity_gym.pruning.actions import to_action

        return to_action
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
