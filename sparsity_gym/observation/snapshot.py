"""A snapshot of the training state at a decision: everything the observation's columns are computed from.

The env builds one at every decision and hands it to :meth:`ObservationLayout.build
<sparsity_gym.observation.features.ObservationLayout.build>`; observation code never reads the env itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sparsity_gym.masks.layer_mask import LayerMask


@dataclass(frozen=True)
class TrainingSnapshot:
    """The training state at one decision.

    Attributes:
        layers: The controlled layers' masks, in action order (one observation row each).
        all_layers: Every prunable layer's mask (the output layer too at neuron granularity).
        progress: Optimizer steps done / ``total_iterations``.
        train_loss: Mean training loss over the last interval (the validation loss before the first step).
        val_accuracy: Validation accuracy now.
        global_density: Active weights / weights over all prunable layers.
        flops_fraction: Inference FLOPs of the active network / dense inference FLOPs.
        target_density: The episode's target density (``None``: none set).
        num_classes: Classes of the dataset (the loss is scaled by ``ln(num_classes)``).
        statistics: ``(L, k)`` features of each observed statistic family, by family name.

    """

    layers: Sequence[LayerMask]
    all_layers: Sequence[LayerMask]
    progress: float
    train_loss: float
    val_accuracy: float
    global_density: float
    flops_fraction: float
    target_density: float | None
    num_classes: int
    statistics: Mapping[str, np.ndarray]
