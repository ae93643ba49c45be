"""MNIST / Fashion-MNIST / CIFAR-10 read by torchvision's real loaders from small files in the real formats."""

import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsity_gym.datasets.splits import available_datasets, load_dataset
from sparsity_gym.datasets.vision_datasets import SPECS, VAL_FRACTION, load_cifar10, main
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.sparsity_env import SparsityEnv

N_TRAIN, N_TEST = 100, 20  # 10 training images per class: one per class goes to validation
MEANS = {"mnist": [0.1307], "fashion_mnist": [0.2860], "cifar10": [0.4914, 0.4822, 0.4465]}
STDS = {"mnist": [0.3081], "fashion_mnist": [0.3530], "cifar10": [0.2470, 0.2435, 0.2616]}


def _write_idx(path: Path, array: np.ndarray) -> None:
    """The idx format: zero, zero, type 0x08 (ubyte), ndim; big-endian uint32 sizes; the raw bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _labels(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.repeat(np.arange(10), n // 10)).astype(np.uint8)


def write_idx_dataset(root: Path, folder: str, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {
        "train_x": rng.integers(0, 256, size=(N_TRAIN, 28, 28), dtype=np.uint8),
        "train_y": _labels(N_TRAIN, rng),
        "test_x": rng.integers(0, 256, size=(N_TEST, 28, 28), dtype=np.uint8),
        "test_y": _labels(N_TEST, rng),
    }
    _write_idx(raw / "train-images-idx3-ubyte", arrays["train_x"])
    _write_idx(raw / "train-labels-idx1-ubyte", arrays["train_y"])
    _write_idx(raw / "t10k-images-idx3-ubyte", arrays["test_x"])
    _write_idx(raw / "t10k-labels-idx1-ubyte", arrays["test_y"])
    arrays["train_x"], arrays["test_x"] = arrays["train_x"][:, None], arrays["test_x"][:, None]
    return arrays


def _write_batch(path: Path, images: np.ndarray, labels: np.ndarray, name: str) -> None:
    entry = {
        "batch_label": name,
        "labels": [int(v) for v in labels],
        "data": images.reshape(len(images), 3 * 32 * 32),  # rows: 1024 red, 1024 green, 1024 blue
        "filenames": [f"img_{i}.png" for i in range(len(images))],
    }
    path.write_bytes(pickle.dumps(entry, protocol=2))


def write_cifar(root: Path, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    arrays = {
        "train_x": rng.integers(0, 256, size=(N_TRAIN, 3, 32, 32), dtype=np.uint8),
        "train_y": _labels(N_TRAIN, rng),
        "test_x": rng.integers(0, 256, size=(N_TEST, 3, 32, 32), dtype=np.uint8),
        "test_y": _labels(N_TEST, rng),
    }
    per_batch = N_TRAIN // 5
    for b in range(5):
        part = slice(b * per_batch, (b + 1) * per_batch)
        _write_batch(folder / f"data_batch_{b + 1}", arrays["train_x"][part], arrays["train_y"][part], f"batch {b}")
    _write_batch(folder / "test_batch", arrays["test_x"], arrays["test_y"], "testing batch")
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    meta = {"num_cases_per_batch": per_batch, "label_names": names, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return arrays


def write_dataset(name: str, root: Path) -> dict[str, np.ndarray]:
    if name == "cifar10":
        return write_cifar(root)
    return write_idx_dataset(root, "MNIST" if name == "mnist" else "FashionMNIST")


def expected_inputs(name: str, images: np.ndarray) -> np.ndarray:
    mean = np.asarray(MEANS[name], dtype=np.float64)[None, :, None, None]
    std = np.asarray(STDS[name], dtype=np.float64)[None, :, None, None]
    return (images.astype(np.float64) / 255.0 - mean) / std


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_round_trip_split_and_normalisation(name, tmp_path):
    written = write_dataset(name, tmp_path)
    d = load_dataset(name, seed=3, root=str(tmp_path))
    channels, side = (3, 32) if name == "cifar10" else (1, 28)
    assert d.name == name and d.num_classes == 10 and d.input_shape == (channels, side, side)
    for x, y in ((d.train_x, d.train_y), (d.val_x, d.val_y), (d.test_x, d.test_y)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[0] == y.shape[0]
    # the official test set is the test split, in file order
    np.testing.assert_allclose(d.test_x.numpy(), expected_inputs(name, written["test_x"]), atol=1e-5)
    np.testing.assert_array_equal(d.test_y.numpy(), written["test_y"])
    # train + validation is the official train set, every image with its own label
    assert len(d.train_y) + len(d.val_y) == N_TRAIN
    assert len(d.val_y) == round(VAL_FRACTION * N_TRAIN)
    ours = np.concatenate([d.train_x.numpy(), d.val_x.numpy()])
    labels = np.concatenate([d.train_y.numpy(), d.val_y.numpy()])
    reference = expected_inputs(name, written["train_x"])
    order = [int(np.argmin(np.abs(reference - img).reshape(N_TRAIN, -1).max(axis=1))) for img in ours]
    assert sorted(order) == list(range(N_TRAIN))  # each written image exactly once
    np.testing.assert_allclose(ours, reference[order], atol=1e-5)
    np.testing.assert_array_equal(labels, written["train_y"][order])
    # stratified: the validation split holds every class once (10% of the 10 images per class)
    np.testing.assert_array_equal(np.bincount(d.val_y.numpy(), minlength=10), np.ones(10))


def test_seed_moves_the_validation_split_only(tmp_path):
    write_dataset("mnist", tmp_path)
    a = load_dataset("mnist", seed=0, root=str(tmp_path))
    b = load_dataset("mnist", seed=0, root=str(tmp_path))
    c = load_dataset("mnist", seed=1, root=str(tmp_path))
    for field in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert torch.equal(a.test_x, c.test_x)
    assert not torch.equal(a.val_x, c.val_x)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_root_names_the_field_the_files_and_the_download_command(name, tmp_path):
    folder = SPECS[name].folder
    command = f"python -m sparsity_gym.datasets.vision_datasets download {name} --data-root DIR"
    with pytest.raises(ValueError, match=r"data_root=None") as err:
        load_dataset(name, seed=0, root=None)
    assert folder in str(err.value) and SPECS[name].files[0] in str(err.value) and command in str(err.value)
    with pytest.raises(ValueError, match=r"data_root='.*' is not allowed") as err:
        load_dataset(name, seed=0, root=str(tmp_path))
    assert f"missing {folder}/{SPECS[name].files[0]}" in str(err.value) and command in str(err.value)


def test_partially_missing_files_are_listed(tmp_path):
    write_dataset("cifar10", tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(ValueError, match=r"missing cifar-10-batches-py/data_batch_3;"):
        load_dataset("cifar10", seed=0, root=str(tmp_path))


def test_cifar_md5_verification_is_an_option(tmp_path):
    write_dataset("cifar10", tmp_path)
    assert len(load_cifar10(0, str(tmp_path)).test_y) == N_TEST  # presence only: small files load
    with pytest.raises(RuntimeError, match="corrupted"):  # torchvision's own md5 check rejects them
        load_cifar10(0, str(tmp_path), verify_md5=True)


def test_too_few_images_for_a_validation_split(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 10), ("t10k", 10)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", np.zeros((n, 28, 28), np.uint8))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"data_root=.*too few"):
        load_dataset("mnist", seed=0, root=str(tmp_path))


def test_download_command_parses_and_is_a_no_op_when_files_exist(tmp_path, capsys):
    write_dataset("mnist", tmp_path)
    assert main(["download", "mnist", "--data-root", str(tmp_path)]) == 0  # present: torchvision skips it
    assert "ready" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["download", "imagenet", "--data-root", str(tmp_path)])


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_a_full_env_episode_on_the_files(name, tmp_path):
    write_dataset(name, tmp_path)
    config = EnvConfig(
        network="mlp",
        network_kwargs={"widths": (16, 16)},
        dataset=name,
        data_root=str(tmp_path),
        total_iterations=4,
        decision_interval=2,
        batch_size=8,
        eval_batch_size=64,
        target_density=0.5,
    )
    env = SparsityEnv(config=config)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    done, steps = False, 0
    while not done:
        obs, reward, terminated, truncated, info = env.step(np.zeros(env.action_space.shape, np.float32))
        done, steps = terminated or truncated, steps + 1
    assert steps == 2 and truncated and not terminated
    assert 0.0 <= info["test_accuracy"] <= 1.0 and info["density"] == pytest.approx(0.5, abs=0.02)
    env.close()


def test_env_config_with_a_vision_dataset_and_no_root_fails_at_build():
    with pytest.raises(ValueError, match=r"data_root=None is not allowed for dataset='mnist'"):
        SparsityEnv(dataset="mnist", total_iterations=4, decision_interval=2)


def test_importing_the_package_registers_without_importing_torchvision():
    code = (
        "import sys, sparsity_gym\n"
        "assert 'torchvision' not in sys.modules\n"
        "from sparsity_gym.datasets import available_datasets\n"
        "assert {'mnist', 'fashion_mnist', 'cifar10'} <= set(available_datasets()), available_datasets()\n"
        "assert 'torchvision' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_registered_names():
    assert {"mnist", "fashion_mnist", "cifar10"} <= set(available_datasets())
