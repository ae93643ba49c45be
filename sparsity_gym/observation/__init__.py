"""The observation: a snapshot of the training state, its feature columns and the observers that fill them.

Importing the package registers the four statistic families (:mod:`~sparsity_gym.observation.observers`) with
the column layout (:mod:`~sparsity_gym.observation.features`).
"""

from __future__ import annotations

from sparsity_gym.observation import observers

__all__ = ["observers"]
