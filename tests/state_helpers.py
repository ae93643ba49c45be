"""Shared checks of explicit state: a disk round trip with ``weights_only=True`` and exact, recursive equality."""

import io
import math

import numpy as np
import torch


def roundtrip(state):
    """``state`` written by ``torch.save`` and read back by ``torch.load(weights_only=True)``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def assert_same(a, b, path="state"):
    """``a`` and ``b`` are equal bit for bit: same keys, same tensors (dtype, shape, values), same numbers."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), f"{path}: {type(b).__name__} is not a tensor"
        assert a.dtype == b.dtype and a.shape == b.shape, (
            f"{path}: {a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}"
        )
        a, b = a.cpu(), b.cpu()
        assert torch.equal(a, b) or (a.is_floating_point() and _equal_nan(a, b)), f"{path}: values differ"
        if a.is_floating_point():  # bit for bit: -0.0 is not 0.0
            assert torch.equal(torch.signbit(a), torch.signbit(b)), f"{path}: signs of zeros differ"
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), f"{path}: arrays differ"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{path}: keys {list(a)} vs {list(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{path}: {a!r} vs {b!r}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), f"{path}: {a!r} vs {b!r}"
    else:
        assert type(a) is type(b) and a == b, f"{path}: {a!r} vs {b!r}"


def _equal_nan(a, b):
    return bool(torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0)))


def optimizer_tensors(optimizer):
    """Every tensor of ``optimizer``'s per-parameter state, in parameter order (what a resumed run must match)."""
    return [
        (i, key, value)
        for i, p in enumerate(p for group in optimizer.param_groups for p in group["params"])
        for key, value in sorted(optimizer.state.get(p, {}).items())
        if torch.is_tensor(value)
    ]
