"""The environment's frozen configuration, validated once when the environment is built."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch.nn as nn

from sparsity_gym.core.checks import check_choice, check_fields, check_number
from sparsity_gym.core.frozen import FrozenConfig
from sparsity_gym.datasets import available_datasets
from sparsity_gym.datasets.vision_datasets import SPECS as VISION_SPECS
from sparsity_gym.datasets.vision_datasets import check_data_root
from sparsity_gym.models import available_networks
from sparsity_gym.models.initial_state import InitialState
from sparsity_gym.models.names import parse_network
from sparsity_gym.pruning.pruning_config import (
    OBSERVATION_FAMILIES,
    PruningConfig,
    observation_families,
    pruning_field_names,
)

OPTIMIZERS = ("sgd", "adam", "adamw")
REWARDS = ("final_accuracy", "delta_accuracy")
PRECISIONS = ("float32", "bfloat16", "float16")
ENV_LABELS = MappingProxyType({"total_steps": "total_iterations", "burn_in_steps": "burn_in_epochs"})
"""The env's names of the :class:`PruningConfig` fields it holds in other units (for messages)."""


@dataclass(frozen=True)
class EnvConfig(FrozenConfig):
    """Everything that defines an episode of :class:`sparsity_gym.env.SparsityEnv`.

    Every field can be passed as a keyword to ``gym.make("SparsityGym/Schedule-v0", ...)``. Values are
    checked when the config is built: a bad value raises ``ValueError`` naming the field, the value and what
    is allowed (the pruning fields are checked by :class:`~sparsity_gym.pruning.pruning_config.PruningConfig`, which
    :meth:`pruning` builds for the episode's pruning driver); an unknown keyword raises
    :class:`sparsity_gym.core.checks.UnknownFieldError` (both a ``TypeError`` and a ``ValueError``) naming it
    and the closest field. Numpy scalars (``np.float32(0.1)``, ``np.int64(10)``) are accepted and stored as
    the Python numbers they hold.

    Attributes:
        network: A zoo name (``sparsity_gym.models.zoo.available_networks()``) or a callable returning an
            ``nn.Module``; the callable receives whichever of ``input_shape`` and ``num_classes`` it accepts,
            plus ``network_kwargs``.
        network_kwargs: Extra keyword arguments for the network builder (e.g. ``{"widths": (128, 128)}``).
        capacity: Growth room (neuron granularity): every neuron-prunable hidden layer of the built network (any
            network, a user factory included) is widened to ``ceil(capacity · width)`` units through its traced
            data flow, and starts with its usual width active, the spare units masked (zero fan-in and fan-out),
            so a layer can grow up to ``capacity`` times its width (DYNO; :mod:`sparsity_gym.models.widening`).
            Layers in a residual addition keep their width. 1 disables.
        initial_state: Start every episode from a pre-trained state (fine-tuning, DYNO's setting): a state-dict
            file (``torch.load(weights_only=True)``) or a callable returning the trained network or its state
            dict, loaded into the seeded build before growth room, masks and optimizer
            (:mod:`sparsity_gym.models.initial_state`; :mod:`sparsity_gym.experiments.pretrain` makes one).
            ``None``: a fresh initialisation.
        dataset: A dataset name (``sparsity_gym.datasets.available_datasets()``); ``digits`` ships with scikit-learn.
        data_root: Local folder of the datasets read from disk (``mnist``, ``fashion_mnist``, ``cifar10``, in
            torchvision's layout; see :mod:`sparsity_gym.datasets.vision_datasets`).
        data_seed: Seed of the train/validation/test split; fixed across episodes so the test set never moves.
        granularity: ``weight`` (unstructured) or ``neuron`` (rows of Linear, output channels of Conv1d/Conv2d; the
            output layer is never pruned at neuron granularity).
        selector: Which units go when a layer shrinks (one spec each in :mod:`sparsity_gym.masks.selectors`):
            ``magnitude`` (smallest |w| among the active, a neuron's score is the l2 norm of its fan-in),
            ``random``, ``snr`` (lowest smoothed gradient SNR, CRITERIA §1; in threshold mode its own rule,
            ``snr > 10**t OR global magnitude``), ``redundancy`` (DYNO: dormant neurons first, then greedily the most
            redundant by cosine, CRITERIA §2; neuron granularity only), ``contribution`` (smallest
            λ1·C_avg + λ2·C_max over the window, CRITERIA §3; ties: the higher index goes first) or
            ``equilibrium`` (NEq: smallest velocity |v| first, CRITERIA §4). A selector without a threshold scale
            (``redundancy``) is refused with ``action_mode="threshold"``.
        regrowth: How units return when a layer grows (one spec each in :mod:`sparsity_gym.masks.regrowth`):
            ``random`` (chosen at random among the inactive), ``none`` (a layer's density can then only fall),
            ``north`` (NORTH-Select: the best of many random fan-ins by the residual of its activation outside
            the active neurons' span, with zero fan-out, bias and optimizer state; CRITERIA §2) or ``feedback``
            (DPF, CRITERIA §1: the dense weights keep training under the mask and every update re-selects among
            all units, which return with their weights; see :mod:`sparsity_gym.masks`).
        selector_options: Options the selector reads (its spec's ``options``), e.g.
            ``{"combine": "and", "magnitude_scope": "layer"}`` for ``snr``.
        feedback_updates_pruned: Under ``regrowth="feedback"``, whether the step updates pruned weights' dense
            values (True: DPF) or leaves them (False: the SNR paper's §5.3 option).
        burn_in_epochs: No mask update at decisions taken before this many epochs of training (SNR pruning's
            burn-in, one epoch in the paper); the projection onto ``target_density`` still happens.
        loss_hold: Skip the mask update at a decision whose interval's mean training loss is above the best
            interval mean so far (SNR pruning's hold; ``info["mask_update"]`` says why an update was skipped).
        effect: ``prune``: a masked unit is exactly zero in the forward pass. ``freeze`` (neuron granularity, no
            target density): the units the action leaves out keep their forward pass but are not updated, their
            fan-in rows and biases bit-identical through every optimizer step (NEq).
        action_mode: ``density``: the action is each layer's target density. ``threshold``: the action is a
            threshold on the selector's score scale (``sparsity_gym.masks.selectors.threshold_range``); the active units
            whose score reaches it stay active (prune never regrows in this mode) or trainable (freeze).
        exchange_fraction: Fraction f of the active units dropped and regrown at random at every mask update
            on top of the density change (CRITERIA §5; 0 disables).
        target_density: The budget the episode ends on (the last decision is projected onto it, in every action
            mode); what it measures is ``budget``'s. ``None`` leaves the final density to the policy.
        budget: What ``target_density`` constrains. ``layer``: every controlled layer ends at it. ``global``: the
            parameter-weighted density over every prunable layer (``info["density"]``: active weights / weights)
            ends at it, the policy's allocation kept: its last per-layer densities are scaled onto the budget by
            water-filling within each layer's bounds [one unit, all units], with exact unit counts
            (:mod:`sparsity_gym.pruning.projection`), so the final global density is the target to one unit.
            ``flops``: the same with the inference-FLOPs fraction (``info["flops"] / info["dense_flops"]``,
            AMC's constraint) as the budget, a weight of layer l costing ``2 * P_l``.
        allocation: ``policy``: the action's per-layer densities as the policy gives them. A rule name
            (``sparsity_gym.masks.allocation``: ``uniform``, ``er``, ``erk``, ``lamp``, ``global_magnitude``): at
            every decision the requested densities' parameter-weighted mean is the requested global density
            and the rule shares it out across the layers (then ``budget`` projects the last decision). Needs
            ``action_mode="density"``.
        allocation_tilt: With a rule, keep the policy's allocation as a residual on it: the rule's densities
            times each layer's requested density over the requested global density, scaled back onto the
            global density by water-filling within [one unit, dense] (``sparsity_gym.pruning.budget.tilted``). A
            uniform request gives the rule's allocation exactly, so a schedule policy acts as the rule's
            handcrafted cell and a learned residual on it can move density between layers.
        action_scale: How a density action maps onto ``[min_density, max_density]``: ``linear`` (affine) or
            ``log`` (log-affine: equal action steps are equal density ratios, the resolution low targets need;
            ``sparsity_gym.pruning.actions``). Threshold actions are always affine.
        min_density: Lowest density an action can ask for; an action of -1 maps here. In density mode at most
            ``target_density`` (else a schedule would sit at this bound and jump at the last decision).
        max_density: Highest density an action can ask for; an action of +1 maps here. In density mode at least
            ``target_density``.
        total_iterations: Optimizer steps in one episode (one full training run).
        decision_interval: Optimizer steps between two decisions; must divide ``total_iterations``.
        batch_size: Training mini-batch size.
        optimizer: ``sgd`` (momentum, nesterov off), ``adam`` or ``adamw``.
        lr: Learning rate.
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 penalty (SGD, Adam) or decoupled decay (AdamW).
        observations: Statistic families in the observation, any subset of ``snr``, ``rank``,
            ``contribution``, ``equilibrium`` (all by default; empty: only the static, state and global
            features; one name alone is read as that family, ``"snr"`` as ``("snr",)``). See
            :mod:`sparsity_gym.observation.observers`.
        stats_window: The step-based statistics (snr, rank, contribution) are collected on the last
            ``stats_window`` optimizer steps of each decision interval (at most ``decision_interval``; ``None``:
            every step, the whole window since the last decision).
        reward: ``final_accuracy`` (validation accuracy at the episode's end, 0 before) or ``delta_accuracy``
            (change of validation accuracy at every decision; sums to the final minus the initial accuracy).
        density_cost: Subtracted from the final reward times the final global density.
        flops_cost: Subtracted from the final reward times the final inference FLOPs as a fraction of dense.
        divergence_reward: Reward of a step at which training diverged (non-finite loss).
        eval_batch_size: Batch size of validation and test passes.
        device: Torch device the network trains on (``cpu``, ``cuda``, ``cuda:1``...).
        precision: ``float32``, or mixed precision for the training steps' forward pass: ``bfloat16``
            (autocast, CPU or GPU) or ``float16`` (autocast with a gradient scaler, GPU only). The loss, the
            optimizer state, validation and test passes and every statistic stay in float32 (statistics
            upcast what the hooks see).

    """

    network: str | Callable[..., nn.Module] = "mlp"
    network_kwargs: Mapping[str, Any] = field(default_factory=dict)
    capacity: float = 1.0
    initial_state: InitialState | None = None
    dataset: str = "digits"
    data_root: str | None = None
    data_seed: int = 0
    granularity: str = "weight"
    selector: str = "magnitude"
    regrowth: str = "random"
    selector_options: Mapping[str, Any] = field(default_factory=dict)
    feedback_updates_pruned: bool = True
    burn_in_epochs: float = 0.0
    loss_hold: bool = False
    effect: str = "prune"
    action_mode: str = "density"
    exchange_fraction: float = 0.0
    target_density: float | None = 0.1
    budget: str = "layer"
    allocation: str = "policy"
    allocation_tilt: bool = False
    action_scale: str = "linear"
    min_density: float = 0.02
    max_density: float = 1.0
    total_iterations: int = 400
    decision_interval: int = 40
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    observations: tuple[str, ...] = OBSERVATION_FAMILIES
    stats_window: int | None = 1
    reward: str = "final_accuracy"
    density_cost: float = 0.0
    flops_cost: float = 0.0
    divergence_reward: float = 0.0
    eval_batch_size: int = 1024
    device: str = "cpu"
    precision: str = "float32"

    def __new__(cls, *args: Any, **kwargs: Any) -> EnvConfig:
        """Refuse an unknown keyword before the dataclass does, naming it and the closest field."""
        check_fields(cls.__name__, kwargs, field_names())
        return super().__new__(cls)

    def __post_init__(self) -> None:
        self.normalise(("network_kwargs", "selector_options"))  # numpy scalars from a sweep: Python numbers
        object.__setattr__(self, "observations", observation_families(self.observations))
        self.validate()

    @property
    def num_decisions(self) -> int:
        """Decisions (environment steps) in one episode."""
        return self.total_iterations // self.decision_interval

    @property
    def network_name(self) -> str:
        """A readable name for the network, also for user factories."""
        if isinstance(self.network, str):
            return self.network
        return getattr(self.network, "__name__", type(self.network).__name__)

    def replace(self, **changes: Any) -> EnvConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def steps_per_epoch(self, train_size: int) -> int:
        """Optimizer steps in one pass over ``train_size`` training samples (the last batch may be short)."""
        return math.ceil(train_size / min(self.batch_size, train_size))

    def pruning(self, train_size: int) -> PruningConfig:
        """The pruning fields as the episode's :class:`PruningConfig`.

        ``burn_in_epochs`` becomes ``burn_in_steps`` (``ceil(epochs * steps_per_epoch(train_size))``) and
        ``total_iterations`` becomes ``total_steps``; the other pruning fields are copied as they are.
        """
        return self._pruning_config(math.ceil(self.burn_in_epochs * self.steps_per_epoch(train_size) - 1e-9))

    def _pruning_config(self, burn_in_steps: int) -> PruningConfig:
        shared = {name: getattr(self, name) for name in pruning_field_names() if hasattr(self, name)}
        return PruningConfig(
            **shared, burn_in_steps=burn_in_steps, total_steps=self.total_iterations, labels=ENV_LABELS
        )

    def _validate_network(self) -> None:
        """A zoo name (a sized name points to ``network_kwargs`` and ``task=``) or a callable."""
        if isinstance(self.network, str):
            if self.network not in available_networks():
                try:
                    spec = parse_network(self.network)
                except ValueError:
                    spec = None
                if spec is not None and spec.network != spec.name:
                    raise ValueError(
                        f"network={self.network!r} is a sized name, which only a task takes (task=..., "
                        f"network={self.network!r}); without a task use network={spec.network!r}, "
                        f"network_kwargs={dict(spec.kwargs)!r}"
                    )
            check_choice("network", self.network, available_networks())
        elif not callable(self.network):
            raise ValueError(
                f"network={self.network!r} is not allowed; expected a zoo name or a callable returning nn.Module"
            )

    def _validate_episode(self) -> None:
        """The env-only fields of an episode's network: growth room and a pre-trained start."""
        check_number("capacity", self.capacity, low=1.0)
        if self.capacity > 1.0 and self.granularity != "neuron":
            raise ValueError(f"capacity={self.capacity!r} is not allowed with granularity='weight'; expected 1.0")
        state = self.initial_state
        if not (state is None or callable(state) or (isinstance(state, (str, os.PathLike)) and os.path.isfile(state))):
            raise ValueError(
                f"initial_state={state!r} is not allowed; expected None, the path of an existing state-dict file or "
                "a callable returning the trained network"
            )

    def validate(self) -> None:
        """Check every field; raise ``ValueError`` naming the first bad field, its value and what is allowed.

        The pruning fields are checked by :class:`PruningConfig` (under the env's names of ``total_iterations``
        and ``burn_in_epochs``).
        """
        self._validate_network()
        check_choice("dataset", self.dataset, available_datasets())
        if self.dataset in VISION_SPECS:  # files on disk: checked now, not when the first env loads them
            check_data_root(self.dataset, self.data_root)
        check_number("data_seed", self.data_seed, low=0, integer=True)
        check_number("burn_in_epochs", self.burn_in_epochs, low=0.0)
        self._pruning_config(burn_in_steps=0)
        self._validate_episode()
        check_number("batch_size", self.batch_size, low=1, integer=True)
        check_number("eval_batch_size", self.eval_batch_size, low=1, integer=True)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_number("lr", self.lr, low=0.0, low_inclusive=False)
        check_number("momentum", self.momentum, low=0.0, high=1.0, high_inclusive=False)
        check_number("weight_decay", self.weight_decay, low=0.0)
        check_choice("reward", self.reward, REWARDS)
        check_number("density_cost", self.density_cost, low=0.0)
        check_number("flops_cost", self.flops_cost, low=0.0)
        check_number("divergence_reward", self.divergence_reward)
        check_choice("precision", self.precision, PRECISIONS)
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device={self.device!r} is not allowed; expected a torch device string like 'cpu'")


def field_names() -> tuple[str, ...]:
    """The names of :class:`EnvConfig`'s fields (the keywords ``gym.make`` and ``SparsityEnv`` accept)."""
    return tuple(f.name for f in dataclasses.fields(EnvConfig))
