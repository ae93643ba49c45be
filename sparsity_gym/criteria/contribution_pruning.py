"""Neuron-contribution pruning decision (Reddy et al., seed 002; CRITERIA.md §3).

The contribution scores ``score = λ1·C_avg + λ2·C_max`` are statistics computed elsewhere
(``sparsity_gym.stats``); this module decides which neurons a prune round removes.

Conventions (named after CRITERIA.md §3):

- Every prune round removes the lowest-scoring ``ceil(x·N)`` neurons of a layer, ``x = 10%`` by default and
  ``N`` the number of *active* neurons of the layer.
- Ties: among equal scores the **higher** index goes first.
- Float guard: ``x·N`` within ``1e-9`` relative of an integer is snapped to it before ``ceil``, so
  ``0.1·30`` gives 3 (not 4 from ``3.0000000000000004``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sparsity_gym.core.checks import unit_mask

DEFAULT_FRACTION: float = 0.1
_SNAP_RTOL: float = 1e-9

__all__ = ["DEFAULT_FRACTION", "lowest_fraction", "prune_count"]


def prune_count(n_active: int, fraction: float = DEFAULT_FRACTION, min_keep: int = 0) -> int:
    """Count the neurons one round removes: ``min(ceil(fraction·N), max(N − min_keep, 0))``.

    ``fraction·N`` within ``1e-9·max(1, fraction·N)`` of an integer is snapped to it before the ceiling.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction={fraction} must lie in [0, 1]")
    if n_active < 0:
        raise ValueError(f"n_active={n_active} must be >= 0")
    if min_keep < 0:
        raise ValueError(f"min_keep={min_keep} must be >= 0")
    prod = fraction * n_active
    nearest = round(prod)
    k = int(nearest) if abs(prod - nearest) <= _SNAP_RTOL * max(1.0, prod) else math.ceil(prod)
    return min(k, max(n_active - min_keep, 0))


def lowest_fraction(
    scores: Tensor,
    fraction: float = DEFAULT_FRACTION,
    active: Tensor | None = None,
    min_keep: int = 0,
) -> Tensor:
    """Select the lowest-scoring ``ceil(fraction·N)`` active neurons (CRITERIA.md §3).

    Parameters
    ----------
    scores : Tensor
        ``(M,)`` contribution scores of a layer's neurons (finite; NaN raises ``ValueError``).
    fraction : float
        ``x`` in ``[0, 1]``, default 0.1.
    active : Tensor, optional
        Bool ``(M,)``; only active neurons are counted (``N``) and selectable. Default: all.
    min_keep : int
        Keep at least this many active neurons (default 0: the spec's rule unchanged; ``ceil`` prunes the last
        neuron of a one-neuron layer). See :func:`prune_count`.

    Returns
    -------
    Tensor
        Long indices into ``M`` in removal order: ascending score, and among equal scores the higher index
        first.

    """
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D; got shape {tuple(scores.shape)}")
    m = scores.shape[0]
    device = scores.device
    active = unit_mask(active, m, device)
    vals = scores.detach()
    if bool(torch.isnan(vals[active]).any()):
        raise ValueError("scores contain NaN among the active neurons")
    idx = torch.nonzero(active).flatten()
    k = prune_count(idx.numel(), fraction, min_keep)
    if k == 0:
        return torch.zeros(0, dtype=torch.long, device=device)
    # Reverse the candidates so a stable ascending sort puts the higher index first among equal scores.
    idx = idx.flip(0)
    order = torch.sort(vals[idx], stable=True).indices
    return idx[order[:k]]
