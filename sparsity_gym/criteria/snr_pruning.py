"""Gradient-SNR pruning decisions (Siems et al., seed 001; CRITERIA.md §1).

This module holds the *decision* half of SNR pruning: given per-weight SNR values (computed, and smoothed with
:func:`sparsity_gym.stats.smoothing_gamma`, by ``sparsity_gym.stats``) and the dense weights, it builds the keep
masks (run by the ``snr`` selector's threshold rule in :mod:`sparsity_gym.masks.selectors`); it also holds the
loss-based hold and the burn-in rule (run by the env at every decision). Everything here takes plain tensors and
is free of randomness.

Conventions (named after CRITERIA.md §1):

- **SNR mask**: ``keep_snr = snr > 1`` (strict; ``snr == 1`` is pruned, ``+inf`` is kept, NaN is pruned).
- **SNR sparsity** ``sp``: the fraction of weights with ``keep_snr == False``, measured over all layers
  together (``magnitude_scope="global"``) or per layer (``magnitude_scope="layer"``).
- **Magnitude mask** (DPF): keeps exactly ``k = round((1 - sp) * n)`` weights of largest ``|θ|``, where ``n``
  is the number of weights in the scope. ``k`` is computed as the integer count of ``keep_snr`` in the scope,
  which *is* ``(1 - sp) * n`` in exact arithmetic, so no float rounding can move it.
  Ties in ``|θ|`` are broken by a stable sort: the weight with the lower flat index is kept first. With the
  global scope the flat index runs over the layers in the ``weights`` dict's iteration order, each layer
  flattened row-major (C order).
- **Combination**: the paper's text decides: a weight is pruned only where both masks agree to prune, so
  ``keep = keep_snr | keep_mag`` (``combine="or"``, the default). ``combine="and"`` reproduces the
  Algorithm-1 reading, ``keep = keep_snr & keep_mag``.
- **Hold** (:class:`LossHold`): pruning pauses while the smoothed training loss is above the best smoothed
  loss seen so far and resumes when that best is reached again.
- **Burn-in** (:func:`burn_in_done`): no pruning during the first ``bin_steps`` iterations (one epoch by
  default in the paper).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from sparsity_gym.core.checks import check_choice
from sparsity_gym.core.explicit_state import check_keys

COMBINE_MODES: tuple[str, ...] = ("or", "and")
MAGNITUDE_SCOPES: tuple[str, ...] = ("global", "layer")

__all__ = [
    "COMBINE_MODES",
    "MAGNITUDE_SCOPES",
    "LossHold",
    "burn_in_done",
    "magnitude_keep_mask",
    "snr_keep_masks",
]


def magnitude_keep_mask(weights: Tensor, k: int) -> Tensor:
    """Keep exactly the ``k`` weights of largest magnitude.

    Parameters
    ----------
    weights : Tensor
        Any shape; flattened row-major (C order) for ranking.
    k : int
        Number of weights to keep, ``0 <= k <= weights.numel()``.

    Returns
    -------
    Tensor
        Bool tensor of ``weights``' shape with exactly ``k`` True entries. Ties in ``|θ|`` are broken by a
        stable descending sort, so among equal magnitudes the lower flat index is kept first.

    """
    n = weights.numel()
    if not 0 <= k <= n:
        raise ValueError(f"k={k} must lie in [0, {n}]")
    flat = weights.detach().reshape(-1).abs()
    order = torch.sort(flat, descending=True, stable=True).indices
    keep = torch.zeros(n, dtype=torch.bool, device=weights.device)
    keep[order[:k]] = True
    return keep.reshape(weights.shape)


def snr_keep_masks(
    snr: Mapping[str, Tensor],
    weights: Mapping[str, Tensor],
    combine: str = "or",
    magnitude_scope: str = "global",
) -> dict[str, Tensor]:
    """Keep masks of SNR pruning: ``keep = keep_snr OR keep_mag`` (CRITERIA.md §1, Algorithm 1).

    Parameters
    ----------
    snr : Mapping[str, Tensor]
        Per-weight (smoothed) SNR per layer name, same shapes as ``weights``. ``+inf`` is allowed (kept).
    weights : Mapping[str, Tensor]
        The dense weights ``θ`` per layer name (the unpruned model, as in DPF). Their iteration order defines
        the global flat index used for tie-breaking.
    combine : {"or", "and"}
        ``"or"`` (default, the paper's text): a weight is pruned only where the SNR mask *and* the magnitude
        mask agree to prune. ``"and"``: the Algorithm-1 reading, a weight is kept only where both keep it.
    magnitude_scope : {"global", "layer"}
        ``"global"`` (default, like DPF): the SNR sparsity ``sp`` is measured over all layers together and
        the magnitude mask keeps the ``(1 - sp)`` fraction of largest ``|θ|`` over all layers together.
        ``"layer"``: both are done per layer.

    Returns
    -------
    dict[str, Tensor]
        Bool keep masks (True = active), same keys (in ``weights`` order) and shapes as ``weights``.

    Notes
    -----
    ``keep_snr = snr > 1`` strictly (NaN compares False, so it is pruned by the SNR mask). The magnitude mask
    keeps exactly ``round((1 - sp) * n) = count(keep_snr)`` weights in its scope; ties in ``|θ|`` keep the
    lower flat index first (stable sort). See :func:`magnitude_keep_mask`.

    """
    check_choice("combine", combine, COMBINE_MODES)
    check_choice("magnitude_scope", magnitude_scope, MAGNITUDE_SCOPES)
    if set(snr) != set(weights):
        raise ValueError(f"snr and weights must have the same layer names; got {sorted(snr)} vs {sorted(weights)}")
    names = list(weights)
    for name in names:
        if snr[name].shape != weights[name].shape:
            raise ValueError(
                f"snr[{name!r}] has shape {tuple(snr[name].shape)}, weights has {tuple(weights[name].shape)}"
            )
    keep_snr = {name: (snr[name].detach() > 1).to(weights[name].device) for name in names}

    keep_mag: dict[str, Tensor] = {}
    if magnitude_scope == "layer":
        for name in names:
            keep_mag[name] = magnitude_keep_mask(weights[name], int(keep_snr[name].sum().item()))
    elif names:
        k = sum(int(keep_snr[name].sum().item()) for name in names)
        device = weights[names[0]].device
        flat = torch.cat([weights[name].detach().reshape(-1).to(device) for name in names])
        flat_keep = magnitude_keep_mask(flat, k)
        offset = 0
        for name in names:
            n = weights[name].numel()
            chunk = flat_keep[offset : offset + n]
            keep_mag[name] = chunk.reshape(weights[name].shape).to(weights[name].device)
            offset += n

    if combine == "or":
        return {name: keep_snr[name] | keep_mag[name] for name in names}
    return {name: keep_snr[name] & keep_mag[name] for name in names}


def burn_in_done(iteration: int, bin_steps: int) -> bool:
    """Whether SNR pruning may act at ``iteration`` (0-based count of optimizer steps already taken).

    No pruning during the first ``bin_steps`` iterations: returns ``iteration >= bin_steps``. (Algorithm 1
    prints ``t > bin_steps``, one iteration later; the difference is immaterial and we follow the text
    "no pruning during the first epoch".)
    """
    if bin_steps < 0:
        raise ValueError(f"bin_steps={bin_steps} must be >= 0")
    return iteration >= bin_steps


class LossHold:
    """Loss-based hold of SNR pruning (paper §4: "deactivates pruning when the training loss increases").

    Exact rule, per call of :meth:`update` with the current training loss ``L_t``:

    1. smoothed loss ``s_t = β·s_{t−1} + (1−β)·L_t`` (``s_0 = L_0``; ``β = smoothing``, 0 = no smoothing);
    2. pruning is allowed iff ``s_t <= best_{t−1}``, the minimum of all previous smoothed losses
       (``best`` starts at ``+inf``, so the first call allows pruning);
    3. ``best_t = min(best_{t−1}, s_t)``.

    So pruning pauses as soon as the smoothed loss rises above its best so far and resumes when the best is
    reached (or beaten) again. A non-finite loss returns False and leaves the state unchanged.

    Parameters
    ----------
    smoothing : float
        ``β`` in ``[0, 1)``.

    """

    def __init__(self, smoothing: float = 0.0) -> None:
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing={smoothing} must lie in [0, 1)")
        self.smoothing = float(smoothing)
        self.smoothed: float | None = None
        self.best: float = math.inf

    def reset(self) -> None:
        """Forget the loss history (start of a new run)."""
        self.smoothed = None
        self.best = math.inf

    def state_dict(self) -> dict[str, Any]:
        """The loss history it decides from: ``smoothed`` and ``best`` (floats).

        ``smoothed`` is ``s_t`` (``None`` before the first finite loss), ``best`` the best smoothed loss so far
        (``inf`` before it).
        """
        return {"smoothed": self.smoothed, "best": self.best}

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict`; a value that is not a float (``smoothed``: or ``None``) is a ``ValueError``."""
        check_keys("LossHold", state, ("smoothed", "best"))
        smoothed, best = state["smoothed"], state["best"]
        if smoothed is not None and not isinstance(smoothed, float):
            raise ValueError(f"LossHold: smoothed={smoothed!r}; expected a float or None")
        if not isinstance(best, float):
            raise ValueError(f"LossHold: best={best!r}; expected a float")
        self.smoothed = smoothed
        self.best = best

    def update(self, loss: float) -> bool:
        """Feed the current training loss; return True when pruning is allowed now."""
        loss = float(loss)
        if not math.isfinite(loss):
            return False
        if self.smoothed is None:
            self.smoothed = loss
        else:
            self.smoothed = self.smoothing * self.smoothed + (1.0 - self.smoothing) * loss
        allowed = self.smoothed <= self.best
        self.best = min(self.best, self.smoothed)
        return allowed
