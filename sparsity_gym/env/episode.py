"""One episode of the env: the seeded network, its optimizer and training loop, and the episode's pruning driver.

:class:`Episode` is rebuilt at every ``reset``. Its :class:`~sparsity_gym.pruning.pruner.Pruner` (no policy: the
env's ``step(action)`` decides) is stepped by the :class:`~sparsity_gym.env.training.TrainingLoop` after every
optimizer step, exactly as a user's loop steps it, so the env's episode *is* the driver.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from sparsity_gym.datasets import DatasetSplits
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.training import TrainingLoop, make_optimizer
from sparsity_gym.models import build_network
from sparsity_gym.models.initial_state import load_initial_state
from sparsity_gym.models.layers import LayerCache
from sparsity_gym.models.widening import widen_network
from sparsity_gym.pruning.pruner import Pruner


def seeded_network(config: EnvConfig, data: DatasetSplits, seed: int, device: torch.device) -> nn.Module:
    """The network of ``config`` for ``data``, initialised from ``seed`` (the global generator is restored).

    Raises:
        ValueError: naming ``network``, the dataset's input shape and the original message, when the network
            cannot be built for the dataset (a zoo builder that does not fit it, a factory that raises); a bad
            ``network_kwargs`` of a zoo network names ``network_kwargs``.

    """
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        try:
            return build_network(config.network, data.input_shape, data.num_classes, config.network_kwargs)
        except Exception as err:
            if isinstance(err, ValueError) and str(err).startswith("network_kwargs=") and config.network_kwargs:
                raise
            raise ValueError(
                f"network={config.network_name!r} cannot be built for dataset={config.dataset!r} (inputs of shape "
                f"{tuple(data.input_shape)}, {data.num_classes} classes): {type(err).__name__}: {err}; expected a "
                "network for these inputs (a factory may accept input_shape and num_classes to size itself)"
            ) from err


class Episode:
    """The parts of one training run: network, optimizer, training loop and the episode's :class:`Pruner`.

    Args:
        config: The env's config.
        data: The dataset splits (on ``device``).
        device: Where the network trains.
        generator: The env's CPU generator of the episode (batch order, random selection and regrowth).
        layer_cache: The env's layer discovery, traced once per architecture.
        seed: The torch seed of the network's initialisation.
        model: The seeded build, when the caller already made it (the env's first build, checked against the data).

    """

    def __init__(
        self,
        config: EnvConfig,
        data: DatasetSplits,
        device: torch.device,
        generator: torch.Generator,
        layer_cache: LayerCache,
        seed: int,
        model: nn.Module | None = None,
    ) -> None:
        self.config, self.data = config, data
        built = seeded_network(config, data, seed, device) if model is None else model
        built, start_active = self._starting_network(built, layer_cache)
        self.model: nn.Module = built.to(device).train()
        self.optimizer = make_optimizer(config, self.model)
        self.loop = TrainingLoop(self.model, self.optimizer, data, config, device, generator)
        self.pruner = Pruner(
            self.model,
            self.optimizer,
            config=config.pruning(len(data.train_y)),
            input_shape=data.input_shape,
            batch_size=config.batch_size,
            generator=generator,
            num_classes=data.num_classes,
            layer_cache=layer_cache,
            initial_active=start_active,
            allow_skipped_steps=self.loop.scaler is not None,  # a float16 step the GradScaler skips
        )
        self.dense_flops = self.pruner.dense_flops
        # the network as the user specified it (before widening): what its FLOPs fractions are taken against
        self.base_dense_flops = self.pruner.inference_flops() if config.capacity > 1.0 else self.dense_flops

    def _starting_network(self, model: nn.Module, cache: LayerCache) -> tuple[nn.Module, dict[str, torch.Tensor]]:
        """The seeded build with its initial state loaded, widened for growth room; the widened layers' start masks.

        ``initial_state`` is loaded first (it is the state of the network at its own width), then every
        neuron-prunable hidden layer is widened to ``ceil(capacity · width)`` units with the spare ones off
        (:func:`sparsity_gym.models.widening.widen_network`), whatever the network.
        """
        cfg = self.config
        if cfg.initial_state is not None:
            load_initial_state(model, cfg.initial_state)
        if cfg.capacity == 1.0:
            return model, {}
        shape = self.data.input_shape
        widened = widen_network(model, cache(model, shape), cfg.capacity, shape)
        if not widened.active:
            raise ValueError(
                f"capacity={cfg.capacity!r} is not allowed for network={cfg.network_name!r}: none of its hidden layers "
                "can be widened (no neuron-prunable hidden Linear/Conv layer with traced consumers); expected 1.0"
            )
        return widened.model, dict(widened.active)

    def train(self, steps: int) -> bool:
        """``steps`` optimizer steps, the driver stepped after each; False if the interval's loss is non-finite."""
        self.model.train()
        self.loop.run(steps, self.pruner.step)
        loss = self.pruner.train_loss
        return loss is not None and math.isfinite(loss)

    def validate(self) -> tuple[float, float]:
        """Accuracy and mean loss on the validation split: the pass the equilibrium statistic reads."""
        with self.pruner.evaluating():
            return self.loop.evaluate(self.data.val_x, self.data.val_y)

    def test_accuracy(self) -> float:
        """Accuracy on the test split (the episode's end)."""
        return self.loop.evaluate(self.data.test_x, self.data.test_y)[0]

    def release(self) -> None:
        """Detach the driver's hooks (optimizer, observers, freezer); the network keeps its masked weights."""
        self.pruner.remove()

    def info(self, requested: list[float], val_accuracy: float, train_loss: float, diverged: bool) -> dict[str, Any]:
        """The env's ``info`` now (its docstring's "Info" section), ``test_accuracy`` aside."""
        pruner, masks = self.pruner, self.pruner.masks
        return {
            "density": masks.global_density(),
            "layer_densities": np.array(masks.densities, dtype=np.float32),
            "target_density": self.config.target_density,
            "requested_densities": np.array(requested, dtype=np.float32),
            "allocation": np.array(pruner.decisions.allocation, dtype=np.float32),
            "val_accuracy": val_accuracy,
            "train_loss": train_loss,
            "flops": pruner.inference_flops(),
            "dense_flops": self.dense_flops,
            "base_dense_flops": self.base_dense_flops,
            "training_flops": pruner.training_flops,
            "saved_backward_flops": pruner.saved_backward_flops,
            "frozen_fraction": 0.0 if pruner.freezer is None else pruner.freezer.frozen_fraction,
            "invalid_actions": pruner.decisions.invalid_actions,
            "mask_update": pruner.decisions.mask_update,
            "iteration": pruner.iteration,
            "decision": pruner.decision,
            "num_decisions": self.config.num_decisions,
            "diverged": diverged,
        }
