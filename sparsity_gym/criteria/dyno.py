"""DYNO grow-and-prune decisions and NORTH-Select growth (Maile et al., seed 000; CRITERIA.md §2).

The effective dimension itself is a statistic computed elsewhere (``sparsity_gym.stats``); this module takes
its counts and the buffered activations as plain tensors and decides how many units to prune/grow, which to
prune, and which new fan-in vectors to grow, and writes grown units into a fixed-capacity layer.

Conventions (named after CRITERIA.md §2):

- **Triggers**: ``n_prune = max(int((1−δ)·φ*·N − E), 0)``, ``n_grow = max(int(E' − (1+δ)·φ*·N), 0)`` with
  ``int`` truncation towards zero, ``N`` the width before the step, ``E`` the effective-dimension count now,
  ``E'`` the count after this step's pruning, ``φ*`` the ratio measured after the last structural change,
  ``δ = 3e-2``. (The paper prints ``min(0, |…|)``; the code and intent are ``max(…, 0)``.) *Float guard*:
  a value within ``1e-9·max(1, |value|)`` of an integer is snapped to that integer before truncation, so
  e.g. ``(1−0.1)·1.0·10 − 4`` gives 5, not 4.
- **Minimum width**: a Linear layer keeps at least as many neurons as classes, every layer at least one unit
  (:func:`clamp_prune_count`).
- **Prune selection** (:func:`select_prune`): first every dormant neuron (all-zero activations over the
  buffer), lowest index first; then greedily the neuron whose row of the cosine matrix ``C = ÂᵀÂ`` (columns
  normalised, dormant/inactive columns and the diagonal excluded) has the largest 2-norm, lowest index on
  ties; its row and column are then zeroed.
- **Growth** (:func:`north_select`): ``candidates_per_unit·n_grow`` candidate fan-in vectors drawn
  Kaiming-uniform with bound ``1/√fan_in`` and bias 0, scored by the norm of the residual of their activation
  outside the span of the existing neurons' activations; the ``n_grow`` best are kept (lowest index on ties).
  New units start with fan-out 0, bias 0 and optimizer state 0 (:func:`grow_units`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from sparsity_gym.core.checks import unit_mask

DEFAULT_DELTA: float = 3e-2
_SNAP_RTOL: float = 1e-9
_TIE_RTOL: float = 1e-10

__all__ = [
    "DEFAULT_DELTA",
    "clamp_prune_count",
    "grow_linear_units",
    "grow_units",
    "north_select",
    "north_select_scores",
    "prune_grow_counts",
    "select_prune",
    "zero_optimizer_state_rows",
]


def _trunc_snapped(value: float) -> int:
    """``int(value)`` (truncation towards zero) after snapping values within float noise of an integer."""
    nearest = round(value)
    if abs(value - nearest) <= _SNAP_RTOL * max(1.0, abs(value)):
        return int(nearest)
    return int(value)


def prune_grow_counts(
    phi_star: float, width: int, e_now: int, e_after: int, delta: float = DEFAULT_DELTA
) -> tuple[int, int]:
    """DYNO's trigger counts (CRITERIA.md §2).

    Parameters
    ----------
    phi_star : float
        ``φ*``, the effective-dimension ratio measured after the layer's last structural change (starts 1.0).
    width : int
        ``N``, the layer's width before this step (also used for growth, not the post-pruning width).
    e_now : int
        ``E``, the effective-dimension count now (number of singular values above ε).
    e_after : int
        ``E'``, the count after this step's pruning (equal to ``e_now`` when nothing is pruned).
    delta : float
        Trigger threshold ``δ`` (paper 3e-2).

    Returns
    -------
    tuple[int, int]
        ``(n_prune, n_grow)`` with ``n_prune = max(int((1−δ)·φ*·N − E), 0)`` and
        ``n_grow = max(int(E' − (1+δ)·φ*·N), 0)``; products evaluated left to right in float64, ``int``
        truncates, values within ``1e-9`` relative of an integer are snapped to it first.
        Worked: ``φ*=0.9, N=64``: ``E=E'=50`` → ``(5, 0)``; ``E=E'=60`` → ``(0, 0)``;
        ``E=E'=62`` → ``(0, 2)``.
        Not clamped to a minimum width: see :func:`clamp_prune_count`.

    """
    if width < 0:
        raise ValueError(f"width={width} must be >= 0")
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta={delta} must lie in [0, 1)")
    if not math.isfinite(phi_star) or phi_star < 0:
        raise ValueError(f"phi_star={phi_star} must be finite and >= 0")
    n_prune = max(_trunc_snapped((1.0 - delta) * phi_star * width - e_now), 0)
    n_grow = max(_trunc_snapped(e_after - (1.0 + delta) * phi_star * width), 0)
    return n_prune, n_grow


def clamp_prune_count(n_prune: int, width: int, min_units: int = 1) -> int:
    """Limit ``n_prune`` so that at least ``max(min_units, 1)`` units remain.

    Parameters
    ----------
    n_prune : int
        Requested number of units to prune.
    width : int
        Current number of active units.
    min_units : int
        Minimum to keep (number of classes for a Linear layer feeding the output; always at least 1).

    Returns
    -------
    int
        ``max(0, min(n_prune, width − max(min_units, 1)))``.

    """
    keep = max(int(min_units), 1)
    return max(0, min(int(n_prune), int(width) - keep))


def _argmax_lowest(values: Tensor) -> int:
    """Index of the maximum; lowest index among values within ``1e-10·max(1, max)`` of it (float ties)."""
    best = values.max()
    tol = _TIE_RTOL * max(float(best.abs()), 1.0)
    return int(torch.nonzero(values >= best - tol)[0, 0])


def select_prune(activations: Tensor, n_prune: int, active: Tensor | None = None) -> Tensor:
    """DYNO's SELECT_PRUNE: dormant neurons first, then greedy by cosine redundancy.

    Parameters
    ----------
    activations : Tensor
        Buffered post-activations ``H`` of shape ``(n, M)`` (a conv layer flattened to ``(n·h·w, C)``).
    n_prune : int
        Number of neurons to select, ``0 <= n_prune <= number of active neurons``.
    active : Tensor, optional
        Bool ``(M,)``; inactive (masked) neurons are neither selected nor part of ``C``. Default: all active.

    Returns
    -------
    Tensor
        Long ``(n_prune,)`` indices into ``M``, in selection order.

    Notes
    -----
    1. Dormant neurons — active columns that are exactly zero on every buffered row — are taken first,
       lowest index first.
    2. The remaining active columns are normalised to unit 2-norm (``Â``) and ``C = ÂᵀÂ`` is formed in
       float64 with its diagonal set to 0 (cosines with the *other* remaining neurons; since every
       remaining row would otherwise carry the same 1 on the diagonal, this does not change the argmax).
       Repeatedly the neuron whose row of ``C`` has the largest 2-norm is selected (lowest index among rows
       whose squared norm is within ``1e-10·max(1, max)`` of the maximum, which absorbs float noise), and
       its row and column are zeroed.

    """
    if activations.dim() != 2:
        raise ValueError(f"activations must be 2-D (n, M); got shape {tuple(activations.shape)}")
    m = activations.shape[1]
    device = activations.device
    active = unit_mask(active, m, device)
    n_active = int(active.sum())
    if not 0 <= n_prune <= n_active:
        raise ValueError(f"n_prune={n_prune} must lie in [0, {n_active}] (the number of active neurons)")
    if n_prune == 0:
        return torch.zeros(0, dtype=torch.long, device=device)

    acts = activations.detach().to(torch.float64)
    nonzero = (acts != 0).any(dim=0)
    dormant = torch.nonzero(active & ~nonzero).flatten()
    chosen = dormant[:n_prune].tolist()
    remaining = n_prune - len(chosen)
    if remaining > 0:
        live = torch.nonzero(active & nonzero).flatten()
        a_hat = acts[:, live] / acts[:, live].norm(dim=0, keepdim=True)
        cos = a_hat.T @ a_hat
        cos = (cos + cos.T) / 2
        cos.fill_diagonal_(0.0)
        sq = (cos * cos).sum(dim=1)
        taken = torch.zeros(live.numel(), dtype=torch.bool, device=device)
        for _ in range(remaining):
            scores = torch.where(taken, torch.full_like(sq, -math.inf), sq.clamp_min(0.0))
            k = _argmax_lowest(scores)
            chosen.append(int(live[k]))
            taken[k] = True
            sq -= cos[:, k] ** 2
            cos[k, :] = 0.0
            cos[:, k] = 0.0
    return torch.tensor(chosen, dtype=torch.long, device=device)


def north_select_scores(existing_acts: Tensor, candidate_acts: Tensor, rcond: float | None = None) -> Tensor:
    """NORTH-Select score: norm of each candidate activation's residual outside the existing span.

    Parameters
    ----------
    existing_acts : Tensor
        ``(n, M)`` activations of the existing (active) neurons on the buffered inputs; ``M`` may be 0.
    candidate_acts : Tensor
        ``(n, K)`` activations of the candidates on the same inputs.
    rcond : float, optional
        Relative singular-value cut-off defining the span's rank (robust to rank-deficient ``existing_acts``).
        Default: ``max(n, M) · eps`` of the input dtype (as ``numpy.linalg.matrix_rank``).

    Returns
    -------
    Tensor
        ``(K,)`` float residual norms ``‖(I − UUᵀ) a_k‖``, ``U`` an orthonormal basis (from the SVD, in
        float64) of the column span of ``existing_acts``. Not normalised by ``‖a_k‖``.

    Notes
    -----
    Worked (CRITERIA.md §2): inputs ``I₃``, existing fan-ins ``[[1,0,0],[0,1,0]]``, candidates
    ``[[1,1,0],[0,0,1],[.5,0,.5],[−1,−1,−1]]`` give ``[0, 1, 0.5, 0]`` **with ReLU activations**; with the
    identity activation (as CRITERIA.md's parenthesis says) the last candidate's residual is ``−e₃`` and the
    scores are ``[0, 1, 0.5, 1]``. The spec's numbers are reproduced by ReLU only.

    """
    if existing_acts.dim() != 2 or candidate_acts.dim() != 2:
        raise ValueError("existing_acts and candidate_acts must be 2-D (n, M) and (n, K)")
    if existing_acts.shape[0] != candidate_acts.shape[0]:
        raise ValueError(
            f"row counts differ: existing {existing_acts.shape[0]} vs candidates {candidate_acts.shape[0]}"
        )
    out_dtype = candidate_acts.dtype if candidate_acts.is_floating_point() else torch.float32
    cand = candidate_acts.detach().to(torch.float64)
    existing = existing_acts.detach().to(device=cand.device, dtype=torch.float64)
    n, m = existing.shape
    if m > 0 and n > 0:
        if rcond is None:
            eps_dtype = existing_acts.dtype if existing_acts.is_floating_point() else torch.float32
            rcond = max(n, m) * torch.finfo(eps_dtype).eps
        u, s, _ = torch.linalg.svd(existing, full_matrices=False)
        if s.numel() > 0 and float(s[0]) > 0:
            basis = u[:, s > rcond * s[0]]
            cand = cand - basis @ (basis.T @ cand)
    return cand.norm(dim=0).to(out_dtype)


def north_select(
    inputs: Tensor,
    existing_fan_in: Tensor,
    existing_bias: Tensor | None,
    n_grow: int,
    activation: Callable[[Tensor], Tensor],
    generator: torch.Generator,
    candidates_per_unit: int = 100,
) -> tuple[Tensor, Tensor]:
    """NORTH-Select growth: choose ``n_grow`` new fan-in vectors among random candidates.

    Parameters
    ----------
    inputs : Tensor
        ``(n, fan_in)`` buffered inputs of the layer (for a conv layer: unfolded patches
        ``(n·h·w, C_in·kh·kw)``, with fan-ins the flattened kernels).
    existing_fan_in : Tensor
        ``(M, fan_in)`` fan-in rows of the existing *active* neurons (``M`` may be 0).
    existing_bias : Tensor or None
        ``(M,)`` their biases (None = no bias).
    n_grow : int
        Number of units to grow (>= 0).
    activation : Callable[[Tensor], Tensor]
        The layer's nonlinearity, applied elementwise to pre-activations.
    generator : torch.Generator
        The only source of randomness; candidates are drawn on its device.
    candidates_per_unit : int
        Candidates drawn per grown unit (paper: 100).

    Returns
    -------
    tuple[Tensor, Tensor]
        ``new_fan_in`` of shape ``(n_grow, fan_in)`` and ``new_bias`` of shape ``(n_grow,)`` (zeros), in the
        dtype and on the device of ``inputs``.

    Notes
    -----
    Candidates are ``U(−1/√fan_in, 1/√fan_in)`` (Kaiming-uniform bound as stated in CRITERIA.md) with bias 0,
    drawn as one ``(candidates_per_unit·n_grow, fan_in)`` tensor from ``generator``. Scores are
    :func:`north_select_scores` of ``activation(inputs @ candᵀ)`` against
    ``activation(inputs @ existingᵀ + bias)``; the ``n_grow`` highest are kept, in decreasing score order,
    lowest candidate index first on ties (stable sort).

    """
    if inputs.dim() != 2:
        raise ValueError(f"inputs must be 2-D (n, fan_in); got shape {tuple(inputs.shape)}")
    fan_in = inputs.shape[1]
    if existing_fan_in.dim() != 2 or existing_fan_in.shape[1] != fan_in:
        raise ValueError(f"existing_fan_in must have shape (M, {fan_in}); got {tuple(existing_fan_in.shape)}")
    if n_grow < 0:
        raise ValueError(f"n_grow={n_grow} must be >= 0")
    if candidates_per_unit < 1:
        raise ValueError(f"candidates_per_unit={candidates_per_unit} must be >= 1")
    dtype = inputs.dtype if inputs.is_floating_point() else torch.float32
    x = inputs.detach().to(dtype)
    if n_grow == 0:
        return x.new_zeros((0, fan_in)), x.new_zeros(0)
    bound = 1.0 / math.sqrt(fan_in)
    n_cand = candidates_per_unit * n_grow
    cand = torch.rand((n_cand, fan_in), generator=generator, device=generator.device, dtype=dtype)
    cand = (cand * (2.0 * bound) - bound).to(x.device)
    with torch.no_grad():
        pre = x @ existing_fan_in.detach().to(x).T
        if existing_bias is not None:
            pre = pre + existing_bias.detach().to(x)
        existing_acts = activation(pre)
        cand_acts = activation(x @ cand.T)
    scores = north_select_scores(existing_acts, cand_acts)
    best = torch.sort(scores, descending=True, stable=True).indices[:n_grow]
    return cand[best].clone(), x.new_zeros(n_grow)


def zero_optimizer_state_rows(
    optimizer: torch.optim.Optimizer,
    param: Tensor,
    index: Tensor,
    dim: int = 0,
    keys: tuple[str, ...] | None = None,
) -> None:
    """Zero every per-element optimizer state tensor of ``param`` at ``index`` along ``dim``.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Any optimizer; its ``state[param]`` entries whose shape equals ``param.shape`` (e.g.
        ``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``) are modified in place. Scalar
        entries such as ``step`` are per-tensor and left alone. Nothing happens if there is no state yet.
    param : Tensor
        The parameter.
    index : Tensor
        Long indices (or a bool mask of length ``param.shape[dim]``) along ``dim``.
    dim : int
        0 for rows (a unit's fan-in), 1 for columns (a unit's fan-out in the next layer).
    keys : tuple of str, optional
        Only zero these state entries (default: all per-element entries).

    """
    state = optimizer.state.get(param)
    if not state:
        return
    for key, value in state.items():
        if keys is not None and key not in keys:
            continue
        if isinstance(value, Tensor) and value.shape == param.shape and value.dim() > 0:
            idx = index.to(value.device)
            if idx.dtype == torch.bool:
                idx = torch.nonzero(idx).flatten()
            value.index_fill_(dim, idx, 0)


def grow_units(
    layer: nn.Linear | nn.Conv1d | nn.Conv2d,
    next_layer: nn.Linear | nn.Conv1d | nn.Conv2d,
    new_fan_in: Tensor,
    new_bias: Tensor | None,
    slots: Tensor,
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Write grown units into given (inactive) slots of a fixed-capacity layer.

    Growth happens inside a pre-allocated layer: units beyond the current width are masked elsewhere, and
    growing activates masked slots. This function only writes parameters; activating the slots in the mask
    is the caller's job.

    Parameters
    ----------
    layer : nn.Linear, nn.Conv1d or nn.Conv2d
        The growing layer; ``weight[slots]`` receives ``new_fan_in`` (reshaped to the row shape, so a conv
        kernel may be given flattened) and ``bias[slots]`` receives ``new_bias`` (0 when None).
    next_layer : nn.Linear, nn.Conv1d or nn.Conv2d
        The consumer whose ``weight[:, slots]`` (fan-out of the new units) is set to 0. It must index the
        grown units along dim 1 (Linear→Linear or Conv2d→Conv2d with ``groups=1``).
    new_fan_in : Tensor
        ``(len(slots), fan_in)`` or ``(len(slots), *weight.shape[1:])``.
    new_bias : Tensor or None
        ``(len(slots),)``.
    slots : Tensor
        Long, distinct indices of the slots to fill.
    optimizer : torch.optim.Optimizer, optional
        If given, the optimizer state of the new units (rows of ``layer.weight``/``layer.bias``, columns of
        ``next_layer.weight``) is set to 0.

    """
    slots = slots.to(device=layer.weight.device, dtype=torch.long).flatten()
    k = slots.numel()
    cap = layer.weight.shape[0]
    if k and (int(slots.min()) < 0 or int(slots.max()) >= cap):
        raise ValueError(f"slots must lie in [0, {cap}); got {slots.tolist()}")
    if torch.unique(slots).numel() != k:
        raise ValueError(f"slots must be distinct; got {slots.tolist()}")
    row_shape = layer.weight.shape[1:]
    if new_fan_in.dim() < 1 or new_fan_in.shape[0] != k or new_fan_in.numel() != k * math.prod(row_shape):
        raise ValueError(
            f"new_fan_in must have shape ({k}, {math.prod(row_shape)}) or ({k}, *{tuple(row_shape)}); "
            f"got {tuple(new_fan_in.shape)}"
        )
    if next_layer.weight.shape[1] != cap:
        raise ValueError(f"next_layer.weight dim 1 ({next_layer.weight.shape[1]}) must equal layer width ({cap})")
    with torch.no_grad():
        layer.weight[slots] = new_fan_in.detach().reshape(k, *row_shape).to(layer.weight)
        if layer.bias is not None:
            if new_bias is None:
                layer.bias[slots] = 0.0
            else:
                layer.bias[slots] = new_bias.detach().reshape(k).to(layer.bias)
        next_layer.weight[:, slots] = 0.0
    if optimizer is not None:
        zero_optimizer_state_rows(optimizer, layer.weight, slots, dim=0)
        if layer.bias is not None:
            zero_optimizer_state_rows(optimizer, layer.bias, slots, dim=0)
        zero_optimizer_state_rows(optimizer, next_layer.weight, slots, dim=1)


def grow_linear_units(
    layer: nn.Linear,
    next_layer: nn.Linear,
    new_fan_in: Tensor,
    new_bias: Tensor | None,
    slots: Tensor,
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Linear→Linear case of :func:`grow_units` (same semantics)."""
    grow_units(layer, next_layer, new_fan_in, new_bias, slots, optimizer)
