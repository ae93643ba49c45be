"""Per-unit statistics behind the pruning criteria (CRITERIA.md §1-4).

* :mod:`~sparsity_gym.stats.snr` — gradient signal-to-noise ratio per weight (seed 001), its per-sample moments
  (:mod:`~sparsity_gym.stats.grad_moments`) and its collection during training
  (:mod:`~sparsity_gym.stats.snr_collector`).
* :mod:`~sparsity_gym.stats.rank` — effective dimension of activations and their FIFO buffer (seed 000).
* :mod:`~sparsity_gym.stats.contribution` — neuron contribution scores (seed 002).
* :mod:`~sparsity_gym.stats.equilibrium` — neuronal equilibrium, NEq (seed 004).

Importing this package imports only torch; nothing is computed at import time.
"""

from __future__ import annotations

from sparsity_gym.stats.contribution import ContributionAccumulator, contribution, contribution_score
from sparsity_gym.stats.equilibrium import EquilibriumTracker, neuron_similarity
from sparsity_gym.stats.grad_moments import (
    conv1d_grad_moments,
    conv2d_grad_moments,
    conv2d_grad_sq_sum,
    linear_grad_moments,
    linear_grad_sq_sum,
)
from sparsity_gym.stats.rank import (
    ActivationBuffer,
    effective_dimension,
    effective_dimension_count,
    singular_values,
)
from sparsity_gym.stats.snr import smoothing_gamma, snr_from_moments
from sparsity_gym.stats.snr_collector import GradientMomentCollector, gradient_snr

__all__ = [
    "ActivationBuffer",
    "ContributionAccumulator",
    "EquilibriumTracker",
    "GradientMomentCollector",
    "contribution",
    "contribution_score",
    "conv1d_grad_moments",
    "conv2d_grad_moments",
    "conv2d_grad_sq_sum",
    "effective_dimension",
    "effective_dimension_count",
    "gradient_snr",
    "linear_grad_moments",
    "linear_grad_sq_sum",
    "neuron_similarity",
    "singular_values",
    "smoothing_gamma",
    "snr_from_moments",
]
