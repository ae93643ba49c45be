"""Effective dimension (CRITERIA.md §2) against numpy SVD, and the FIFO activation buffer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsity_gym.stats import (
    ActivationBuffer,
    effective_dimension,
    effective_dimension_count,
    singular_values,
)


def low_rank(n: int, m: int, sigmas: list[float], seed: int) -> torch.Tensor:
    """An (n, m) matrix whose singular values are exactly ``sigmas`` (then zeros)."""
    rng = np.random.default_rng(seed)
    k = len(sigmas)
    u, _ = np.linalg.qr(rng.standard_normal((n, k)))
    v, _ = np.linalg.qr(rng.standard_normal((m, k)))
    return torch.from_numpy(u @ np.diag(sigmas) @ v.T)


def numpy_count(h: np.ndarray, scale: float, eps: float = 1e-2) -> int:
    return int((np.linalg.svd(h / np.sqrt(scale), compute_uv=False) > eps).sum())


@pytest.mark.parametrize("n,m", [(50, 8), (8, 20), (20, 20)])
@pytest.mark.parametrize("scaling", ["sqrt_n", "sqrt_m"])
def test_matches_numpy_svd(n, m, scaling):
    h = torch.randn(n, m, generator=torch.Generator().manual_seed(n * m)).double()
    h[:, 0] = h[:, 1] * 2  # one exact linear dependency
    scale = n if scaling == "sqrt_n" else m
    expected = np.linalg.svd(h.numpy() / np.sqrt(scale), compute_uv=False)
    got = singular_values(h, scaling).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert effective_dimension_count(h, scaling=scaling) == numpy_count(h.numpy(), scale)
    assert effective_dimension(h, scaling=scaling) == numpy_count(h.numpy(), scale) / m


@pytest.mark.parametrize("n", [60, 6])  # Gram path (n > M) and svdvals path (n <= M)
def test_threshold_counts_known_spectrum(n):
    m = 10
    # singular values of H/√n: [3, 1, 0.05, 0.02, 0.005] -> 4 above ε = 1e-2
    sigmas = [s * np.sqrt(n) for s in (3.0, 1.0, 0.05, 0.02, 0.005)]
    h = low_rank(n, m, sigmas, seed=n).float()
    assert effective_dimension_count(h) == 4
    assert effective_dimension(h) == pytest.approx(0.4)
    assert effective_dimension_count(h, eps=0.03) == 3
    # √M scaling: σ·√(n/M)
    expected = sum(s * np.sqrt(n / m) > 1e-2 for s in (3.0, 1.0, 0.05, 0.02, 0.005))
    assert effective_dimension_count(h, scaling="sqrt_m") == expected


def test_conv_flattening_channel_major():
    g = torch.Generator().manual_seed(3)
    acts = torch.randn(4, 5, 3, 2, generator=g)
    acts[:, 4] = acts[:, 0] + acts[:, 1]  # channel 4 is dependent: rank 4
    flat = acts.permute(0, 2, 3, 1).reshape(-1, 5).numpy()
    assert flat.shape == (24, 5)
    assert effective_dimension_count(acts) == numpy_count(flat, 24) == 4
    assert effective_dimension(acts) == pytest.approx(0.8)
    assert effective_dimension(acts, scaling="sqrt_m") == numpy_count(flat, 5) / 5


def test_invalid_inputs():
    with pytest.raises(ValueError):
        effective_dimension(torch.zeros(3, 4, 5, 6, 7))  # (n, C, L) is a Conv1d's layout, 5-D is nothing
    with pytest.raises(ValueError):
        effective_dimension(torch.zeros(0, 4))
    with pytest.raises(ValueError):
        effective_dimension(torch.zeros(3, 4), scaling="sqrt_x")  # type: ignore[arg-type]
    assert effective_dimension(torch.zeros(5, 3)) == 0.0


def test_buffer_fifo_keeps_last_rows_without_reallocation():
    buf = ActivationBuffer(3, min_rows=4)
    assert buf.capacity == 6 and len(buf) == 0 and not buf.ready
    chunks = [
        torch.arange(i * 100, i * 100 + 3 * k, dtype=torch.float32).reshape(k, 3)
        for i, k in enumerate([2, 3, 1, 4, 2, 7, 5])
    ]
    seen = torch.empty(0, 3)
    ptr = None
    for chunk in chunks:
        buf.push(chunk)
        if ptr is None:
            ptr = buf._data.data_ptr()
        assert buf._data.data_ptr() == ptr
        seen = torch.cat([seen, chunk])
        assert torch.equal(buf.rows, seen[-6:])
        assert len(buf) == min(len(seen), 6)
        assert buf.ready == (len(buf) > 3)
    buf.clear()
    assert len(buf) == 0 and buf.rows.shape == (0, 3) and not buf.ready
    buf.push(torch.ones(4, 3))
    assert buf.ready and buf._data.data_ptr() == ptr


def test_buffer_capacity_and_conv_rows():
    assert ActivationBuffer(5, min_rows=3).capacity == 10
    assert ActivationBuffer(5, min_rows=64).capacity == 64
    buf = ActivationBuffer(2)
    acts = torch.arange(16, dtype=torch.float32).reshape(2, 2, 2, 2)
    buf.push(acts)
    assert torch.equal(buf.rows, acts.permute(0, 2, 3, 1).reshape(-1, 2)[-4:])
    with pytest.raises(ValueError):
        buf.push(torch.zeros(1, 3))
    eager = ActivationBuffer(2, device="cpu", dtype=torch.float64)
    eager.push(torch.ones(1, 2, dtype=torch.float16))
    assert eager.rows.dtype == torch.float64
