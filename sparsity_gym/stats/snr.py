"""Gradient signal-to-noise ratio per weight (Siems et al., seed 001; CRITERIA.md §1).

Conventions (all named in CRITERIA.md §1):

* **Per-sample gradients of the mean loss's terms.** With a loss that is the *mean* over a batch of B
  samples, ``L = (1/B) Σ_n ℓ_n``, the per-sample gradient is ``g_n = ∇ℓ_n`` and ``ḡ = mean_n g_n`` is the
  ``.grad`` of ``L``.  The output gradients ``δ = ∂L/∂y`` seen by a backward hook are ``(1/B)·∂ℓ_n/∂y_n``,
  so a Linear layer's per-sample gradient is ``g_n = B·δ_n x_nᵀ`` (``grad_scale = B`` below).
* **Population variance** ``s² = mean_n (g_n − ḡ)² = Σ_n g_n²/B − ḡ²`` (clamped at 0 against rounding);
  ``unbiased=True`` multiplies it by ``B/(B−1)``.
* ``snr = ḡ² / (s²/B)``; ``s² = 0`` and ``ḡ ≠ 0`` gives ``+inf`` (kept); ``0/0`` gives ``0``.
* **No per-sample gradients for Linear layers**: ``Σ_n g_n² = grad_scale²·(δ²)ᵀ(x²)``, one extra matmul.
  Conv2d layers materialise per-sample gradients through ``unfold`` + ``einsum``, chunked over the batch;
  Conv1d layers are unfolded the same way, as a Conv2d of kernel ``(1, k)`` on inputs of height one.
* **Smoothing** (paper A.6): ``snr_t = γ·snr_{t−1} + (1−γ)·snr_now`` with ``γ = 0.01^(1/m)``,
  ``m = r_m·T`` (not rounded), ``r_m = 0.02``; T=1000 gives γ ≈ 0.794.  Before smoothing, ``snr_now`` is
  capped at ``inf_cap`` (default 1e12) so that the smoothed value stays finite; the unsmoothed value of the
  last step, ``inf`` included, is still available as
  :attr:`GradientMomentCollector.snr_now <sparsity_gym.stats.snr_collector.GradientMomentCollector.snr_now>`.

The SNR is invariant to a common scale of all per-sample gradients, so a loss that is a scaled mean
(e.g. divided by the number of gradient-accumulation steps) gives the same SNR; only the reported moments
change.  The per-sample decomposition assumes that samples do not interact in the forward pass
(BatchNorm in training mode couples them: the decomposition then attributes the batch gradient by
output-gradient rows and is no longer the gradient of the per-sample loss).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sparsity_gym.stats.inputs import as_float, check_positive_int

__all__ = ["DEFAULT_INF_CAP", "smoothing_gamma", "snr_from_moments"]

DEFAULT_INF_CAP = 1e12


def snr_from_moments(grad_mean: Tensor, grad_sq_sum: Tensor, batch_size: int, unbiased: bool = False) -> Tensor:
    """Per-weight gradient SNR from the first moment and the sum of squared per-sample gradients.

    Parameters
    ----------
    grad_mean : Tensor
        ``ḡ = mean_n g_n`` (the ``.grad`` of the mean loss).
    grad_sq_sum : Tensor
        ``Σ_n g_n²``, same shape as ``grad_mean``.
    batch_size : int
        B, the number of per-sample gradients.
    unbiased : bool, default False
        False: population variance ``s² = Σg²/B − ḡ²`` (the paper's convention). True: ``s²·B/(B−1)``
        (needs B >= 2).

    Returns
    -------
    Tensor
        ``snr = ḡ² / (s²/B)`` (float32 or float64); ``+inf`` where ``s² = 0`` and ``ḡ ≠ 0``, ``0`` where
        both are 0 (a NaN input also gives 0).  ``s²`` is clamped at 0 first (the difference
        ``Σg²/B − ḡ²`` can round below 0).

    """
    check_positive_int(batch_size, "batch_size")
    if unbiased and batch_size < 2:
        raise ValueError("unbiased=True needs batch_size >= 2")
    if grad_mean.shape != grad_sq_sum.shape:
        raise ValueError(f"shape mismatch: {tuple(grad_mean.shape)} vs {tuple(grad_sq_sum.shape)}")
    mean = as_float(grad_mean)
    sq_sum = as_float(grad_sq_sum).to(mean.dtype)
    # s² = Σg²/B − ḡ², clamped at 0; snr = ḡ²·B/s² (unbiased: s²·B/(B−1), i.e. snr = ḡ²·(B−1)/s²)
    var = torch.addcmul(sq_sum / batch_size, mean, mean, value=-1.0).clamp_min_(0.0)
    factor = float(batch_size - 1 if unbiased else batch_size)
    snr = mean.square().mul_(factor).div_(var)  # x/0 -> +inf; 0/0 -> nan
    # ḡ² ≥ 0 and s² ≥ 0, so the only NaN is 0/0 (or a NaN gradient): both become 0; +inf is kept
    return snr.nan_to_num_(nan=0.0, posinf=math.inf)


def smoothing_gamma(total_iterations: int, r_m: float = 0.02) -> float:
    """Smoothing factor ``γ = 0.01^(1/m)`` with ``m = r_m·T`` (paper A.6; m is not rounded).

    Parameters
    ----------
    total_iterations : int
        T, the episode's number of training iterations.
    r_m : float, default 0.02
        Fraction of T over which the weight of an old value decays to 1 %.

    Returns
    -------
    float
        γ in (0, 1); T = 1000 gives m = 20 and γ ≈ 0.794.

    """
    check_positive_int(total_iterations, "total_iterations")
    m = r_m * total_iterations
    if not m > 0:
        raise ValueError(f"r_m * total_iterations must be > 0; got {m}")
    return 0.01 ** (1.0 / m)
