"""The environment: its config, action maps and projection, FLOPs, :class:`SparsityEnv`, wrappers, registration.

Importing this package imports nothing heavy (``import sparsity_gym`` registers the ids through it);
``SparsityEnv``, ``EnvConfig`` and ``to_action`` are loaded on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SparsityEnv": "sparsity_gym.env.sparsity_env",
    "EnvConfig": "sparsity_gym.env.config",
    "to_action": "sparsity_gym.env.actions",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
