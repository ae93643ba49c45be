"""Held-out populations: the networks a verdict about *unseen* networks is measured on, one population per task.

A task names two or three held-out networks; a claim about networks nobody trained on needs more of them, and an
interval over networks (:func:`sparsity_gym.experiments.paired_intervals.hierarchical_interval`). A
:class:`Population` is the task's named held-out networks plus networks drawn by a seeded generator: a depth
uniform in ``depths`` (conv or hidden layers), then each layer's width (or channel count) uniform in
``sizes``, redrawn when the network

* is in the task's train split or among its named held-out networks, or was drawn already (no duplicates);
* costs more than ``max_cost`` times the costliest named held-out network, cost being the dense network's
  multiply-accumulates for one sample (:func:`network_macs`; an episode's time grows with it), so a population's
  episodes cost about what the named held-out networks' do.

The generator is ``np.random.default_rng(seed)``, ``seed`` by default the CRC-32 of ``population:<task>``: the
same population on every machine, a different draw for every task. Members are the named networks first, then
the drawn ones by depth and widths.

Registered populations (:data:`POPULATIONS`, keyed by task name; one episode of each member is timed by
``bench/population_cost.py``):

* ``mnist1d_mlp``: 10 MLPs, 1-5 hidden layers of 64-512 units (the train split has 1-3 of 128-256);
* ``mnist1d_cnn``: 8 ``cnn1d`` nets, 2-4 conv layers of 8-64 channels (train: 2 layers of 16-32);
* ``digits``: 10 networks: its three named ones (two MLPs and ``cnn_16x32``) and MLPs of 1-5 layers of 64-512;
* ``mnist5k_mlp``: 8 MLPs, 1-5 hidden layers of 64-512 units.

:func:`comparison_family` is the one place a comparison's held-out networks are resolved: a family as it is
(``heldout="named"``) or its train split with the task's population held out (``heldout="population"``; the
command line's ``--heldout population``). Training and model selection keep to the family itself, so the
population stays unseen until the comparison.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sparsity_gym.core.checks import check_choice, check_number
from sparsity_gym.core.registry import Registry
from sparsity_gym.env.tasks import Task, get_task
from sparsity_gym.experiments.families import Family, NetworkSpec, get_family, parse_network, sized
from sparsity_gym.models import build_network

__all__ = [
    "HELDOUT",
    "POPULATIONS",
    "Population",
    "available_populations",
    "comparison_family",
    "get_population",
    "network_macs",
    "register_population",
]

HELDOUT = ("named", "population")
"""What a comparison runs on: the family's named held-out networks, or the task's held-out population."""
MAX_DRAWS = 10_000
"""Draws the generator makes before it gives up (a ``ValueError``: the ranges hold too few networks)."""


@dataclass(frozen=True)
class Population:
    """A task's held-out population (see the module docstring).

    Attributes:
        task: The task's name; its named held-out networks come first, its train split is never drawn.
        kind: The generated networks' sized kind: ``mlp`` (hidden widths), ``cnn1d`` or ``cnn`` (channels).
        size: Networks in all, named and generated (at least 8).
        depths: Inclusive range of the generated networks' hidden or conv layers.
        sizes: The widths or channel counts a layer draws from.
        input_shape: One sample's shape in the task's dataset (for the cost; a test checks it against the data).
        num_classes: Classes of the task's dataset.
        max_cost: Most multiply-accumulates of a generated network, relative to the costliest named one.
        seed: The generator's seed; ``None``: the CRC-32 of ``population:<task>``.
        description: One line for reports.

    """

    task: str
    kind: str
    size: int
    depths: tuple[int, int]
    sizes: tuple[int, ...]
    input_shape: tuple[int, ...]
    num_classes: int = 10
    max_cost: float = 2.0
    seed: int | None = None
    description: str = ""

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, ("mlp", "cnn1d", "cnn"))
        check_number("size", self.size, low=8, integer=True)
        lo, hi = self.depths
        check_number("depths", lo, low=1, integer=True)
        check_number("depths", hi, low=lo, integer=True)
        if not self.sizes or min(self.sizes) < 1:
            raise ValueError(f"sizes={self.sizes!r} is not allowed; expected one or more positive integers")
        check_number("max_cost", self.max_cost, low=0.0, low_inclusive=False)

    @property
    def generator_seed(self) -> int:
        """``seed``, or the CRC-32 of ``population:<task>``."""
        return zlib.crc32(f"population:{self.task}".encode()) if self.seed is None else int(self.seed)

    def named(self) -> tuple[NetworkSpec, ...]:
        """The task's named held-out networks."""
        return tuple(parse_network(n) for n in get_task(self.task).heldout)

    def members(self) -> tuple[NetworkSpec, ...]:
        """Every network of the population: the named ones, then the generated ones (deterministic)."""
        return _members(self)

    def generated(self) -> tuple[NetworkSpec, ...]:
        """The networks the generator drew (the members after the named ones)."""
        return self.members()[len(self.named()) :]

    def cost_cap(self) -> int:
        """The most multiply-accumulates a generated network may cost."""
        return int(self.max_cost * max(network_macs(s, self.input_shape, self.num_classes) for s in self.named()))


def network_macs(spec: NetworkSpec | str, input_shape: Sequence[int], num_classes: int = 10) -> int:
    """Multiply-accumulates of the dense network's forward pass on one sample (Linear, Conv1d and Conv2d layers).

    Built with the zoo and measured with forward hooks: a layer costs its weight count times the positions its
    output has (1 for Linear, the length for Conv1d, height × width for Conv2d).
    """
    spec = parse_network(spec)
    net = build_network(spec.network, tuple(input_shape), num_classes, dict(spec.kwargs))
    total = 0

    def count(module: nn.Module, _: tuple, output: torch.Tensor) -> None:
        nonlocal total
        positions = int(np.prod(output.shape[2:])) if output.dim() > 2 else 1
        total += int(module.weight.numel()) * positions

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    try:
        with torch.no_grad():
            net(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return total


@functools.cache
def _members(population: Population) -> tuple[NetworkSpec, ...]:
    task: Task = get_task(population.task)
    named = population.named()
    wanted = population.size - len(named)
    if wanted < 0:
        raise ValueError(
            f"size={population.size} is not allowed for the population of task={task.name!r}; expected at least "
            f"its {len(named)} named held-out networks"
        )
    seen = {*task.train, *task.heldout}
    cap = population.cost_cap()
    rng = np.random.default_rng(population.generator_seed)
    lo, hi = population.depths
    drawn: list[NetworkSpec] = []
    for _ in range(MAX_DRAWS):
        if len(drawn) == wanted:
            break
        depth = int(rng.integers(lo, hi + 1))
        spec = sized(population.kind, [int(s) for s in rng.choice(np.asarray(population.sizes), size=depth)])
        if spec.name in seen:
            continue
        seen.add(spec.name)
        if network_macs(spec, population.input_shape, population.num_classes) <= cap:
            drawn.append(spec)
    if len(drawn) < wanted:
        raise ValueError(
            f"size={population.size} is not allowed for the population of task={task.name!r}: only {len(drawn)} "
            f"networks of depths {population.depths} and sizes {population.sizes} cost at most {cap} "
            "multiply-accumulates; expected a smaller size, more sizes or a larger max_cost"
        )
    drawn.sort(key=lambda s: (len(s.kwargs[_SIZE_KEY[population.kind]]), tuple(s.kwargs[_SIZE_KEY[population.kind]])))
    return (*named, *drawn)


_SIZE_KEY = {"mlp": "widths", "cnn1d": "channels", "cnn": "channels"}

POPULATIONS: Registry[Population] = Registry("population")


def register_population(population: Population) -> Population:
    """Add ``population`` to :data:`POPULATIONS` under its task's name (the task must exist); returns it."""
    get_task(population.task)
    POPULATIONS.add(population.task, population)
    return population


def available_populations() -> tuple[str, ...]:
    """Tasks (and so families) that have a held-out population."""
    return POPULATIONS.names()


def get_population(task: str) -> Population:
    """The held-out population of ``task`` (``ValueError`` naming the tasks that have one)."""
    return POPULATIONS.get(task)


def comparison_family(family: str, heldout: str = "named") -> Family:
    """The family a comparison runs on: ``family`` itself, or its train split with the task's population held out.

    ``heldout="population"`` needs a family named after a task with a population (``--task`` sets it); the view
    is named ``<family>:population``.
    """
    check_choice("heldout", heldout, HELDOUT)
    base = get_family(family)
    if heldout == "named":
        return base
    if family not in POPULATIONS:
        raise ValueError(
            f"heldout='population' is not allowed for family={family!r}; expected a family with a held-out "
            f"population: {', '.join(available_populations())}"
        )
    population = get_population(family)
    members, named = population.members(), population.named()
    drawn = f"{len(members) - len(named)} drawn" + (f" ({population.description})" if population.description else "")
    return Family(
        f"{family}:population",
        train=base.train,
        heldout=members,
        description=f"the train split of {family!r}; held out: {len(members)} networks, the named "
        f"{', '.join(s.name for s in named)} and {drawn}: {', '.join(s.name for s in members[len(named) :])}",
    )


_SIZES = (64, 96, 128, 192, 256, 384, 512)
register_population(
    Population("mnist1d_mlp", "mlp", 10, (1, 5), _SIZES, (1, 40), description="MLPs of 1-5 hidden layers, 64-512 units")
)
register_population(
    Population(
        "mnist1d_cnn",
        "cnn1d",
        8,
        (2, 4),
        (8, 12, 16, 24, 32, 48, 64),
        (1, 40),
        description="cnn1d nets of 2-4 conv layers, 8-64 channels",
    )
)
register_population(
    Population("digits", "mlp", 10, (1, 5), _SIZES, (1, 8, 8), description="MLPs of 1-5 hidden layers, 64-512 units")
)
register_population(
    Population(
        "mnist5k_mlp", "mlp", 8, (1, 5), _SIZES, (1, 28, 28), description="MLPs of 1-5 hidden layers, 64-512 units"
    )
)
