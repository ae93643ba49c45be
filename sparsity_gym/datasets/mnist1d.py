"""MNIST-1D (Greydanus, 2020), generated offline with the ``mnist1d`` package; never downloaded.

Greydanus, S. (2020). *Scaling down deep learning* (arXiv:2011.14439), §2: ten 1-D templates of the digits,
padded, shifted, sheared, scaled and noised into sequences of length 40. The package's
``mnist1d.data.make_dataset(get_dataset_args())`` builds the dataset from a seed (the dataset args' ``seed``,
42 by default: 5000 samples, 500 per class). Its ``get_dataset`` would download a pickle: it is never called.
The package's own 80/20 split is ignored; both parts are pooled and split stratified 60/20/20 with the
project's split seed (:func:`~sparsity_gym.datasets.splits.splits_from_arrays`). Inputs are ``(n, 1, 40)``
float32 (one channel: the layout Conv1d takes).
"""

from __future__ import annotations

import functools
import random

import numpy as np

from sparsity_gym.datasets.splits import DatasetSplits, register_dataset, splits_from_arrays

DEFAULT_GENERATOR_SEED = 42
SEQUENCE_LENGTH = 40


@functools.lru_cache(maxsize=4)
def generate_mnist1d(
    generator_seed: int = DEFAULT_GENERATOR_SEED, num_samples: int = 5000
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-1D's ``(x, y)`` as arrays ``(num_samples, 40)`` float32 and ``(num_samples,)`` int64.

    Calls ``mnist1d.data.make_dataset`` (offline generation). The package seeds Python's and NumPy's global
    generators; their states are restored afterwards, so loading the dataset does not disturb the caller.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = int(generator_seed)
    args.num_samples = int(num_samples)
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


@register_dataset("mnist1d")
def load_mnist1d(seed: int, root: str | None = None) -> DatasetSplits:
    """MNIST-1D (generator seed 42) as ``(n, 1, 40)`` float32 with a stratified 60/20/20 split of ``seed``."""
    x, y = generate_mnist1d(DEFAULT_GENERATOR_SEED)
    return splits_from_arrays("mnist1d", x[:, None, :].copy(), y.copy(), seed)
