"""The README's own-loop example as a timed loop: its network, data, optimizer and Pruner, with or without the driver.

The network is the README's ``Net`` (40-300-100-10 MLP, ``body`` then ``head``) on MNIST-1D (3000 training
sequences of length 40, as the README generates them), SGD with momentum and weight decay, batches of 128 drawn
from a seeded permutation. With ``policy`` a :class:`~sparsity_gym.Pruner` is built as the README builds it
(target 0.01, ``budget="global"``, ``min_density=0.001``, validation at every decision) and stepped after every
``optimizer.step()``. Network, optimizer and Pruner are built inside the timing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsity_gym.datasets.splits import load_dataset
from sparsity_gym.pruning.pruner import Pruner

BATCH = 128


class Net(nn.Module):
    """The README's network (not from the zoo)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(40, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU())
        self.head = nn.Linear(100, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of a batch of sequences."""
        return self.head(self.body(x))


def readme_data() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """MNIST-1D as flat float32 sequences: the train and validation splits."""
    data = load_dataset("mnist1d")
    return {
        "train": (data.train_x.flatten(1)[:3000].contiguous(), data.train_y[:3000]),
        "val": (data.val_x.flatten(1).contiguous(), data.val_y),
    }


def own_loop(
    data: dict[str, tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    seed: int,
    policy: Any = None,
    validate: bool = True,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Seconds of ``steps`` optimizer steps of the README's loop (with a Pruner stepped after each if ``policy``).

    ``validate``: the Pruner gets the README's ``val_fn`` (a validation pass at each decision). ``clock``:
    ``time.perf_counter`` (wall) or ``time.process_time`` (this process's CPU seconds, steadier on a loaded
    machine).
    """
    xs, ys = data["train"]
    gen = torch.Generator().manual_seed(seed)
    start = clock()
    torch.manual_seed(seed)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    pruner = None
    if policy is not None:

        @torch.no_grad()
        def accuracy() -> tuple[float, float]:
            model.eval()
            out = model(data["val"][0])
            model.train()
            return (out.argmax(1) == data["val"][1]).float().mean().item(), F.cross_entropy(out, data["val"][1]).item()

        pruner = Pruner(
            model,
            optimizer,
            policy,
            target_density=0.01,
            budget="global",
            min_density=0.001,
            total_steps=steps,
            val_fn=accuracy if validate else None,
        )
    n = len(ys)
    order, cursor = torch.randperm(n, generator=gen), 0
    for _ in range(steps):
        if cursor + BATCH > n:
            order, cursor = torch.randperm(n, generator=gen), 0
        idx = order[cursor : cursor + BATCH]
        cursor += BATCH
        loss = F.cross_entropy(model(xs[idx]), ys[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if pruner is not None:
            pruner.step(loss)
    float(loss.detach())
    return clock() - start
