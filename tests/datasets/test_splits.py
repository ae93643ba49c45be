import numpy as np
import pytest
import torch

from sparsity_gym.datasets.splits import available_datasets, load_dataset, stratified_split
from sparsity_gym.models.layers import find_prunable_layers
from sparsity_gym.models.zoo import available_networks, build_network


def test_digits_is_embedded_split_and_standardised():
    d = load_dataset("digits", seed=0)
    n = len(d.train_y) + len(d.val_y) + len(d.test_y)
    assert n == 1797 and d.num_classes == 10 and d.input_shape == (1, 8, 8)
    assert abs(len(d.test_y) - 0.2 * n) <= 10 and abs(len(d.val_y) - 0.2 * n) <= 10
    assert float(d.train_x.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(d.train_x.std()) == pytest.approx(1.0, abs=1e-3)
    for split in (d.train_y, d.val_y, d.test_y):  # stratified: every class in proportion
        counts = torch.bincount(split, minlength=10).float()
        assert float(counts.min()) / float(counts.max()) > 0.9


def test_split_is_disjoint_complete_and_seeded():
    labels = np.repeat(np.arange(5), 37)
    a = stratified_split(labels, seed=3)
    b = stratified_split(labels, seed=3)
    c = stratified_split(labels, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[2], c[2])
    union = np.concatenate(a)
    assert len(union) == len(labels) == len(np.unique(union))


def test_registries():
    assert {"digits", "synthetic"} <= set(available_datasets())
    assert {"mlp", "cnn"} <= set(available_networks())
    with pytest.raises(ValueError, match="dataset='cifar1000'"):
        load_dataset("cifar1000")


def test_zoo_networks_and_layer_discovery():
    mlp = build_network("mlp", (1, 8, 8), 10)
    layers = find_prunable_layers(mlp, (1, 8, 8))
    assert [(layer.fan_in, layer.fan_out) for layer in layers] == [(64, 256), (256, 256), (256, 10)]
    assert [layer.is_output for layer in layers] == [False, False, True]
    cnn = build_network("cnn", (1, 8, 8), 10)
    layers = find_prunable_layers(cnn, (1, 8, 8))
    assert [layer.kind for layer in layers] == ["conv", "conv", "linear"]
    assert [layer.output_positions for layer in layers] == [64, 16, 1]
    assert cnn(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_factory_signatures():
    built = build_network(lambda num_classes: torch.nn.Linear(3, num_classes), (3,), 7)
    assert built.out_features == 7
    with pytest.raises(ValueError, match=r"nn\.Module"):
        build_network(lambda: 42, (3,), 7)
