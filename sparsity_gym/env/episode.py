"""One episode's network and its training: build, widen or load, mask, observe, train, validate.

:class:`EpisodeMixin` is the half of :class:`~sparsity_gym.env.sparsity_env.SparsityEnv` that builds the seeded
network of an episode (widened for growth room, or started from a pre-trained state), its optimizer, masks,
observers and freezer, and runs the training steps and validation passes between decisions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn

from sparsity_gym.criteria.snr_pruning import LossHold
from sparsity_gym.datasets import DatasetSplits
from sparsity_gym.env.config import EnvConfig
from sparsity_gym.env.flops import dense_inference_flops, inference_flops, training_step_flops
from sparsity_gym.env.interop import check_network_fits
from sparsity_gym.env.training import TrainingLoop, make_optimizer
from sparsity_gym.masks.freezing import RowFreezer
from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.masks.regrowth import REGROWTH
from sparsity_gym.masks.selectors import SELECTORS
from sparsity_gym.models import build_network
from sparsity_gym.models.initial_state import load_initial_state
from sparsity_gym.models.layers import LayerCache
from sparsity_gym.models.widening import widen_network
from sparsity_gym.observation.observers import OBSERVERS, Observer, ObserverSettings


class EpisodeMixin:
    """Build an episode's network and train it (see the env's "Starting State")."""

    config: EnvConfig
    data: DatasetSplits
    device: torch.device
    _generator: torch.Generator
    model: nn.Module
    optimizer: torch.optim.Optimizer
    loop: TrainingLoop
    masks: MaskedNetwork
    observers: dict[str, Observer]
    freezer: RowFreezer | None
    iteration: int
    decision: int
    training_flops: int
    saved_backward_flops: int
    last_train_loss: float
    dense_flops: int
    base_dense_flops: int
    _release: Callable[[], None]  # the env's own: hooks of the previous episode
    _layer_cache: LayerCache  # prunable layers traced once per architecture (every episode rebuilds the same)

    def inference_flops(self) -> int:
        """Inference FLOPs per sample of the active network."""
        return inference_flops(self.masks.all_layers)

    def _build_network(self, seed: int, check_fit: bool = False) -> None:
        """A fresh episode: the seeded network (checked against the dataset when ``check_fit``, at the env's
        first build), its optimizer, training loop, masks, observers and freezer, and the counters reset.
        """  # noqa: D205
        cfg = self.config
        self._release()
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            model = build_network(cfg.network, self.data.input_shape, self.data.num_classes, cfg.network_kwargs)
        model, start_active = self._starting_network(model)
        self.model: nn.Module = model.to(self.device).train()
        if check_fit:
            check_network_fits(self.model, self.data.val_x[:2], self.data.num_classes, cfg.network_name, cfg.dataset)
        infos = self._layer_cache(self.model, self.data.input_shape)
        self.optimizer = make_optimizer(cfg, self.model)
        self.loop = TrainingLoop(self.model, self.optimizer, self.data, cfg, self.device, self._generator)
        self.masks = MaskedNetwork(
            infos,
            granularity=cfg.granularity,
            selector=cfg.selector,
            regrowth=cfg.regrowth,
            exchange_fraction=cfg.exchange_fraction,
            generator=self._generator,
            optimizer=self.optimizer,
            feedback_updates_pruned=cfg.feedback_updates_pruned,
        )
        if start_active:  # the spare units of the widened layers start inactive (growth room)
            everything = torch.ones(0, dtype=torch.bool)
            self.masks.set_keep(
                [start_active.get(m.info.name, everything.new_ones(m.num_units)) for m in self.masks.layers]
            )
        self.dense_flops = dense_inference_flops(self.masks.all_layers)
        # the network as the user specified it (before widening): what its FLOPs fractions are taken against
        self.base_dense_flops = self.inference_flops() if cfg.capacity > 1.0 else self.dense_flops
        needed = dict.fromkeys((*cfg.observations, *self._rule_statistics()))
        settings = ObserverSettings(total_iterations=cfg.total_iterations, selector=cfg.selector)
        self.observers: dict[str, Observer] = {name: OBSERVERS[name](self.masks, settings) for name in needed}
        self.freezer = (
            RowFreezer(self.optimizer, [m.info.module for m in self.masks.layers]) if cfg.effect == "freeze" else None
        )
        self.saved_backward_flops = 0
        epoch = math.ceil(len(self.data.train_y) / min(cfg.batch_size, len(self.data.train_y)))
        self._burn_in_iterations = math.ceil(cfg.burn_in_epochs * epoch - 1e-9)
        self._loss_hold = LossHold()
        self.mask_update = "applied"
        self.allocation = np.array(self.masks.densities, dtype=np.float32)
        self.iteration = 0
        self.decision = 0
        self.training_flops = 0

    def _starting_network(self, model: nn.Module) -> tuple[nn.Module, dict[str, torch.Tensor]]:
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
        widened = widen_network(model, self._layer_cache(model, shape), cfg.capacity, shape)
        if not widened.active:
            raise ValueError(
                f"capacity={cfg.capacity!r} is not allowed for network={cfg.network_name!r}: none of its hidden layers "
                "can be widened (no neuron-prunable hidden Linear/Conv layer with traced consumers); expected 1.0"
            )
        return widened.model, dict(widened.active)

    def _rule_statistics(self) -> tuple[str, ...]:
        """The observers the selector and the regrowth rule read (collected whether observed or not)."""
        cfg = self.config
        return (*SELECTORS.get(cfg.selector).statistics, *REGROWTH.get(cfg.regrowth).statistics)

    def _train(self, steps: int) -> bool:
        """Run ``steps`` optimizer steps, the last ``stats_window`` measured; False if the loss became non-finite."""
        self.model.train()
        step_flops = training_step_flops(self.inference_flops(), self.config.batch_size)
        if self.freezer is not None:
            positions = {i: m.info.output_positions for i, m in enumerate(self.masks.layers)}
            saved = self.freezer.saved_backward_flops(self.config.batch_size, positions)
            step_flops -= saved
            self.saved_backward_flops += steps * saved
        window = min(self.config.stats_window or steps, steps) if self.observers else 0
        loss_sum = self._steps(steps - window, measured=False)
        if window:
            for observer in self.observers.values():
                observer.set_measuring(True)
            loss_sum = loss_sum + self._steps(window, measured=True)
            for observer in self.observers.values():
                observer.set_measuring(False)
        self.iteration += steps
        self.training_flops += steps * step_flops
        self.last_train_loss = float(loss_sum) / steps
        return math.isfinite(self.last_train_loss)

    def _steps(self, steps: int, measured: bool) -> torch.Tensor:
        """The training loop proper; observers see the backward pass of measured steps. Returns the loss sum."""
        callbacks = [o.after_backward for o in self.observers.values()] if measured else []
        return self.loop.run(steps, callbacks)

    def _validate(self) -> tuple[float, float]:
        """The validation pass (fixed order, eval mode) that rewards and the equilibrium family share."""
        for observer in self.observers.values():
            observer.begin_evaluation()
        try:
            return self._evaluate(self.data.val_x, self.data.val_y)
        finally:
            for observer in self.observers.values():
                observer.end_evaluation()

    def _evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """Accuracy and mean cross-entropy of the network on ``(x, y)`` in eval mode."""
        return self.loop.evaluate(x, y)
