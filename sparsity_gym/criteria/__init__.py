"""Criterion decisions and mechanisms (CRITERIA.md §1–§3) that consume statistics as plain tensors.

- :mod:`~sparsity_gym.criteria.snr_pruning`: gradient-SNR keep masks, loss hold, burn-in (§1).
- :mod:`~sparsity_gym.criteria.dyno`: DYNO prune/grow counts, prune selection, NORTH-Select growth (§2).
- :mod:`~sparsity_gym.criteria.contribution_pruning`: lowest-contribution selection (§3).

NEq freezing mechanics (§4) live in :mod:`sparsity_gym.masks.freezing`.
"""

from __future__ import annotations

from sparsity_gym.criteria.contribution_pruning import lowest_fraction, prune_count
from sparsity_gym.criteria.dyno import (
    clamp_prune_count,
    north_select,
    north_select_scores,
    prune_grow_counts,
    select_prune,
)
from sparsity_gym.criteria.snr_pruning import (
    LossHold,
    burn_in_done,
    magnitude_keep_mask,
    snr_keep_masks,
)

__all__ = [
    "LossHold",
    "burn_in_done",
    "clamp_prune_count",
    "lowest_fraction",
    "magnitude_keep_mask",
    "north_select",
    "north_select_scores",
    "prune_count",
    "prune_grow_counts",
    "select_prune",
    "snr_keep_masks",
]
