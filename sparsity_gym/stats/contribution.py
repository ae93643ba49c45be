"""Neuron contribution scores (Reddy et al., seed 002; CRITERIA.md §3).

For a hidden layer with N neurons, activations ``a`` (after the nonlinearity) over a window of samples, and
the next layer's weight ``W`` of shape ``(M, N)``, per sample s and next-layer neuron j:

    c[s,j,k] = |W[j,k]|·|a[s,k]| / Σ_i |W[j,i]|·|a[s,i]|        (0 where the denominator is 0)
    C_avg[k] = mean over all samples of all forward passes in the window and over j of c[s,j,k]
    C_max[k] = max over the same of c[s,j,k]
    score    = λ1·C_avg + λ2·C_max                               (λ1 = λ2 = 0.5)

Implementation conventions:

* ``C_avg`` never builds the ``(S, M, N)`` tensor:
  ``Σ_{s,j} c[s,j,k] = Σ_s |a[s,k]|·((1/D[s,:]) @ |W|)[k]`` with ``D = |a| @ |W|ᵀ`` and ``1/D := 0`` where
  ``D = 0``; it is divided by the count ``S·M`` (a window can mix passes with different M).
* ``C_max[k] = max_s |a[s,k]|·max_j |W[j,k]|/D[s,j]`` needs a max-times product, computed over chunks of
  samples: at most ``chunk_size × M × N`` temporary elements (``chunk_size`` chosen so that this is about
  2²² elements unless given).
* Conv layers: a channel's activation is the spatial mean of ``|a|`` (``(n, C, h, w) → (n, C)``, a Conv1d's
  ``(n, C, L) → (n, C)``); a next conv layer's kernel weight is its ℓ1 norm (``(C_out, C, kh, kw) → (C_out, C)``,
  or ``(C_out, C, k)``).  A next **Linear** layer
  after ``nn.Flatten`` of a conv map (``in_features = C·p``, channel-major as ``Flatten`` on NCHW gives,
  with p = h·w, or p = 1 after global pooling) is grouped per channel: the ℓ1 norm over each channel's p
  columns.  Other shapes raise ``ValueError``.
* The authors' code scores ``|pre-activation|`` with ``λ2 = 0`` (``activation="abs_preact"``): that choice
  belongs to the caller, who passes the pre-activations (their absolute value is taken here anyway).
* Sums are accumulated in float64.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from sparsity_gym.core.explicit_state import check_keys, optional_tensor, snapshot, state_int
from sparsity_gym.stats.inputs import as_float, check_positive_int

__all__ = ["ContributionAccumulator", "contribution", "contribution_score"]

_TARGET_CHUNK_ELEMENTS = 1 << 22


def _reduce_inputs(activations: Tensor, next_weight: Tensor) -> tuple[Tensor, Tensor]:
    """Return ``(|a|, |W|)`` as ``(S, N)`` and ``(M, N)`` following the conv conventions."""
    a = as_float(activations.detach()).abs()
    w = as_float(next_weight.detach()).abs().to(a.dtype)
    if a.ndim in (3, 4):
        a = a.mean(dim=tuple(range(2, a.ndim)))
    elif a.ndim != 2:
        raise ValueError(f"activations must be (n, N), (n, C, L) or (n, C, h, w); got {tuple(activations.shape)}")
    num_units = a.shape[1]
    if w.ndim in (3, 4):
        w = w.sum(dim=tuple(range(2, w.ndim)))
    elif w.ndim == 2 and activations.ndim in (3, 4) and w.shape[1] != num_units:
        if w.shape[1] % num_units != 0:
            raise ValueError(f"next Linear layer has {w.shape[1]} inputs, not a multiple of the {num_units} channels")
        w = w.reshape(w.shape[0], num_units, -1).sum(-1)
    elif w.ndim != 2:
        raise ValueError(f"next_weight must be (M, N) or (M, C, kh, kw); got {tuple(next_weight.shape)}")
    if w.shape[1] != num_units:
        raise ValueError(f"next_weight has {w.shape[1]} input units, activations have {num_units}")
    return a, w


def _contribution_sums(
    activations: Tensor, next_weight: Tensor, chunk_size: int | None = None, with_max: bool = True
) -> tuple[Tensor, int, Tensor | None]:
    """Return ``(Σ_{s,j} c[s,j,:], S·M, max_{s,j} c[s,j,:])`` in float64 for one batch."""
    a, w = _reduce_inputs(activations, next_weight)
    a = a.to(torch.float64)
    w = w.to(torch.float64)
    samples, num_units = a.shape
    fan_out = w.shape[0]
    denom = a @ w.T  # (S, M)
    inv = torch.where(denom > 0, 1.0 / denom, torch.zeros_like(denom))
    total = (a * (inv @ w)).sum(0)
    if not with_max:
        return total, samples * fan_out, None
    if chunk_size is None:
        chunk_size = max(1, _TARGET_CHUNK_ELEMENTS // max(1, fan_out * num_units))
    check_positive_int(chunk_size, "chunk_size")
    c_max = torch.zeros(num_units, dtype=torch.float64, device=a.device)
    for start in range(0, samples, chunk_size):
        inv_c = inv[start : start + chunk_size]  # (s, M)
        best = (inv_c.unsqueeze(2) * w.unsqueeze(0)).amax(dim=1)  # (s, N): max_j |W[j,k]|/D[s,j]
        c_max = torch.maximum(c_max, (a[start : start + chunk_size] * best).amax(dim=0))
    return total, samples * fan_out, c_max


def contribution(activations: Tensor, next_weight: Tensor, chunk_size: int | None = None) -> tuple[Tensor, Tensor]:
    """Average and maximum contribution of each neuron over one batch.

    Parameters
    ----------
    activations : Tensor
        The layer's outputs after the nonlinearity, ``(n, N)``, ``(n, C, L)`` or ``(n, C, h, w)`` (reduced to
        the spatial mean of ``|a|``).  Pass ``|pre-activation|`` for the authors' code variant.
    next_weight : Tensor
        The next layer's weight: ``(M, N)`` (Linear), ``(M, C, kh, kw)`` or ``(M, C, k)`` (conv; ℓ1 per kernel) or
        ``(M, C·p)`` (Linear after flattening a conv map; ℓ1 per channel's p columns).
    chunk_size : int, optional
        Samples per chunk for ``C_max`` (memory ``chunk_size × M × N``); about 2²² elements if None.

    Returns
    -------
    tuple of Tensor
        ``(c_avg, c_max)``, float64, shape ``(N,)``.  Worked example (CRITERIA.md §3): a=[[1,0,0],[2,1,1]],
        W=[[1,1,1],[2,0,−1]] → C_avg=[0.825, 0.0625, 0.1125], C_max=[1, 0.25, 0.25].

    """
    total, count, c_max = _contribution_sums(activations, next_weight, chunk_size)
    if count == 0:
        raise ValueError("activations hold no sample")
    return total / count, c_max


def contribution_score(c_avg: Tensor, c_max: Tensor, lambda1: float = 0.5, lambda2: float = 0.5) -> Tensor:
    """Return ``λ1·C_avg + λ2·C_max`` (λ1 = λ2 = 0.5 by default; the authors' code uses λ2 = 0)."""
    return lambda1 * c_avg + lambda2 * c_max


class ContributionAccumulator:
    """Streaming ``C_avg`` / ``C_max`` over the forward passes of a window.

    Each :meth:`update` adds one batch: the sum of ``c[s,j,k]`` over its samples and next-layer neurons,
    the count ``S·M`` and the running maximum.  ``C_avg`` is the total sum over the total count, i.e. the
    mean over all samples of all passes and over j (CRITERIA.md §3).  Whether the caller passes
    post-activations or ``|pre-activation|`` (``activation="abs_preact"``) is the caller's choice.

    Parameters
    ----------
    num_neurons : int
        N, the width of the scored layer.
    chunk_size : int, optional
        Passed to the ``C_max`` computation (see :func:`contribution`).
    track_max : bool, default True
        ``False`` skips ``C_max`` (an ``S×M×N`` pass per batch, about 45× the cost of ``C_avg`` on a
        256-256 layer): only :attr:`c_avg` is available, as for the authors' code's ``λ2 = 0``.

    """

    def __init__(self, num_neurons: int, chunk_size: int | None = None, track_max: bool = True) -> None:
        self.num_neurons = check_positive_int(num_neurons, "num_neurons")
        self.chunk_size = chunk_size
        self.track_max = track_max
        self._sum: Tensor | None = None
        self._max: Tensor | None = None
        self.count = 0
        self.num_samples = 0

    def update(self, activations: Tensor, next_weight: Tensor) -> None:
        """Add one forward pass's activations (see :func:`contribution` for shapes)."""
        total, count, c_max = _contribution_sums(activations, next_weight, self.chunk_size, self.track_max)
        if total.shape[0] != self.num_neurons:
            raise ValueError(f"expected {self.num_neurons} neurons; got {total.shape[0]}")
        if self._sum is None:
            self._sum, self._max = total, c_max
        else:
            self._sum = self._sum + total.to(self._sum.device)
            if c_max is not None and self._max is not None:
                self._max = torch.maximum(self._max, c_max.to(self._max.device))
        self.count += count
        self.num_samples += activations.shape[0]

    def _require(self) -> Tensor:
        if self._sum is None or self.count == 0:
            raise RuntimeError("no sample accumulated since the last reset()")
        return self._sum

    @property
    def c_avg(self) -> Tensor:
        """Mean contribution over the window's samples and next-layer neurons, float64 ``(N,)``."""
        return self._require() / self.count

    @property
    def c_max(self) -> Tensor:
        """Maximum contribution over the window, float64 ``(N,)``."""
        self._require()
        if self._max is None:
            raise RuntimeError("C_max is not tracked by this accumulator (track_max=False)")
        return self._max.clone()

    def score(self, lambda1: float = 0.5, lambda2: float = 0.5) -> Tensor:
        """Return ``λ1·C_avg + λ2·C_max`` over the window."""
        return contribution_score(self.c_avg, self.c_max, lambda1, lambda2)

    def reset(self) -> None:
        """Start a new window."""
        self._sum = None
        self._max = None
        self.count = 0
        self.num_samples = 0

    def state_dict(self) -> dict[str, Any]:
        """The window so far, as plain tensors (copies).

        ``sum``: float64 ``(N,)``, ``Σ c[s,j,:]`` over the window (``None`` before its first update); ``max``:
        float64 ``(N,)``, the running ``C_max`` (``None`` before the first update or without ``track_max``);
        ``count``: ``Σ S·M`` (int); ``num_samples``: samples seen (int).
        """
        return {
            "sum": snapshot(self._sum),
            "max": snapshot(self._max),
            "count": self.count,
            "num_samples": self.num_samples,
        }

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict` (tensors copied as they are).

        A state of another accumulator (another width, ``C_max`` tracked or not) is refused with a ``ValueError``.
        """
        owner = "ContributionAccumulator"
        check_keys(owner, state, ("sum", "max", "count", "num_samples"))
        started = state["sum"] is not None
        total = optional_tensor(owner, "sum", state["sum"], started, (self.num_neurons,))
        c_max = optional_tensor(owner, "max", state["max"], started and self.track_max, (self.num_neurons,))
        count = state_int(owner, "count", state["count"])
        num_samples = state_int(owner, "num_samples", state["num_samples"])
        self._sum, self._max = snapshot(total), snapshot(c_max)
        self.count, self.num_samples = count, num_samples
