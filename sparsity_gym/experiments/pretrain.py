"""Pre-train a network and save its state dict: the starting point of fine-tuning episodes.

DYNO (Maile et al., seed 000, §4) adapts a network trained on one task to a new one, growing neurons where
the new task needs them. :func:`pretrain` makes the first half of that setting: it builds the network as the
env would (same builder, ``network_kwargs``, input shape and number of classes, so the state fits an env on
the full dataset), trains it with Adam on the dataset's train split, restricted to ``classes`` if given
(e.g. digits 0-4, the output layer keeping all classes), and saves the state dict atomically (a temporary
file renamed over the target). An env with ``initial_state=path`` then fine-tunes it on the new task (all
classes, or others), any policy deciding the widths.

    python -m sparsity_gym.experiments.pretrain --dataset mnist5k --classes 0 1 2 3 4 --out runs/pre.pt
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsity_gym.core.checks import check_number
from sparsity_gym.core.io import atomic_write
from sparsity_gym.datasets import DatasetSplits, load_dataset
from sparsity_gym.models import build_network

__all__ = ["PretrainResult", "pretrain", "restrict_classes"]


@dataclass(frozen=True)
class PretrainResult:
    """Where the state was saved and the validation accuracy on the trained classes and on all classes."""

    path: str
    val_accuracy: float
    val_accuracy_all: float


def restrict_classes(data: DatasetSplits, classes: Sequence[int]) -> DatasetSplits:
    """The splits holding only the samples labelled one of ``classes`` (labels and ``num_classes`` unchanged).

    Raises:
        ValueError: ``classes`` is empty, repeats a label or names a label outside ``0 .. num_classes − 1``.

    """
    labels = [int(c) for c in classes]
    if not labels or len(set(labels)) != len(labels) or any(not 0 <= c < data.num_classes for c in labels):
        raise ValueError(
            f"classes={tuple(classes)!r} is not allowed; expected distinct labels in 0..{data.num_classes - 1}"
        )
    keep = torch.tensor(labels)

    def part(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.isin(y, keep.to(y.device))
        return x[rows], y[rows]

    (tx, ty), (vx, vy), (sx, sy) = (
        part(data.train_x, data.train_y),
        part(data.val_x, data.val_y),
        part(data.test_x, data.test_y),
    )
    return DatasetSplits(data.name, tx, ty, vx, vy, sx, sy, data.num_classes)


def pretrain(
    network: str | Callable[..., nn.Module],
    dataset: str,
    path: str | os.PathLike,
    *,
    classes: Sequence[int] | None = None,
    network_kwargs: Mapping[str, Any] | None = None,
    iterations: int = 500,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    data_seed: int = 0,
    data_root: str | None = None,
) -> PretrainResult:
    """Train ``network`` on ``dataset`` (only ``classes`` if given) with Adam and save its state dict at ``path``.

    The network is built as the env builds it (seeded by ``seed`` inside ``fork_rng``), the batch order drawn
    from its own generator; the split is ``data_seed``'s, as the env's ``data_seed``. Returns the saved path
    and the validation accuracy on the trained classes and on all classes.
    """
    check_number("iterations", iterations, low=1, integer=True)
    check_number("batch_size", batch_size, low=1, integer=True)
    check_number("lr", lr, low=0.0, low_inclusive=False)
    full = load_dataset(dataset, data_seed, data_root)
    data = full if classes is None else restrict_classes(full, classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_network(network, full.input_shape, full.num_classes, network_kwargs)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    n = len(data.train_y)
    order, cursor = torch.randperm(n, generator=generator), 0
    model.train()
    for _ in range(iterations):
        if cursor + min(batch_size, n) > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        idx = order[cursor : cursor + batch_size]
        cursor += len(idx)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(data.train_x[idx]), data.train_y[idx]).backward()
        optimizer.step()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    saved = atomic_write(path, lambda tmp: torch.save(state, tmp))
    return PretrainResult(
        str(saved), _accuracy(model, data.val_x, data.val_y), _accuracy(model, full.val_x, full.val_y)
    )


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    try:
        return float((model(x).argmax(1) == y).float().mean())
    finally:
        model.train()


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: pre-train a zoo network and save its state dict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="mlp")
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--classes", type=int, nargs="+", default=None)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    result = pretrain(
        args.network, args.dataset, args.out, classes=args.classes, iterations=args.iterations, seed=args.seed
    )
    print(result)


if __name__ == "__main__":
    main()
