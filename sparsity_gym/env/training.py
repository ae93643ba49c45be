"""The network's own training, as the env runs it: seeded batches, optimizer steps, evaluation passes.

This is the floor every overhead of the env is measured against (``bench/env_overhead.py``): nothing here
knows about masks, observations or rewards. The episode's pruning driver is stepped through the ``after_step``
callback of :meth:`TrainingLoop.run`, after every optimizer step, as in a user's own loop; it measures the
gradients of its measured steps from an optimizer step pre-hook.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsity_gym.datasets.splits import DatasetSplits
from sparsity_gym.env.env_config import EnvConfig


class TrainingLoop:
    """Mini-batches of the train split in an order drawn from ``generator``, and the optimizer steps on them.

    Args:
        model: The network (already on ``device``).
        optimizer: Its optimizer (mask hooks, if any, are registered on it by their owners).
        data: The dataset splits (on ``device``).
        config: The env's config (batch sizes, precision).
        device: Where the network trains.
        generator: The CPU generator of the batch order (the env's own).

    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data: DatasetSplits,
        config: EnvConfig,
        device: torch.device,
        generator: torch.Generator,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.data = data
        self.device = device
        self.generator = generator
        self.batch_size = min(config.batch_size, len(data.train_y))
        self.eval_batch_size = config.eval_batch_size
        self.autocast_dtype = None if config.precision == "float32" else getattr(torch, config.precision)
        self.scaler = torch.amp.GradScaler(device.type) if config.precision == "float16" else None
        self._order = torch.empty(0, dtype=torch.long, device=device)
        self._cursor = 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next mini-batch; a new permutation of the train split when the current one is used up."""
        n, b = len(self.data.train_y), self.batch_size
        if self._cursor + b > len(self._order):
            self._order = torch.randperm(n, generator=self.generator).to(self.device)
            self._cursor = 0
        idx = self._order[self._cursor : self._cursor + b]
        self._cursor += b
        return self.data.train_x[idx], self.data.train_y[idx]

    def run(self, steps: int, after_step: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
        """``steps`` optimizer steps; ``after_step(loss)`` after each ``optimizer.step()``. Returns the loss sum."""
        model, opt, scaler = self.model, self.optimizer, self.scaler
        loss_sum = torch.zeros((), device=self.device)
        for _ in range(steps):
            x, y = self.next_batch()
            if self.autocast_dtype is not None:
                with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                    out = model(x)
            else:
                out = model(x)
            loss = F.cross_entropy(out.float(), y)
            opt.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                opt.step()
            else:  # float16: the scale multiplies every gradient, which leaves the SNR ratio unchanged; a step the
                # scaler skips (inf/NaN gradients) runs no optimizer hook, so the driver does not measure it
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            loss_sum += loss.detach()
            if after_step is not None:
                after_step(loss)
        return loss_sum

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """Accuracy and mean cross-entropy of the network on ``(x, y)`` in eval mode (fixed order)."""
        was_training = self.model.training
        self.model.eval()
        correct = torch.zeros((), device=self.device)
        loss = torch.zeros((), device=self.device)
        bs = self.eval_batch_size
        for i in range(0, len(y), bs):
            out = self.model(x[i : i + bs])
            correct += (out.argmax(1) == y[i : i + bs]).sum()
            loss += F.cross_entropy(out, y[i : i + bs], reduction="sum")
        self.model.train(was_training)
        return float(correct) / len(y), float(loss) / len(y)


def resolve_device(name: str) -> torch.device:
    """``torch.device(name)``; ``ValueError`` naming ``device`` when it is malformed or not available here."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={name!r} is not allowed; expected a torch device such as 'cpu' or 'cuda'") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} is not allowed here: torch.cuda.is_available() is False; use 'cpu'")
    return device


def make_optimizer(cfg: EnvConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer ``cfg.optimizer`` over every parameter of ``model``."""
    params = list(model.parameters())
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
