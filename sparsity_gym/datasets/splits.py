"""Datasets as in-memory tensor splits, and the registry every loader is added to.

Each loader returns a :class:`DatasetSplits` with a seeded, stratified train / validation / test split: the
validation part feeds rewards and observations, the test part is only used for reported results. Nothing is
ever downloaded by default: ``digits`` ships inside scikit-learn's wheel, ``synthetic`` is generated, and
``mnist``, ``fashion_mnist`` and ``cifar10`` (:mod:`sparsity_gym.datasets.vision_datasets`) are read from ``data_root``.
The package's ``__init__`` registers the loaders of :mod:`~sparsity_gym.datasets.embedded` and
:mod:`~sparsity_gym.datasets.vision_datasets`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from sparsity_gym.core.registry import Registry


@dataclass(frozen=True)
class DatasetSplits:
    """Train, validation and test tensors of one dataset (inputs float32 ``(n, C, H, W)``, labels int64)."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample, without the batch dimension."""
        return tuple(self.train_x.shape[1:])

    def to(self, device: torch.device | str) -> DatasetSplits:
        """The same splits on ``device``."""
        moved = {k: getattr(self, k).to(device) for k in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")}
        return DatasetSplits(name=self.name, num_classes=self.num_classes, **moved)


DatasetLoader = Callable[[int, "str | None"], DatasetSplits]
DATASETS: Registry[DatasetLoader] = Registry("dataset")


def register_dataset(name: str) -> Callable[[DatasetLoader], DatasetLoader]:
    """Register ``loader(seed, root) -> DatasetSplits`` under ``name`` (a decorator)."""
    return DATASETS.register(name)


def available_datasets() -> tuple[str, ...]:
    """Names accepted by :func:`load_dataset`."""
    return DATASETS.names()


def load_dataset(name: str, seed: int = 0, root: str | None = None) -> DatasetSplits:
    """Load dataset ``name`` with the split of ``seed`` (``root`` for datasets read from disk)."""
    return DATASETS.get(name)(seed, root)


def stratified_split(
    labels: np.ndarray, seed: int, val_fraction: float = 0.2, test_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a stratified train / validation / test split, seeded by ``seed``.

    Every class is split on its own in the given fractions (rounded to the nearest sample), so each split
    holds every class in the dataset's proportions. Indices within each split are sorted.
    """
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_test = round(test_fraction * len(idx))
        n_val = round(val_fraction * len(idx))
        test.append(idx[:n_test])
        val.append(idx[n_test : n_test + n_val])
        train.append(idx[n_test + n_val :])
    return tuple(np.sort(np.concatenate(part)) for part in (train, val, test))  # type: ignore[return-value]


def splits_from_arrays(name: str, x: np.ndarray, y: np.ndarray, seed: int) -> DatasetSplits:
    """Split arrays stratified and standardise inputs with the train split's mean and std (one scalar each)."""
    train, val, test = stratified_split(y, seed)
    x = x.astype(np.float32)
    mean, std = float(x[train].mean()), float(x[train].std()) or 1.0
    x = (x - mean) / std
    tx, ty = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    return DatasetSplits(
        name=name,
        train_x=tx[train],
        train_y=ty[train],
        val_x=tx[val],
        val_y=ty[val],
        test_x=tx[test],
        test_y=ty[test],
        num_classes=int(y.max()) + 1,
    )
