import random
import socket
import urllib.request

import numpy as np
import pytest
import torch

from sparsity_gym.datasets import available_datasets, load_dataset
from sparsity_gym.datasets.mnist1d import generate_mnist1d


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach the network fails loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    requests = pytest.importorskip("requests")
    monkeypatch.setattr(requests, "get", refuse)
    monkeypatch.setattr(requests.Session, "request", refuse)


def test_registered():
    assert "mnist1d" in available_datasets()


def test_loads_offline_with_shapes_and_classes(no_network, tmp_path, monkeypatch):
    generate_mnist1d.cache_clear()  # really generate, under the network ban
    monkeypatch.chdir(tmp_path)  # get_dataset would write a pickle here: nothing may appear
    data = load_dataset("mnist1d", seed=0)
    assert list(tmp_path.iterdir()) == []
    assert data.input_shape == (1, 40)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert len(data.train_x) + len(data.val_x) + len(data.test_x) == 5000
    assert (len(data.train_x), len(data.val_x), len(data.test_x)) == (3000, 1000, 1000)
    assert data.num_classes == 10
    for y in (data.train_y, data.val_y, data.test_y):
        counts = torch.bincount(y, minlength=10)
        assert counts.min() == counts.max()  # 500 per class, split stratified
    assert torch.isfinite(data.train_x).all()
    assert abs(float(data.train_x.mean())) < 1e-4 and abs(float(data.train_x.std()) - 1.0) < 1e-3


def test_deterministic_and_seeded_split(no_network):
    a, b, c = load_dataset("mnist1d", seed=1), load_dataset("mnist1d", seed=1), load_dataset("mnist1d", seed=2)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_x, c.train_x)


def test_matches_package_generation_and_keeps_global_rng(no_network):
    from mnist1d.data import get_dataset_args, make_dataset

    np.random.seed(7)
    random.seed(7)
    expected_np, expected_py = np.random.rand(), random.random()
    np.random.seed(7)
    random.seed(7)
    x, y = generate_mnist1d(42, num_samples=300)  # the loader uses 5000; 300 keeps the test fast
    assert (np.random.rand(), random.random()) == (expected_np, expected_py)
    args = get_dataset_args()
    args.num_samples = 300
    ref = make_dataset(args)
    assert np.allclose(x, np.concatenate([ref["x"], ref["x_test"]]).astype(np.float32))
    assert np.array_equal(y, np.concatenate([ref["y"], ref["y_test"]]))
    assert x.shape == (300, 40)
