"""MNIST, Fashion-MNIST and CIFAR-10 read from a local folder with torchvision's own loaders; downloads on request.

Datasets ``mnist``, ``fashion_mnist`` and ``cifar10`` (10 classes each) are read from ``data_root`` (the env
config field, ``--data-root`` on the command line) in torchvision's standard layout::

    data_root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte           (uncompressed idx files)
    data_root/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte
    data_root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}   (pickled batches)

Nothing is downloaded unless asked for, once, with::

    python -m sparsity_gym.datasets.vision_datasets download {mnist,fashion_mnist,cifar10} --data-root DIR

Splits, as the papers this project reproduces use them (Tessera et al. split the official training set into a
train and a validation part and report on the official test set): the official test set is the test split; a
seeded, stratified :data:`VAL_FRACTION` (10%) of the official training set is the validation split (per class,
:func:`sparsity_gym.datasets.splits.stratified_split`,
seeded by the loader's ``seed``, i.e. the env's ``data_seed``); the
rest is the train split. Inputs are float32 ``(n, C, H, W)``: pixels scaled to [0, 1], then normalised per
channel with the datasets' standard constants (:data:`SPECS`; fixed, so every seed and split shares one input
scale), labels int64.

CIFAR-10 integrity: torchvision's ``CIFAR10`` compares the md5 of every batch file with the official one, so a
re-packed or subsampled copy (and the small files the tests write) cannot be read. The loader reads CIFAR-10
through a subclass that keeps torchvision's reading code and only checks that the files are present; pass
``verify_md5=True`` to :func:`load_cifar10` for torchvision's full md5 check. The download command always uses
torchvision's own class, which verifies the archive and the extracted batches.

Registration: :mod:`sparsity_gym.datasets` adds :data:`LOADERS` to its registry (:func:`register`). Importing
this module stays cheap: torchvision is only imported (through
:func:`sparsity_gym.core.torchvision_compat.import_torchvision`) when a loader runs or a download is asked for.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sparsity_gym.core.checks import check_choice
from sparsity_gym.datasets.splits import DatasetSplits, stratified_split

if TYPE_CHECKING:
    import numpy as np

    from sparsity_gym.core.registry import Registry

#: Fraction of the official training set held out, per class, as the validation split.
VAL_FRACTION = 0.1


@dataclass(frozen=True)
class VisionSpec:
    """Where one dataset lives under ``data_root`` and how its pixels are normalised."""

    name: str
    torchvision_class: str
    folder: str
    files: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]


_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: The three datasets: torchvision class, folder and files under ``data_root``, per-channel mean and std.
SPECS: dict[str, VisionSpec] = {
    "mnist": VisionSpec("mnist", "MNIST", "MNIST/raw", _IDX_FILES, (0.1307,), (0.3081,)),
    "fashion_mnist": VisionSpec("fashion_mnist", "FashionMNIST", "FashionMNIST/raw", _IDX_FILES, (0.2860,), (0.3530,)),
    "cifar10": VisionSpec(
        "cifar10",
        "CIFAR10",
        "cifar-10-batches-py",
        (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"),
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
    ),
}


def download_command(name: str) -> str:
    """The shell command that downloads dataset ``name`` into ``DIR``."""
    return f"python -m sparsity_gym.datasets.vision_datasets download {name} --data-root DIR"


def check_data_root(name: str, root: str | None) -> Path:
    """``root`` as a path after checking that every file of dataset ``name`` is there.

    Raises:
        ValueError: ``root`` is ``None`` or files are missing; the message names ``data_root``, its value, the
            expected folder and files, and the command that downloads them.

    """
    spec = SPECS[name]
    expected = ", ".join(f"{spec.folder}/{f}" for f in spec.files)
    hint = f"expected a folder holding {expected} (torchvision's layout); download them with: {download_command(name)}"
    if root is None:
        raise ValueError(f"data_root=None is not allowed for dataset={name!r}; {hint}")
    path = Path(root)
    missing = [f"{spec.folder}/{f}" for f in spec.files if not (path / spec.folder / f).is_file()]
    if missing:
        raise ValueError(
            f"data_root={root!r} is not allowed for dataset={name!r}: missing {', '.join(missing)}; {hint}"
        )
    return path


@functools.lru_cache(maxsize=1)
def _presence_checked_cifar10() -> type:
    """The ``CIFAR10`` of torchvision with the same files and reading code, checking presence instead of md5."""
    from sparsity_gym.core.torchvision_compat import import_torchvision

    base = import_torchvision().datasets.CIFAR10

    class PresenceCheckedCIFAR10(base):  # type: ignore[misc, valid-type]
        """``CIFAR10`` whose integrity check is file presence (torchvision's ``check_integrity`` with no md5)."""

        train_list = [[filename, None] for filename, _ in base.train_list]  # noqa: RUF012 (as in torchvision)
        test_list = [[filename, None] for filename, _ in base.test_list]  # noqa: RUF012
        meta = {**base.meta, "md5": None}  # noqa: RUF012

    return PresenceCheckedCIFAR10


def _read(spec: VisionSpec, root: Path, train: bool, verify_md5: bool) -> tuple[np.ndarray, np.ndarray]:
    """One official split as uint8 images ``(n, C, H, W)`` and int64 labels, read by torchvision."""
    import numpy as np

    from sparsity_gym.core.torchvision_compat import import_torchvision

    datasets = import_torchvision().datasets
    if spec.name == "cifar10":
        cls = datasets.CIFAR10 if verify_md5 else _presence_checked_cifar10()
        ds = cls(str(root), train=train)
        # torchvision holds the batches as (n, 3, 32, 32) and exposes an HWC view: transposing back is free.
        images = np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2))
        return images, np.asarray(ds.targets, dtype=np.int64)
    ds = getattr(datasets, spec.torchvision_class)(str(root), train=train)
    return ds.data.numpy()[:, None], ds.targets.numpy().astype(np.int64)


def normalise(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 images ``(n, C, H, W)`` as float32 ``(pixel / 255 - mean[c]) / std[c]``, computed in place."""
    x = torch.from_numpy(images).to(torch.float32)
    channels = (1, len(mean), 1, 1)
    return x.div_(255.0).sub_(torch.tensor(mean).view(channels)).div_(torch.tensor(std).view(channels))


def load_vision(name: str, seed: int, root: str | None, verify_md5: bool = False) -> DatasetSplits:
    """Dataset ``name`` of :data:`SPECS` from ``root``: stratified train/validation from the official train set.

    See the module docstring for the split and the normalisation; ``verify_md5`` only concerns CIFAR-10.
    """
    spec = SPECS[name]
    path = check_data_root(name, root)
    train_images, train_labels = _read(spec, path, train=True, verify_md5=verify_md5)
    test_images, test_labels = _read(spec, path, train=False, verify_md5=verify_md5)
    train, val, _ = stratified_split(train_labels, seed, val_fraction=VAL_FRACTION, test_fraction=0.0)
    if len(val) == 0:
        raise ValueError(
            f"data_root={root!r} is not allowed for dataset={name!r}: its {len(train_labels)} training images are "
            f"too few for a {VAL_FRACTION:.0%} validation split per class; expected the full dataset"
        )
    return DatasetSplits(
        name=name,
        train_x=normalise(train_images[train], spec.mean, spec.std),
        train_y=torch.from_numpy(train_labels[train]),
        val_x=normalise(train_images[val], spec.mean, spec.std),
        val_y=torch.from_numpy(train_labels[val]),
        test_x=normalise(test_images, spec.mean, spec.std),
        test_y=torch.from_numpy(test_labels),
        num_classes=10,
    )


def load_mnist(seed: int, root: str | None = None) -> DatasetSplits:
    """MNIST ``(n, 1, 28, 28)`` from ``root``; normalised with mean 0.1307, std 0.3081."""
    return load_vision("mnist", seed, root)


def load_fashion_mnist(seed: int, root: str | None = None) -> DatasetSplits:
    """Fashion-MNIST ``(n, 1, 28, 28)`` from ``root``; normalised with mean 0.2860, std 0.3530."""
    return load_vision("fashion_mnist", seed, root)


def load_cifar10(seed: int, root: str | None = None, verify_md5: bool = False) -> DatasetSplits:
    """CIFAR-10 ``(n, 3, 32, 32)`` from ``root``; per-channel mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435,
    0.2616). Batch files are checked for presence, or against torchvision's md5 sums with ``verify_md5``.
    """  # noqa: D205
    return load_vision("cifar10", seed, root, verify_md5=verify_md5)


#: The loaders this module adds to :data:`sparsity_gym.datasets.splits.DATASETS`.
LOADERS = {"mnist": load_mnist, "fashion_mnist": load_fashion_mnist, "cifar10": load_cifar10}


def register(datasets: Registry[Any]) -> None:
    """Add :data:`LOADERS` to the dataset registry ``datasets`` (idempotent)."""
    for name, loader in LOADERS.items():
        datasets.add(name, loader)


# ------------------------------------------------------------------------------------------------ download
def download(name: str, root: str) -> None:
    """Download dataset ``name`` into ``root`` with torchvision (``download=True``, md5-verified)."""
    from sparsity_gym.core.torchvision_compat import import_torchvision

    check_choice("dataset", name, SPECS)
    cls = getattr(import_torchvision().datasets, SPECS[name].torchvision_class)
    for train in (True, False):
        cls(root, train=train, download=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``download {mnist,fashion_mnist,cifar10} --data-root DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m sparsity_gym.datasets.vision_datasets",
        description="Download a torchvision dataset (only when asked).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("download", help="download a dataset into --data-root")
    fetch.add_argument("dataset", choices=sorted(SPECS))
    fetch.add_argument("--data-root", required=True, help="folder to download into (torchvision's layout)")
    args = parser.parse_args(argv)
    try:
        download(args.dataset, args.data_root)
    except (RuntimeError, OSError) as exc:  # torchvision's mirror errors, URLError and friends
        print(f"{parser.prog}: error: could not download {args.dataset}: {exc}", file=sys.stderr)
        return 1
    check_data_root(args.dataset, args.data_root)
    print(f"{args.dataset}: ready under {args.data_root}; pass --data-root {args.data_root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
