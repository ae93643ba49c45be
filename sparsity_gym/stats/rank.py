"""Effective dimension of a layer's activations and their FIFO buffer (DYNO, Maile et al., seed 000).

Conventions (CRITERIA.md §2):

* A Linear layer's activations are ``H`` of shape ``(n, M)``; a conv layer's ``(n, C, h, w)`` are flattened
  **channel-major** to ``(n·h·w, C)`` with ``permute(0, 2, 3, 1).reshape(-1, C)``; ``n`` below is the
  number of rows *after* flattening.
* ``φ_ED = |{σ ∈ svd(H/√n) : σ > ε}| / M`` with ``ε = 1e-2`` (eq. 2, ``scaling="sqrt_n"``, the paper);
  ``scaling="sqrt_m"`` divides by ``√M`` instead (the authors' code).  The comparison is strict.
* When ``n > M`` the singular values come from the eigenvalues of the ``M×M`` Gram matrix,
  ``σ² = eig(HᵀH/scale²)``, accumulated in float64, ``σ = sqrt(max(eig, 0))``; otherwise from
  ``torch.linalg.svdvals`` of ``H/scale`` in float64.
* The FIFO buffer keeps the last ``max(2·M, min_rows)`` rows; it is :attr:`ActivationBuffer.ready` (a
  decision may be taken) only when it holds more rows than neurons.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor

from sparsity_gym.core.explicit_state import check_keys, state_int, state_tensor
from sparsity_gym.stats.inputs import check_positive_int, flatten_units

__all__ = ["ActivationBuffer", "effective_dimension", "effective_dimension_count", "singular_values"]

Scaling = Literal["sqrt_n", "sqrt_m"]


def singular_values(activations: Tensor, scaling: Scaling = "sqrt_n") -> Tensor:
    """Singular values of ``H/√n`` (or ``H/√M``) in float64, descending.

    Parameters
    ----------
    activations : Tensor
        ``(n, M)`` or ``(n, C, h, w)`` (flattened channel-major to ``(n·h·w, C)``).
    scaling : {"sqrt_n", "sqrt_m"}, default "sqrt_n"
        Divide H by √(rows) (paper) or √(neurons) (authors' code).

    Returns
    -------
    Tensor
        ``min(n, M)`` singular values (Gram-matrix path when ``n > M``: σ = sqrt(max(eig, 0))).

    """
    h = flatten_units(activations)
    h64, scale2 = _float64_rows(h, scaling)
    n, m = h64.shape
    if n > m:
        eig = torch.linalg.eigvalsh((h64.T @ h64) / scale2)
        return eig.clamp_min(0.0).sqrt().flip(0)
    return torch.linalg.svdvals(h64 / math.sqrt(scale2))


def effective_dimension_count(
    activations: Tensor, eps: float = 1e-2, scaling: Scaling = "sqrt_n", method: str = "auto"
) -> int:
    """Count E, the number of singular values of ``H/√n`` (or ``H/√M``) strictly greater than ``eps``.

    See :func:`singular_values` for shapes and conventions. ``method="eig"`` counts the singular values;
    ``"inertia"`` (what ``"auto"`` uses when n > M) counts without any eigenvalue: by Sylvester's law of
    inertia, E is the number of positive eigenvalues of ``G − eps²·I`` (G the M×M Gram matrix ``HᵀH/n``),
    which is the number of positive eigenvalues of D in its LDLᵀ (Bunch–Kaufman) factorisation, about 4× cheaper
    than ``eigvalsh`` for M = 256. Both are exact for a matrix within rounding of G.
    """
    h = flatten_units(activations)
    n, m = h.shape
    if method == "eig" or (method == "auto" and n <= m):
        return int((singular_values(activations, scaling) > eps).sum().item())
    if method not in ("auto", "inertia"):
        raise ValueError(f"method={method!r} is not allowed; expected 'auto', 'eig' or 'inertia'")
    h64, scale2 = _float64_rows(h, scaling)
    gram = (h64.T @ h64) / scale2
    gram.diagonal().sub_(eps * eps)
    return positive_inertia(gram)


def _float64_rows(h: Tensor, scaling: Scaling) -> tuple[Tensor, float]:
    """Validate flattened activations ``(n, M)`` and the scaling; return them in float64 with ``scale²``."""
    n, m = h.shape
    if n == 0 or m == 0:
        raise ValueError(f"activations must have at least one row and one unit; got {tuple(h.shape)}")
    if scaling not in ("sqrt_n", "sqrt_m"):
        raise ValueError(f"scaling must be 'sqrt_n' or 'sqrt_m'; got {scaling!r}")
    return h.detach().to(torch.float64), float(n if scaling == "sqrt_n" else m)


def positive_inertia(symmetric: Tensor) -> int:
    """Number of positive eigenvalues of a symmetric matrix, from its LDLᵀ factorisation (no eigenvalues).

    D has 1×1 and 2×2 diagonal blocks (LAPACK ``sytrf`` pivots: a negative pivot pair marks a 2×2 block). A
    1×1 block counts if positive; a 2×2 block ``[[a, b], [b, c]]`` has one positive eigenvalue if its
    determinant is negative, else two or none by the sign of its trace.
    """
    # ldl_factor_ex: an exactly singular D (a zero pivot, i.e. an eigenvalue exactly on the threshold) is a
    # completed factorisation for LAPACK's sytrf; ldl_factor would turn its info code into an error.
    ld, pivots, _ = torch.linalg.ldl_factor_ex(symmetric)
    diag = ld.diagonal().tolist()
    sub = ld.diagonal(-1).tolist()
    piv = pivots.tolist()
    count, k, m = 0, 0, len(diag)
    while k < m:
        if piv[k] > 0 or k + 1 == m:
            count += diag[k] > 0
            k += 1
            continue
        a, b, c = diag[k], sub[k], diag[k + 1]
        det = a * c - b * b
        count += 1 if det < 0 else (2 if a + c > 0 else 0) if det > 0 else int(a + c > 0)
        k += 2
    return count


def effective_dimension(activations: Tensor, eps: float = 1e-2, scaling: Scaling = "sqrt_n") -> float:
    """Effective dimension ``φ_ED = E / M`` (eq. 2), in [0, 1].

    Parameters
    ----------
    activations : Tensor
        Post-activations ``(n, M)`` or ``(n, C, h, w)`` (flattened channel-major, M = C).
    eps : float, default 1e-2
        Threshold ε on the singular values (strict ``σ > ε``).
    scaling : {"sqrt_n", "sqrt_m"}, default "sqrt_n"
        ``H/√n`` (paper, n = flattened rows) or ``H/√M`` (authors' code).

    Returns
    -------
    float
        ``effective_dimension_count(...) / M``.

    """
    num_units = activations.shape[1]
    return effective_dimension_count(activations, eps, scaling) / num_units


class ActivationBuffer:
    """FIFO ring buffer of the last ``capacity = max(2·M, min_rows)`` rows of a layer's activations.

    Storage is allocated once (on the first :meth:`push`, on that tensor's device, or at construction when
    ``device`` is given); pushes copy rows into it without reallocation.  Conv activations
    ``(n, C, h, w)`` are flattened channel-major to ``(n·h·w, C)`` before being stored.  When the layer's
    width changes, make a new buffer.

    Parameters
    ----------
    num_neurons : int
        M, the layer's width (columns of a row).
    min_rows : int, default 0
        Lower bound on the capacity.
    dtype : torch.dtype, default torch.float32
        Storage dtype (pushed rows are cast to it, detached).
    device : torch.device or str, optional
        Allocate eagerly on this device; otherwise the first push decides.

    """

    def __init__(
        self,
        num_neurons: int,
        min_rows: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        self.num_neurons = check_positive_int(num_neurons, "num_neurons")
        if min_rows < 0:
            raise ValueError("min_rows must be >= 0")
        self.capacity = max(2 * num_neurons, int(min_rows))
        self.dtype = dtype
        self._data: Tensor | None = None
        if device is not None:
            self._data = torch.empty((self.capacity, num_neurons), dtype=dtype, device=device)
        self._next = 0  # index of the slot the next row goes to
        self._count = 0

    def push(self, activations: Tensor) -> None:
        """Append rows (oldest rows are overwritten once the buffer is full)."""
        rows = flatten_units(activations).detach()
        if rows.shape[1] != self.num_neurons:
            raise ValueError(f"expected {self.num_neurons} units per row; got {rows.shape[1]}")
        if self._data is None:
            self._data = torch.empty((self.capacity, self.num_neurons), dtype=self.dtype, device=rows.device)
        n = rows.shape[0]
        if n == 0:
            return
        if n >= self.capacity:
            self._data.copy_(rows[n - self.capacity :])
            self._next = 0
            self._count = self.capacity
            return
        first = min(n, self.capacity - self._next)
        self._data[self._next : self._next + first].copy_(rows[:first])
        if first < n:
            self._data[: n - first].copy_(rows[first:])
        self._next = (self._next + n) % self.capacity
        self._count = min(self._count + n, self.capacity)

    @property
    def rows(self) -> Tensor:
        """The stored rows, oldest first, ``(len(self), M)`` (a new tensor when wrapped, else a view)."""
        if self._data is None or self._count == 0:
            device = None if self._data is None else self._data.device
            return torch.empty((0, self.num_neurons), dtype=self.dtype, device=device)
        if self._count < self.capacity:
            return self._data[: self._count]
        if self._next == 0:
            return self._data
        return torch.cat((self._data[self._next :], self._data[: self._next]))

    def __len__(self) -> int:
        return self._count

    @property
    def ready(self) -> bool:
        """True when the buffer holds more rows than neurons (a decision may be taken)."""
        return self._count > self.num_neurons

    def clear(self) -> None:
        """Forget all rows (storage is kept)."""
        self._next = 0
        self._count = 0

    def state_dict(self) -> dict[str, Any]:
        """The FIFO as plain tensors (a copy): ``rows``, ``(len(self), M)`` oldest first, and ``capacity`` (int).

        The rows in order are all the FIFO is: a buffer that restores them returns the same rows after any
        further pushes.
        """
        return {"rows": self.rows.detach().clone(), "capacity": self.capacity}

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict` (rows copied onto the buffer's device, or theirs before the first push).

        A state of another buffer (another width or capacity) is refused with a ``ValueError``.
        """
        check_keys("ActivationBuffer", state, ("rows", "capacity"))
        capacity = state_int("ActivationBuffer", "capacity", state["capacity"], low=1)
        if capacity != self.capacity:
            raise ValueError(f"ActivationBuffer: capacity={capacity}; expected {self.capacity} (this buffer's)")
        rows = state_tensor("ActivationBuffer", "rows", state["rows"], dim=2)
        if rows.shape[1] != self.num_neurons or rows.shape[0] > self.capacity:
            raise ValueError(
                f"ActivationBuffer: rows has shape {tuple(rows.shape)}; expected (n, {self.num_neurons}) with "
                f"n <= {self.capacity}"
            )
        self.clear()
        if len(rows):
            self.push(rows)
