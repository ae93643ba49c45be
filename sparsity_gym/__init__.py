"""sparsity-gym: a network in training as a Gymnasium environment for learning pruning schedules.

Importing the package registers the environment ids under the ``SparsityGym/`` namespace and does no other
work: the heavy modules (torch models, data) are imported when an environment is made, or when
:class:`~sparsity_gym.pruning.pruner.Pruner` (the pruning driver for a user's own training loop) is first
accessed as ``sparsity_gym.Pruner``.
"""

from __future__ import annotations

from typing import Any

from sparsity_gym.env.registration import register_envs

__version__ = "0.1.0"

register_envs()

__all__ = ["Pruner", "__version__"]


def __getattr__(name: str) -> Any:
    """Load ``Pruner`` on first access (PEP 562), so that importing the package imports no torch."""
    if name == "Pruner":
        from sparsity_gym.pruning.pruner import Pruner

        return Pruner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
