"""Neuronal equilibrium, NEq (Bragagnolo et al., seed 004; CRITERIA.md §4).

Conventions:

* At each evaluation a fixed validation subset, in a fixed order, goes through the network; neuron i's
  outputs over all samples (and all positions for a conv channel) are flattened into one vector ``y_i^t``:
  ``(n, N)`` gives the columns, ``(n, C, h, w)`` (any ``ndim >= 3``: units on dim 1) gives, per channel,
  the ``n·h·w`` values.
* ``φ_i^t = cos(y_i^t, y_i^{t−1})``, one cosine over the whole vector, computed in **float64** (inputs of
  any precision are upcast, never half).  Both vectors zero → 1; exactly one zero → 0.  Clamped to [−1, 1].
* ``Δφ^t = φ^t − φ^{t−1}``; ``v^t = Δφ^t − μ·v^{t−1}`` with ``v`` starting at 0, ``μ = 0.5``; a neuron is at
  equilibrium when ``|v^t| < ε`` (``ε = 1e-3``), ``variant="paper"``.  ``variant="code"`` is the authors'
  main-branch recursion ``v^t = Δφ^t + μ·v^{t−1}`` with ``|v^t| ≤ ε``.
* Timeline: evaluation 1 stores the outputs; evaluation 2 gives the first φ; evaluation 3 the first Δφ and
  v.  :attr:`EquilibriumTracker.at_equilibrium` is all False before the third evaluation (no neuron is
  frozen before v has been computed once).
* Previous outputs are stored in float32 to save memory.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from sparsity_gym.core.explicit_state import check_keys, optional_tensor, snapshot, state_int, state_tensor
from sparsity_gym.stats.inputs import check_positive_int

__all__ = ["EquilibriumTracker", "neuron_similarity"]

Variant = Literal["paper", "code"]


def _neuron_vectors(outputs: Tensor) -> Tensor:
    """Return ``(N, values)``: each unit's outputs over all samples and positions (units on dim 1)."""
    if outputs.ndim < 2:
        raise ValueError(f"outputs must be (n, N) or (n, C, ...); got {tuple(outputs.shape)}")
    return outputs.detach().transpose(0, 1).reshape(outputs.shape[1], -1)


def _vectors64(outputs: Tensor, device: torch.device | None = None) -> Tensor:
    """:func:`_neuron_vectors` in float64 (on ``device``; its layout too: a 2-D input's stays a transposed view)."""
    return _neuron_vectors(outputs).to(device=device if device is not None else outputs.device, dtype=torch.float64)


def _cosine(prev: Tensor, norm_prev: Tensor, cur: Tensor, norm_cur: Tensor) -> Tensor:
    """The per-neuron cosine of :func:`neuron_similarity` from the float64 vectors and their norms."""
    dot = (prev * cur).sum(1)
    zero_prev = norm_prev == 0
    zero_cur = norm_cur == 0
    denom = torch.where(zero_prev | zero_cur, torch.ones_like(norm_prev), norm_prev * norm_cur)
    cos = (dot / denom).clamp(-1.0, 1.0)
    cos = torch.where(zero_prev ^ zero_cur, torch.zeros_like(cos), cos)
    return torch.where(zero_prev & zero_cur, torch.ones_like(cos), cos)


def neuron_similarity(previous: Tensor, current: Tensor) -> Tensor:
    """Cosine similarity per neuron between two evaluations' outputs, in float64.

    Parameters
    ----------
    previous, current : Tensor
        Outputs on the same samples in the same order, ``(n, N)`` or ``(n, C, h, w)``.

    Returns
    -------
    Tensor
        float64 ``(N,)``: ``cos(y_prev, y_cur)``; 1 where both vectors are zero, 0 where exactly one is.

    """
    if previous.shape != current.shape:
        raise ValueError(f"shape mismatch: {tuple(previous.shape)} vs {tuple(current.shape)}")
    prev = _vectors64(previous)
    cur = _vectors64(current, prev.device)
    return _cosine(prev, torch.linalg.vector_norm(prev, dim=1), cur, torch.linalg.vector_norm(cur, dim=1))


class EquilibriumTracker:
    """Track φ, Δφ and the velocity v of one layer's neurons across evaluations.

    Parameters
    ----------
    num_neurons : int
        N (channels for a conv layer).
    mu : float, default 0.5
        Momentum μ of the velocity.
    eps : float, default 1e-3
        Equilibrium threshold ε.
    variant : {"paper", "code"}, default "paper"
        ``"paper"``: ``v^t = Δφ^t − μ·v^{t−1}``, ``|v| < ε``.  ``"code"``: ``v^t = Δφ^t + μ·v^{t−1}``,
        ``|v| ≤ ε``.

    """

    def __init__(self, num_neurons: int, mu: float = 0.5, eps: float = 1e-3, variant: Variant = "paper") -> None:
        self.num_neurons = check_positive_int(num_neurons, "num_neurons")
        if variant not in ("paper", "code"):
            raise ValueError(f"variant must be 'paper' or 'code'; got {variant!r}")
        if eps < 0:
            raise ValueError("eps must be >= 0")
        self.mu = float(mu)
        self.eps = float(eps)
        self.variant: Variant = variant
        self.reset()

    def reset(self) -> None:
        """Forget all evaluations (v back to 0)."""
        self._previous: Tensor | None = None
        self._phi: Tensor | None = None
        self._delta_phi: Tensor | None = None
        self._velocity = torch.zeros(self.num_neurons, dtype=torch.float64)
        self.num_updates = 0
        self._vectors: tuple[Tensor, Tensor] | None = None  # the last outputs' float64 vectors and norms (a cache)

    def update(self, outputs: Tensor) -> None:
        """Record one evaluation's outputs on the fixed validation subset, ``(n, N)`` or ``(n, C, h, w)``."""
        if outputs.ndim < 2 or outputs.shape[1] != self.num_neurons:
            shape = tuple(outputs.shape)
            raise ValueError(f"expected outputs with {self.num_neurons} units on dim 1; got {shape}")
        current = outputs.detach().to(torch.float32)
        vectors = _vectors64(current)
        vectors_norm = (vectors, torch.linalg.vector_norm(vectors, dim=1))
        if self._previous is not None:
            # neuron_similarity(previous, current), the previous outputs' vectors and norms kept from their update
            previous = self._vectors
            if previous is None:
                prev = _vectors64(self._previous)
                previous = (prev, torch.linalg.vector_norm(prev, dim=1))
            phi = _cosine(*previous, *vectors_norm)
            if self._phi is not None:
                delta = phi - self._phi.to(phi.device)
                velocity = self._velocity.to(phi.device)
                sign = -1.0 if self.variant == "paper" else 1.0
                self._velocity = delta + sign * self.mu * velocity
                self._delta_phi = delta
            self._phi = phi
        self._previous = current
        self._vectors = vectors_norm
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        """Everything the next evaluation builds on, as plain tensors (copies).

        ``previous``: float32 outputs of the last evaluation (their shape, units on dim 1), ``None`` before the
        first; ``phi``: float64 ``(N,)`` φ, ``None`` before the second; ``delta_phi``: float64 ``(N,)`` Δφ,
        ``None`` before the third; ``velocity``: float64 ``(N,)`` v; ``num_updates``: evaluations seen (int).
        """
        return {
            "previous": snapshot(self._previous),
            "phi": snapshot(self.phi),
            "delta_phi": snapshot(self.delta_phi),
            "velocity": snapshot(self.velocity),
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict` (tensors copied as they are).

        A state of another layer (another number of neurons) is refused with a ``ValueError``.
        """
        owner = "EquilibriumTracker"
        check_keys(owner, state, ("previous", "phi", "delta_phi", "velocity", "num_updates"))
        previous = state["previous"]
        if previous is not None:
            state_tensor(owner, "previous", previous)
            if previous.dim() < 2 or previous.shape[1] != self.num_neurons:
                shape = tuple(previous.shape)
                raise ValueError(f"{owner}: previous has shape {shape}; expected {self.num_neurons} units on dim 1")
        units = (self.num_neurons,)
        phi = optional_tensor(owner, "phi", state["phi"], state["phi"] is not None, units)
        delta = optional_tensor(owner, "delta_phi", state["delta_phi"], state["delta_phi"] is not None, units)
        velocity = state_tensor(owner, "velocity", state["velocity"], units)
        num_updates = state_int(owner, "num_updates", state["num_updates"])
        self._previous, self._phi, self._delta_phi = snapshot(previous), snapshot(phi), snapshot(delta)
        self._velocity = velocity.detach().clone()
        self.num_updates = num_updates
        self._vectors = None

    @property
    def phi(self) -> Tensor | None:
        """φ of the last evaluation (float64), None before the second evaluation."""
        return self._phi

    @property
    def delta_phi(self) -> Tensor | None:
        """Δφ of the last evaluation (float64), None before the third evaluation."""
        return self._delta_phi

    @property
    def velocity(self) -> Tensor:
        """Velocity v (float64); zeros before the third evaluation."""
        return self._velocity

    @property
    def velocity_ready(self) -> bool:
        """True once v has been computed at least once (from the third evaluation on)."""
        return self._delta_phi is not None

    @property
    def at_equilibrium(self) -> Tensor:
        """Boolean mask of neurons at equilibrium; all False before the third evaluation."""
        if not self.velocity_ready:
            return torch.zeros(self.num_neurons, dtype=torch.bool, device=self._velocity.device)
        magnitude = self._velocity.abs()
        return magnitude < self.eps if self.variant == "paper" else magnitude <= self.eps
