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

from sparsity_gym.core.explicit_state import load_together
from sparsity_gym.masks import compaction
from sparsity_gym.masks.freezing import RowFreezer
from sparsity_gym.models.layers import LayerCache
from sparsity_gym.observation.features import ObservationLayout
from sparsity_gym.observation.observers import Observer
from sparsity_gym.observation.snapshot import TrainingSnapshot
from sparsity_gym.pruning.decisions import Decisions
from sparsity_gym.pruning.flops import dense_inference_flops, inference_flops, step_costs
from sparsity_gym.pruning.measurement import IntervalLoss, Statistics
from sparsity_gym.pruning.policy_binding import (
    bind,
    check_reads,
    declared_reads,
    policy_name,
    resolve_policy,
    takes_state,
)
from sparsity_gym.pruning.pruner_state import check_loadable, check_step, fingerprint, from_state, to_state
from sparsity_gym.pruning.pruning_config import PruningConfig
from sparsity_gym.pruning.setup import (
    build_masks,
    check_optimizer,
    check_validation_source,
    claim_layers,
    discover_layers,
    input_shapes_of,
    output_units,
    release_layers,
    resolve_config,
    validation_result,
)
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
            ``bind(context)`` (:mod:`sparsity_gym.pruning.policy_binding`): a saved PPO model, a handcrafted cell or a
            criterion (``baselines.method("cubic@0.9+erk")``), or a name (``"cubic@0.9+erk"``, resolved by
            ``baselines`` once imported: :func:`~sparsity_gym.pruning.policy_binding.resolve_policy`).
        target_density: The budget the run ends on (``None``: the final density is the policy's).
        total_steps: Optimizer steps of the whole run (e.g. ``len(loader) * epochs``).
        decision_interval: Steps between decisions; a divisor of ``total_steps`` (default: the one giving about
            10 decisions).
        input_shape: The shape of one input sample, for layer discovery; or give ``example_input`` (a batch). When
            neither is given and the first prunable layer is an ``nn.Linear``, the first ``(in_features,)`` of the
            Linear layers on which the model runs.
        example_input: A batch of inputs: its shape, and the dtype of the probe forward pass that discovers the
            layers (integer tokens for a model that starts with ``nn.Embedding``).
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
        allow_skipped_steps: Accept ``step()`` with no ``optimizer.step()`` since the last one (a loop whose
            ``torch.amp.GradScaler`` skips steps); by default that is refused, as it would advance the schedule
            without training.
        **settings: Other :class:`PruningConfig` fields (selector, granularity, budget, allocation, ...); with an
            allocation rule (``+erk``) ``budget`` defaults to ``global``.

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
        allow_skipped_steps: bool = False,
        **settings: Any,
    ) -> None:
        self._removed = True  # nothing attached yet
        policy = resolve_policy(policy)
        explicit = {
            "total_steps": total_steps,
            "decision_interval": decision_interval,
            "target_density": target_density,
        }
        if config is not None and (settings or any(v is not None for v in explicit.values())):
            raise ValueError("config= is not allowed with settings or total_steps/target_density; expected one of them")
        self.config = config if config is not None else resolve_config(policy, explicit, settings, steps_per_epoch)
        reads = declared_reads(policy) if policy is not None else ()
        if policy is not None:  # before anything is built: a policy that needs what the user did not give
            columns = ObservationLayout(1, self.config.observations)
            check_reads(policy, tuple(columns.columns) if reads is None else reads, columns, val_fn is not None)
        check_validation_source(self.config, policy, val_fn is not None)
        self.model, self.optimizer, self.val_fn, self.batch_size = model, optimizer, val_fn, batch_size
        self.generator = generator if generator is not None else torch.Generator().manual_seed(seed)
        self.allow_skipped_steps = bool(allow_skipped_steps)
        infos = discover_layers(model, input_shapes_of(model, input_shape, example_input), example_input, layer_cache)
        check_optimizer(optimizer, infos)
        cfg = self.config
        self.masks = build_masks(infos, cfg, self.generator, initial_active)
        claim_layers(self, infos)  # refuses a second live Pruner on these layers
        self.statistics = Statistics(self.masks, cfg)
        # the optimizer's hooks, in this order: the observers read the gradients before DPF or the freezer touch
        # them (pre-hooks); the masks are re-applied before the freezer restores its rows (post-hooks)
        self._optimizer_steps = 0  # optimizer steps since the last step()
        self._hooks = [optimizer.register_step_pre_hook(self._before_optimizer_step)]
        self.masks.attach(optimizer)
        layers = [m.info.module for m in self.masks.layers]
        self.freezer = RowFreezer(optimizer, layers) if cfg.effect == "freeze" else None
        self._removed = False
        try:
            self._finish_building(policy, reads, num_classes)
        except BaseException:
            self.remove()  # a Pruner that could not be built leaves no hook behind
            raise

    def _finish_building(self, policy: Any, reads: tuple[str, ...] | None, num_classes: int | None) -> None:
        """The decisions, layout and counters; the policy bound and its first decision taken."""
        cfg = self.config
        self.dense_flops = dense_inference_flops(self.masks.all_layers)
        self.decisions = Decisions(cfg, self.masks, self.freezer, self.generator, self.statistics.rule_scores)
        self.layer_names = tuple(m.info.name for m in self.masks.layers)
        self.layout = ObservationLayout(len(self.layer_names), cfg.observations)
        self.num_classes = num_classes if num_classes is not None else output_units(self.masks.all_layers)
        self.iteration = self.decision = 0
        self.training_flops: int | None = None if self.batch_size is None else 0
        self.saved_backward_flops: int | None = None if self.batch_size is None else 0
        self.train_loss: float | None = None
        self._losses = IntervalLoss()
        self._step_costs = self._costs()
        self._policy_state: Any = None
        self._stateful = False
        self._reads_loss = False
        self._start_fingerprint: torch.Tensor | None = None
        self.policy = policy
        self.policy_name = None if policy is None else policy_name(policy)
        self.predictor = None if policy is None else bind(policy, self)
        if self.predictor is not None:
            read = declared_reads(self.predictor) or reads
            read = tuple(self.layout.columns) if read is None else read
            check_reads(self.predictor, read, self.layout, self.val_fn is not None)
            self._reads_loss = "train_loss" in read
            self._stateful = takes_state(self.predictor)
            self._decide_on_schedule()
            if any(m.num_active < m.num_units for m in self.masks.layers):  # the decision changed the weights
                self._start_fingerprint = fingerprint(self.model)

    # ------------------------------------------------------------------------------------------------ stepping
    def step(self, loss: torch.Tensor | float | None = None) -> None:
        """Count one optimizer step (call it after ``optimizer.step()``); decide when an interval ends.

        ``loss`` (this step's training loss, a tensor kept on its device; per-sample losses count as their mean)
        feeds the interval's mean: the ``train_loss`` column and the loss hold. The measuring window of the
        statistics is switched for the next step here. A step with no ``optimizer.step()`` since the last one
        (unless ``allow_skipped_steps``), or past ``total_steps``, is a ``RuntimeError``.
        """
        self._check_attached()
        check_step(self.iteration, self.config.total_steps, self._optimizer_steps, self.allow_skipped_steps)
        self._optimizer_steps = 0
        statistics = self.statistics
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
        if self.iteration % self.config.decision_interval == 0 and statistics.measures(0):
            statistics.set_measuring(True)
        return requested

    def _decide_on_schedule(self) -> None:
        """Validate, observe, ask the policy, decide."""
        accuracy, val_loss = self.validate()
        loss = self.train_loss if self.iteration > 0 else val_loss
        if loss is None and self._reads_loss:
            where = "val_fn= returning (accuracy, loss)" if self.iteration == 0 else "the loss to pruner.step(loss)"
            raise ValueError(
                f"the policy reads train_loss, which is unknown at step {self.iteration}; expected {where}"
            )
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
        return validation_result(result)

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """A validation pass: the equilibrium statistic reads the layers' outputs inside it (one pass a decision)."""
        statistics = self.statistics
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
        return self.statistics.observers

    def inference_flops(self) -> int:
        """Inference FLOPs per sample of the active network."""
        return inference_flops(self.masks.all_layers)

    def snapshot(self, val_accuracy: float, train_loss: float) -> TrainingSnapshot:
        """The training state now, as the observation's columns read it."""
        statistics = self.statistics
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

    # ------------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything the driver carries between steps, as plain tensors and numbers (copies).

        ``config`` (the fields, to refuse another run's state), ``counters`` (iteration, decision, training and
        saved backward FLOPs), ``train_loss`` and ``losses`` (the interval's partial sums), ``masks`` (with the
        generator), ``measuring``, ``observers`` (by statistic name), ``freezer``, ``decisions`` and ``policy``
        (a recurrent policy's state, and the predictor's own ``state_dict()`` if it has one). The model's
        parameters and the optimizer's state belong to their own ``state_dict``. Call it between steps.
        """
        statistics = self.statistics
        predictor_state = getattr(self.predictor, "state_dict", None)
        return {
            "config": self.config.to_dict(),
            "counters": {
                "iteration": self.iteration,
                "decision": self.decision,
                "training_flops": self.training_flops,
                "saved_backward_flops": self.saved_backward_flops,
            },
            "train_loss": self.train_loss,
            "losses": self._losses.state_dict(),
            "masks": self.masks.state_dict(),
            "measuring": statistics.measuring,
            "observers": {name: observer.state_dict() for name, observer in statistics.observers.items()},
            "freezer": None if self.freezer is None else self.freezer.state_dict(),
            "decisions": self.decisions.state_dict(),
            "policy": {
                "name": self.policy_name,
                "recurrent": to_state(self._policy_state),
                "predictor": predictor_state() if callable(predictor_state) else None,
            },
        }

    def load_state_dict(self, state: Any) -> None:
        """Resume from a :meth:`state_dict`: the next ``step()`` continues the run exactly.

        Build the model, the optimizer and the Pruner as for the checkpointed run, then load the model's, the
        optimizer's and the Pruner's states (the Pruner's first decision, taken when it is built, acts on the
        model it is given: a model loaded before that is refused when its weights are still those the decision
        left). A state of another run (another config or network) is a ``ValueError`` and changes nothing.
        """
        self._check_attached()
        statistics = self.statistics
        counters = check_loadable(self, state)
        parts: list[tuple[Any, Any]] = [(self.masks, state["masks"]), (self.decisions, state["decisions"])]
        parts += [(self._losses, state["losses"])]
        parts += [(statistics.observers[name], value) for name, value in state["observers"].items()]
        if self.freezer is not None:
            parts.append((self.freezer, state["freezer"]))
        before = {name: observer.state_dict() for name, observer in statistics.observers.items()}
        was_measuring = statistics.measuring
        statistics.set_measuring(bool(state["measuring"]))  # first: switching on opens a new window
        try:
            load_together(parts)
        except ValueError:
            statistics.set_measuring(was_measuring)
            for name, observer in statistics.observers.items():
                observer.load_state_dict(before[name])
            raise
        self.iteration, self.decision = counters["iteration"], counters["decision"]
        self.training_flops, self.saved_backward_flops = counters["training_flops"], counters["saved_backward_flops"]
        self.train_loss = state["train_loss"]
        self._policy_state = from_state(state["policy"]["recurrent"])
        loader = getattr(self.predictor, "load_state_dict", None)
        if callable(loader) and state["policy"]["predictor"] is not None:
            loader(state["policy"]["predictor"])
        self._step_costs = self._costs()

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
            self.statistics.detach()
            if self.freezer is not None:
                self.freezer.remove()
            self.masks.detach()
            release_layers(self)
            self._removed = True
        return compaction.compact(self.model, self.masks) if compact else self.model

    def _check_attached(self) -> None:
        if self._removed:
            raise RuntimeError("the Pruner was removed (remove() detached its hooks); build a new one to prune again")

    def _before_optimizer_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._optimizer_steps += 1
        if self.statistics.measuring:
            self.statistics.after_backward()

    def _costs(self) -> tuple[int, int]:
        """FLOPs of one training step of the active network, and those the frozen neurons save (per step)."""
        if self.batch_size is None:
            return 0, 0
        return step_costs(self.masks.layers, self.inference_flops(), self.batch_size, self.freezer)
