"""Datasets that ship with the install: ``digits`` (scikit-learn's wheel) and a generated ``synthetic`` one."""

from __future__ import annotations

import numpy as np

from sparsity_gym.datasets.splits import DatasetSplits, register_dataset, splits_from_arrays


@register_dataset("digits")
def load_digits(seed: int, root: str | None = None) -> DatasetSplits:
    """scikit-learn's embedded 8x8 digits (1797 images, 10 classes) as ``(n, 1, 8, 8)``; 60/20/20 split."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)[:, None, :, :]
    return splits_from_arrays("digits", images, np.asarray(bunch.target), seed)


@register_dataset("synthetic")
def load_synthetic(seed: int, root: str | None = None) -> DatasetSplits:
    """A tiny, learnable 4-class problem of ``(1, 4, 4)`` inputs (400 samples) for fast tests.

    Class means are fixed (generator seeded with 12345); ``seed`` only changes the noise draw and the split.
    """
    means = np.random.default_rng(12345).normal(size=(4, 1, 4, 4)).astype(np.float32)
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(4), 100)
    x = means[y] + 0.7 * rng.normal(size=(len(y), 1, 4, 4)).astype(np.float32)
    return splits_from_arrays("synthetic", x, y, seed)
