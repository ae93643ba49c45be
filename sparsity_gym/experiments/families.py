"""Named families of networks with a train split and a held-out split, and a seeded architecture generator.

A learned schedule is only interesting if it transfers: the agent trains on the networks of a family's
``train`` split (one is sampled at every episode, see :class:`sparsity_gym.env.wrappers.FamilyEnv`) and is
reported on the ``heldout`` split, which training never sees. Networks are :class:`NetworkSpec` objects: a zoo
name or a user factory plus its keyword arguments, with a readable name. Names written ``mlp_256x128``,
``cnn_16x32`` or ``cnn1d_32x32`` are parsed back into specs by :func:`parse_network` (widths of the hidden
Linear layers, or the channels of the conv layers), so the command line can name any width and depth. The specs
and the parser live in :mod:`sparsity_gym.models.names` (the env's tasks need them) and are re-exported here.

Families (``available_network_families()``):

* ``mlp`` (default): train on MLPs with 1–3 hidden layers of 128–256 units (2–4 prunable layers); held out:
  a deeper MLP (5 prunable layers, more than any training network), a wider single-hidden-layer MLP and the
  small conv net ``cnn_16x32`` (conv layers: never seen in training).
* ``mixed``: the ``mlp`` family's held-out split, trained on MLPs and two small CNNs (``cnn_8x16``,
  ``cnn_24x24``), so conv layers are seen in training but not the held-out CNN's widths.
* ``random``: :func:`random_mlp_specs` draws the train split from ``seed`` 0 and the held-out split from
  seed 1 (architectures already in the train split are skipped), plus ``cnn_8x16``.

Every named task of :mod:`sparsity_gym.env.tasks` is also a family of the same name (its train and held-out
networks; :func:`task_family`), unless a family of that name exists. Register more with
:func:`register_network_family`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sparsity_gym.core.checks import check_choice, check_number
from sparsity_gym.core.registry import Registry
from sparsity_gym.env.tasks import available_tasks, get_task
from sparsity_gym.models.names import NetworkSpec, parse_network, sized

__all__ = [
    "FAMILIES",
    "SPLITS",
    "Family",
    "NetworkSpec",
    "available_network_families",
    "get_family",
    "parse_network",
    "random_mlp_specs",
    "register_network_family",
    "sized",
    "task_family",
]

SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class Family:
    """A named set of networks: ``train`` (sampled during training) and ``heldout`` (never seen in training)."""

    name: str
    train: tuple[NetworkSpec, ...]
    heldout: tuple[NetworkSpec, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if not self.train or not self.heldout:
            raise ValueError(f"family={self.name!r} needs at least one train and one held-out network")
        shared = {s.name for s in self.train} & {s.name for s in self.heldout}
        if shared:
            raise ValueError(f"family={self.name!r}: networks {sorted(shared)} are in both splits")

    def split(self, name: str) -> tuple[NetworkSpec, ...]:
        """The networks of split ``name`` (``train`` or ``heldout``)."""
        check_choice("split", name, SPLITS)
        return self.train if name == "train" else self.heldout


def random_mlp_specs(
    rng: np.random.Generator,
    count: int,
    depths: tuple[int, int] = (1, 3),
    widths: Sequence[int] = (64, 96, 128, 192, 256),
    exclude: Sequence[str] = (),
) -> tuple[NetworkSpec, ...]:
    """``count`` distinct random MLPs: a depth in ``depths`` (inclusive, hidden layers), each width from ``widths``.

    All randomness comes from ``rng``; names in ``exclude`` (and duplicates) are drawn again.
    """
    check_number("count", count, low=1, integer=True)
    lo, hi = depths
    check_number("depths", lo, low=1, integer=True)
    check_number("depths", hi, low=lo, integer=True)
    possible = sum(len(widths) ** d for d in range(lo, hi + 1)) - len(set(exclude))
    if count > possible:
        raise ValueError(f"count={count} is not allowed; at most {possible} distinct architectures can be drawn")
    seen: set[str] = set(exclude)
    specs: list[NetworkSpec] = []
    while len(specs) < count:
        depth = int(rng.integers(lo, hi + 1))
        spec = sized("mlp", [int(w) for w in rng.choice(np.asarray(widths), size=depth)])
        if spec.name not in seen:
            seen.add(spec.name)
            specs.append(spec)
    return tuple(specs)


FamilyBuilder = Callable[[], Family]
FAMILIES: Registry[FamilyBuilder] = Registry("family")


def register_network_family(name: str) -> Callable[[FamilyBuilder], FamilyBuilder]:
    """Register ``builder() -> Family`` under ``name`` (a decorator; built when asked for)."""
    return FAMILIES.register(name)


def available_network_families() -> tuple[str, ...]:
    """Names accepted by :func:`get_family` (``--family``)."""
    return FAMILIES.names()


def get_family(name: str) -> Family:
    """The family registered under ``name`` (``ValueError`` naming the allowed ones)."""
    return FAMILIES.get(name)()


@register_network_family("mlp")
def mlp_family() -> Family:
    """Train: 2–4-layer MLPs of widths 128–256. Held out: deeper (5 layers), wider (512) and the small CNN."""
    return Family(
        "mlp",
        train=(sized("mlp", (256, 256)), sized("mlp", (128, 128)), sized("mlp", (256,)), sized("mlp", (128, 128, 128))),
        heldout=(sized("mlp", (192, 192, 192, 192)), sized("mlp", (512,)), sized("cnn", (16, 32))),
        description="MLPs of 1-3 hidden layers (128-256 units) to train on; a 4-hidden-layer MLP, a 512-unit "
        "MLP and the small conv net held out",
    )


@register_network_family("mixed")
def mixed_family() -> Family:
    """Train: MLPs of 2-4 layers and two small CNNs. Held out: deeper and wider MLPs, a CNN of other widths."""
    return Family(
        "mixed",
        train=(
            sized("mlp", (256, 256)),
            sized("mlp", (128, 128)),
            sized("mlp", (128, 128, 128)),
            sized("cnn", (8, 16)),
            sized("cnn", (24, 24)),
        ),
        heldout=(sized("mlp", (192, 192, 192, 192)), sized("mlp", (512,)), sized("cnn", (16, 32))),
        description="MLPs and small CNNs to train on; the mlp family's held-out networks (deeper, wider, "
        "cnn_16x32), whose conv widths are not among the training CNNs'",
    )


@register_network_family("random")
def random_family(seed: int = 0, n_train: int = 8, n_heldout: int = 3) -> Family:
    """Random MLPs: the train split drawn from ``seed``, the held-out split from ``seed + 1`` plus ``cnn_8x16``."""
    train = random_mlp_specs(np.random.default_rng(seed), n_train)
    heldout = random_mlp_specs(
        np.random.default_rng(seed + 1), n_heldout, depths=(1, 4), exclude=[s.name for s in train]
    )
    return Family(
        "random",
        train=train,
        heldout=(*heldout, sized("cnn", (8, 16))),
        description=f"random MLPs (train: seed {seed}; held out: seed {seed + 1}, deeper allowed, and cnn_8x16)",
    )


def task_family(name: str) -> Family:
    """The train and held-out networks of the named task (:data:`sparsity_gym.env.tasks.TASKS`) as a family."""
    task = get_task(name)
    return Family(
        name,
        train=tuple(parse_network(n) for n in task.train),
        heldout=tuple(parse_network(n) for n in task.heldout),
        description=f"the networks of task {name!r}",
    )


for _task in available_tasks():
    if _task not in FAMILIES:
        FAMILIES.add(_task, functools.partial(task_family, _task))
