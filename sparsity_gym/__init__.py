"""sparsity-gym: a network in training as a Gymnasium environment for learning pruning schedules.

Importing the package registers the environment ids under the ``SparsityGym/`` namespace and does no other
work: the heavy modules (torch models, data) are imported when an environment is made.
"""

from __future__ import annotations

from sparsity_gym.env.registration import register_envs

__version__ = "0.1.0"

register_envs()

__all__ = ["__version__"]
