"""The pruning driver: attach to a model and its optimizer, step it after every ``optimizer.step()``.

See :class:`Pruner`. The env's episode is a ``Pruner`` without a policy, stepped by the env's training loop and
decided by the env's ``step(action)``; a user's loop steps the same object, so the two cannot drift apart.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from sparsity_gym.core.checks import check_fields
from sparsity_gym.masks import compaction
from sparsity_gym.masks.freezing import RowFreezer
from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.models.graph import PRUNABLE
from sparsity_gym.models.layers import LayerCache, LayerInfo, find_prunable_layers
from sparsity_gym.observation.features import ObservationLayout
from sparsity_gym.observation.observers import Observer
from sparsity_gym.observation.snapshot import TrainingSnapshot
from sparsity_gym.pruning.config import PruningConfig, pruning_field_names
from sparsity_gym.pruning.decisions import Decisions
from sparsity_gym.pruning.flops import dense_inference_flops, inference_flops, training_step_flops
from sparsity_gym.pruning.policies import (
    bind,
    check_reads,
    declared_reads,
    default_interval,
    families_read,
    merge_settings,
    takes_state,
)
from sparsity_gym.pruning.statistics import IntervalLoss, Statistics
from sparsity_gym.pruning.summary import PruningSummary

ValFn = Callable[[], Any]
"""Returns the validation accuracy, or ``(accuracy, loss)``."""


class Pruner:
    """Prune a model while it trains, in any training loop: masks exact after every step, decisions on schedule.

    ``pruner.step(loss)`` goes after ``optimizer.step()``. The driver owns the masks
    (:class:`~sparsity_gym.masks.MaskedNetwork`, re-applied by an optimizer step post-hook, so inactive weights
    are exactly zero after every step), the statistics the policy's observation reads and the selector needs
    (measured by an optimizer step *pre*-hook on the last ``stats_window`` steps of each interval), the freezer
    under ``effect="freeze"``, one :class:`~sparsity_gym.pruning.decisions.Decisions` and the counters. With a
    policy, the first decision is taken when the driver is built and then one every ``decision_interval`` steps,
    in ``step()``: validation through ``val_fn`` (inside :meth:`evaluating`, eval mode, no gradient), the
    observation, ``policy.predict(obs, deterministic=True)``, :meth:`decide`. The decision of index
    ``num_decisions - 1`` is projected onto the budget; no decision follows step ``total_steps``. Without a
    policy the caller decides (:meth:`decide` at every interval's start, as the env does).

    Args:
        model: The network; its ``nn.Linear``, ``nn.Conv1d`` and ``nn.Conv2d`` layers are pruned.
        optimizer: Its optimizer (hooks are registered on it; :meth:`remove` takes them off).
        policy: ``None``, or an object with SB3's ``predict`` and optionally ``settings``, ``reads`` and
            ``bind(context)`` (:mod:`sparsity_gym.pruning.policies`): a saved PPO model, a handcrafted cell or a
            criterion (``baselines.method("cubic@0.9+erk")``).
        target_density: The budget the run ends on (``None``: the final density is the policy's).
        total_steps: Optimizer steps of the whole run (e.g. ``len(loader) * epochs``).
        decision_interval: Steps between decisions; a divisor of ``total_steps`` (default: the one giving about
            10 decisions).
        input_shape: The shape of one input sample, for layer discovery; or give ``example_input`` (a batch). When
            neither is given and the first prunable layer is an ``nn.Linear``, ``(in_features,)``.
        example_input: A batch of inputs (only its shape is used).
        val_fn: Returns the validation accuracy, or ``(accuracy, loss)``; called at each decision (needed when the
            policy reads ``val_accuracy`` or ``train_loss``, or a statistic comes from validation passes).
        batch_size: Samples per step, for the training FLOPs counters (``None``: not counted).
        generator: The CPU generator of random selection and regrowth (default: seeded with ``seed``).
        seed: Seed of the default generator.
        num_classes: Classes of the task (the loss scale of the observation; default: the output layer's units).
        steps_per_epoch: Optimizer steps of one epoch, to convert a policy's ``burn_in_epochs`` setting (SNR
            pruning's one-epoch burn-in) into ``burn_in_steps``.
        config: A complete :class:`PruningConfig` instead of ``total_steps``, ``target_density`` and settings.
        layer_cache: A :class:`~sparsity_gym.models.layers.LayerCache` to discover layers with (networks rebuilt
            again and again).
        initial_active: Per layer name, the units active at the start (a bool mask); the others start masked.
        **settings: Other :class:`PruningConfig` fields (selector, granularity, budget, allocation, ...).

    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        policy: Any = None,
        *,
        target_density: float | None = None,
        total_steps: int | None = None,
        decision_interval: int | None = None,
        input_shape: Sequence[int] | None = None,
        example_input: torch.Tensor | None = None,
        val_fn: ValFn | None = None,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        num_classes: int | None = None,
        steps_per_epoch: int | None = None,
        config: PruningConfig | None = None,
        layer_cache: LayerCache | None = None,
        initial_active: Mapping[str, torch.Tensor] | None = None,
        **settings: Any,
    ) -> None:
        explicit = {
            "total_steps": total_steps,
            "decision_interval": decision_interval,
            "target_density": target_density,
        }
        if config is not None and (settings or any(v is not None for v in explicit.values())):
            raise ValueError("config= is not allowed with settings or total_steps/target_density; expected one of them")
        self.config = config if config is not None else _config(policy, explicit, settings, steps_per_epoch)
        reads = declared_reads(policy) if policy is not None else ()
        if policy is not None:  # before anything is built: a policy that needs what the user did not give
            columns = ObservationLayout(1, self.config.observations)
            check_reads(policy, tuple(columns.columns) if reads is None else reads, columns, val_fn is not None)
        self.model, self.optimizer, self.val_fn, self.batch_size = model, optimizer, val_fn, batch_size
        self.generator = generator if generator is not None else torch.Generator().manual_seed(seed)
        shape = _input_shape(model, input_shape, example_input)
        infos = layer_cache(model, shape) if layer_cache is not None else find_prunable_layers(model, shape)
        # first of the optimizer's pre-hooks: observers read the gradients before the freezer or DPF touch them
        self._hooks = [optimizer.register_step_pre_hook(self._before_optimizer_step)]
        self.statistics: Statistics | None = None
        self.masks = _masks(infos, self.config, self.generator, optimizer, initial_active)
        self.dense_flops = dense_inference_flops(self.masks.all_layers)
        self.statistics = Statistics(self.masks, self.config)
        if policy is not None and val_fn is None and "equilibrium" in self.statistics.observers:
            raise ValueError(
                "val_fn=None is not allowed here: the equilibrium statistic (NEq) is measured on a validation pass "
                "at every decision; expected a callable returning the validation accuracy"
            )
        cfg = self.config
        layers = [m.info.module for m in self.masks.layers]
        self.freezer = RowFreezer(optimizer, layers) if cfg.effect == "freeze" else None
        self.decisions = Decisions(cfg, self.masks, self.freezer, self.generator, self.statistics.rule_scores)
        self.layer_names = tuple(m.info.name for m in self.masks.layers)
        self.layout = ObservationLayout(len(self.layer_names), cfg.observations)
        self.num_classes = num_classes if num_classes is not None else _output_units(self.masks.all_layers)
        self.iteration = self.decision = 0
        self.training_flops: int | None = None if batch_size is None else 0
        self.saved_backward_flops: int | None = None if batch_size is None else 0
        self.train_loss: float | None = None
        self._losses = IntervalLoss()
        self._step_costs = self._costs()
        self._removed = False
        self._policy_state: Any = None
        self._stateful = False
        self.policy = policy
        self.predictor = None if policy is None else bind(policy, self)
        if self.predictor is not None:
            read = declared_reads(self.predictor) or reads
            read = tuple(self.layout.columns) if read is None else read
            check_reads(self.predictor, read, self.layout, val_fn is not None)
            self._stateful = takes_state(self.predictor)
            self._decide_on_schedule()

    # ------------------------------------------------------------------------------------------------ stepping
    def step(self, loss: torch.Tensor | float | None = None) -> None:
        """Count one optimizer step (call it after ``optimizer.step()``); decide when an interval ends.

        ``loss`` (this step's training loss, a tensor kept on its device) feeds the interval's mean: the
        ``train_loss`` column and the loss hold. The measuring window of the statistics is switched for the next
        step here.
        """
        self._check_attached()
        statistics = self.statistics
        assert statistics is not None
        if loss is not None:
            self._losses.add(loss, statistics.measuring)
        self.iteration += 1
        if self.training_flops is not None:
            step_flops, saved = self._step_costs
            self.training_flops += step_flops
            self.saved_backward_flops = (self.saved_backward_flops or 0) + saved
        position = self.iteration % self.config.decision_interval
        if position:
            if not statistics.measuring and statistics.measures(position):
                statistics.set_measuring(True)
            return
        statistics.set_measuring(False)
        self.train_loss = self._losses.mean()
        if self.predictor is not None and self.iteration < self.config.total_steps:
            self._decide_on_schedule()

    def decide(self, action: np.ndarray) -> list[float]:
        """Apply one decision now; return the requested values (densities, or thresholds; see :class:`Decisions`).

        The decision of index ``num_decisions - 1`` is projected onto the budget; a further one raises
        ``RuntimeError``.
        """
        self._check_attached()
        if self.decision >= self.config.num_decisions:
            raise RuntimeError(
                f"decide() after the last of num_decisions={self.config.num_decisions} decisions: the run ended on "
                "its budget; build a new Pruner for a new run"
            )
        requested = self.decisions.apply(
            action, decision=self.decision, iteration=self.iteration, train_loss=self.train_loss
        )
        self.decision += 1
        self._step_costs = self._costs()
        statistics = self.statistics
        assert statistics is not None
        if self.iteration % self.config.decision_interval == 0 and statistics.measures(0):
            statistics.set_measuring(True)
        return requested

    def _decide_on_schedule(self) -> None:
        """Validate, observe, ask the policy, decide."""
        accuracy, val_loss = self.validate()
        loss = self.train_loss if self.iteration > 0 else val_loss
        obs = self.observation(accuracy, 0.0 if loss is None else loss)
        predictor = self.predictor
        assert predictor is not None
        if self._stateful:
            start = np.array([self.decision == 0])
            action, self._policy_state = predictor.predict(
                obs, state=self._policy_state, episode_start=start, deterministic=True
            )
        else:
            action, _ = predictor.predict(obs, deterministic=True)
        self.decide(np.asarray(action))

    def validate(self) -> tuple[float, float | None]:
        """``val_fn()`` inside :meth:`evaluating`, in eval mode without gradients: (accuracy, loss or ``None``).

        Without ``val_fn``: ``(0.0, None)`` (the observation's ``val_accuracy`` column then holds 0).
        """
        if self.val_fn is None:
            return 0.0, None
        was_training = self.model.training
        with self.evaluating(), torch.no_grad():
            self.model.eval()
            try:
                result = self.val_fn()
            finally:
                self.model.train(was_training)
        if isinstance(result, (tuple, list)) and len(result) == 2:
            return float(result[0]), float(result[1])
        if isinstance(result, (int, float, np.number)) or (isinstance(result, torch.Tensor) and result.numel() == 1):
            return float(result), None
        raise ValueError(
            f"val_fn returned {type(result).__name__}; expected the validation accuracy or (accuracy, loss)"
        )

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """A validation pass: the equilibrium statistic reads the layers' outputs inside it (one pass a decision)."""
        statistics = self.statistics
        assert statistics is not None
        with statistics.evaluating():
            yield

    # ------------------------------------------------------------------------------------------------ reading
    @property
    def progress(self) -> float:
        """Optimizer steps done / ``total_steps``."""
        return self.iteration / self.config.total_steps

    @property
    def observers(self) -> dict[str, Observer]:
        """The observers by statistic name (the observed families and what the rules read)."""
        return {} if self.statistics is None else self.statistics.observers

    def inference_flops(self) -> int:
        """Inference FLOPs per sample of the active network."""
        return inference_flops(self.masks.all_layers)

    def snapshot(self, val_accuracy: float, train_loss: float) -> TrainingSnapshot:
        """The training state now, as the observation's columns read it."""
        statistics = self.statistics
        assert statistics is not None
        return TrainingSnapshot(
            layers=self.masks.layers,
            all_layers=self.masks.all_layers,
            progress=self.progress,
            train_loss=train_loss,
            val_accuracy=val_accuracy,
            global_density=self.masks.global_density(),
            flops_fraction=self.inference_flops() / self.dense_flops,
            target_density=self.config.target_density,
            num_classes=self.num_classes,
            statistics=statistics.features(self.config.observations),
        )

    def observation(self, val_accuracy: float, train_loss: float) -> np.ndarray:
        """The ``(L, F)`` float32 observation now (:meth:`ObservationLayout.build`), with these two global values."""
        return self.layout.build(self.snapshot(val_accuracy, train_loss))

    def density_to_action(self, density: float | np.ndarray) -> np.ndarray:
        """The action that asks for ``density`` (inverse of the action map), clipped to [-1, 1]."""
        return self.decisions.density_to_action(density)

    def threshold_to_action(self, threshold: float | np.ndarray) -> np.ndarray:
        """The action that asks for ``threshold`` on the selector's score scale, clipped to [-1, 1]."""
        return self.decisions.threshold_to_action(threshold)

    def summary(self) -> PruningSummary:
        """Per-layer density, global density and FLOPs fraction now (``str()`` of it is a table)."""
        return PruningSummary.of(
            self.masks.all_layers, self.inference_flops(), self.dense_flops, self.iteration, self.decision
        )

    def log(self, writer: Any, step: int | None = None) -> None:
        """Write the summary's scalars to a ``torch.utils.tensorboard.SummaryWriter`` at ``step`` (default: steps)."""
        self.summary().log(writer, self.iteration if step is None else step)

    # ------------------------------------------------------------------------------------------------ ending
    def remove(self, compact: bool = False) -> nn.Module:
        """Detach every hook and return a plain model: inactive weights exactly zero (or a compacted copy).

        With ``compact=True`` (neuron granularity) the result is a smaller network without the inactive units
        (:func:`sparsity_gym.masks.compaction.compact`); the model itself keeps its zeros. The driver cannot be
        stepped afterwards.
        """
        if not self._removed:
            for hook in self._hooks:
                hook.remove()
            self._hooks.clear()
            if self.statistics is not None:
                self.statistics.detach()
            if self.freezer is not None:
                self.freezer.remove()
            self.masks.detach()
            self._removed = True
        return compaction.compact(self.model, self.masks) if compact else self.model

    def _check_attached(self) -> None:
        if self._removed:
            raise RuntimeError("the Pruner was removed (remove() detached its hooks); build a new one to prune again")

    def _before_optimizer_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self.statistics is not None and self.statistics.measuring:
            self.statistics.after_backward()

    def _costs(self) -> tuple[int, int]:
        """FLOPs of one training step of the active network, and those the frozen neurons save (per step)."""
        if self.batch_size is None:
            return 0, 0
        step_flops = training_step_flops(self.inference_flops(), self.batch_size)
        if self.freezer is None:
            return step_flops, 0
        positions = {i: m.info.output_positions for i, m in enumerate(self.masks.layers)}
        saved = self.freezer.saved_backward_flops(self.batch_size, positions)
        return step_flops - saved, saved


def _config(
    policy: Any, explicit: Mapping[str, Any], settings: Mapping[str, Any], steps_per_epoch: int | None
) -> PruningConfig:
    """The run's config: the policy's settings, the user's keywords, derived observations and interval."""
    allowed = [f for f in pruning_field_names() if f not in explicit]
    check_fields("Pruner", settings, allowed)
    given = {**{k: v for k, v in explicit.items() if v is not None}, **settings}
    if "total_steps" not in given:
        raise ValueError("total_steps=None is not allowed; expected the optimizer steps of the run (an integer >= 1)")
    merged = merge_settings(policy, given, steps_per_epoch) if policy is not None else dict(given)
    if "observations" not in merged:
        merged["observations"] = () if policy is None else families_read(declared_reads(policy))
    if "decision_interval" not in merged:
        total = merged["total_steps"]
        merged["decision_interval"] = default_interval(total) if isinstance(total, int) else total
    return PruningConfig(**merged)


def _input_shape(model: nn.Module, input_shape: Sequence[int] | None, example: torch.Tensor | None) -> tuple[int, ...]:
    """One sample's shape: given, from ``example``, or ``(in_features,)`` of a first Linear layer."""
    if input_shape is not None:
        return tuple(int(s) for s in input_shape)
    if example is not None:
        return tuple(int(s) for s in example.shape[1:])
    first = next((m for m in model.modules() if isinstance(m, PRUNABLE)), None)
    if isinstance(first, nn.Linear):
        return (int(first.in_features),)
    kind = "no prunable layer" if first is None else f"a first prunable layer {type(first).__name__}"
    raise ValueError(
        f"input_shape=None is not allowed for a network with {kind}; expected input_shape= one sample's shape "
        "(e.g. (3, 32, 32)) or example_input= a batch"
    )


def _masks(
    infos: Sequence[LayerInfo],
    cfg: PruningConfig,
    generator: torch.Generator,
    optimizer: torch.optim.Optimizer,
    initial_active: Mapping[str, torch.Tensor] | None,
) -> MaskedNetwork:
    """The masks of every prunable layer, attached to ``optimizer``; ``initial_active`` units only at the start."""
    masks = MaskedNetwork(
        infos,
        granularity=cfg.granularity,
        selector=cfg.selector,
        regrowth=cfg.regrowth,
        exchange_fraction=cfg.exchange_fraction,
        generator=generator,
        optimizer=optimizer,
        feedback_updates_pruned=cfg.feedback_updates_pruned,
    )
    if initial_active:
        unknown = sorted(set(initial_active) - {m.info.name for m in masks.layers})
        if unknown:
            raise ValueError(f"initial_active names layers {unknown!r}; expected controlled layers of the network")
        everything = torch.ones(0, dtype=torch.bool)
        masks.set_keep([initial_active.get(m.info.name, everything.new_ones(m.num_units)) for m in masks.layers])
    return masks


def _output_units(layers: Sequence[Any]) -> int:
    """Output units of the network's output layer (the last prunable layer found)."""
    return int(layers[-1].info.fan_out)
