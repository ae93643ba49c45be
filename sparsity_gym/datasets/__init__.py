"""Datasets as in-memory tensor splits, their registry and the loaders.

Importing the package registers every loader explicitly: the embedded ones (:mod:`~sparsity_gym.datasets.embedded`,
:mod:`~sparsity_gym.datasets.mnist5k`, the generated MNIST-1D of :mod:`~sparsity_gym.datasets.mnist1d`) and the vision
ones read from a local ``data_root`` (:mod:`~sparsity_gym.datasets.vision_datasets`).
"""

from __future__ import annotations

from sparsity_gym.datasets import embedded, mnist1d, mnist5k
from sparsity_gym.datasets import vision_datasets as vision
from sparsity_gym.datasets.splits import DATASETS, DatasetSplits, available_datasets, load_dataset

vision.register(DATASETS)

__all__ = [
    "DATASETS",
    "DatasetSplits",
    "available_datasets",
    "embedded",
    "load_dataset",
    "mnist1d",
    "mnist5k",
    "vision",
]
