"""Training across settings: every episode a (family, network, target density) drawn from a set, one env.

A policy that reads the target and the network can serve many settings from one training (a target-conditioned
pruning policy, CACP: Liu et al. 2020; one training for N deployment settings, Once-for-All: Cai et al. 2020).
:class:`SettingsEnv` is the env of such a training: a :class:`~sparsity_gym.experiments.family_env.FamilyEnv`
whose entries are *settings*, one :class:`Setting` per (family, train network, target), each with its own
:class:`~sparsity_gym.env.env_config.EnvConfig`. Every ``reset`` draws one setting uniformly from the env's own
``np_random`` (the same seed, the same setting, initialisation and data order; the draw is
:class:`FamilyEnv`'s, so :func:`agents.ppo.paired_reward.family_draw` and the paired reward's seed pool hold), then
runs that setting's training. The target is in the observation (the ``target_density`` column of every row,
read per episode from the setting's config), and the last decision is projected onto the setting's target.

**What the families of one env must share** (:data:`SHARED_FIELDS`): the dataset, the observation's columns,
what an action means (action mode, scale, density range, allocation, tilt), the reward, the budget kind, the
selector, regrowth, granularity, effect, device and precision. The training length (``total_iterations``,
``decision_interval``) and the other training settings (``lr``, ``batch_size``...) may differ per family: each
family's settings train its networks as its task does (MNIST-1D: 1000 iterations for MLPs, 500 for the 1-D
CNNs; both make 10 decisions). :func:`check_shared` refuses any other difference in one line.

Draw weights: uniform over settings, so a family with more train networks is drawn more often (``mnist1d_mlp``'s
4 networks against ``mnist1d_cnn``'s 3: 4/7 of the episodes), and every target equally often.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparsity_gym.core.checks import check_number
from sparsity_gym.datasets import load_dataset
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.env.wrappers import VALID_COLUMN, PadLayers
from sparsity_gym.experiments.families import NetworkSpec, parse_network
from sparsity_gym.experiments.family_env import FamilyEnv

__all__ = ["SHARED_FIELDS", "Setting", "SettingsEnv", "check_shared", "expand_settings", "setting_label"]

SHARED_FIELDS: tuple[str, ...] = (
    "dataset",
    "data_seed",
    "observations",
    "action_mode",
    "action_scale",
    "min_density",
    "max_density",
    "allocation",
    "allocation_tilt",
    "reward",
    "budget",
    "selector",
    "regrowth",
    "granularity",
    "effect",
    "device",
    "precision",
)
"""The env settings every family of one :class:`SettingsEnv` shares (its observation and actions mean one thing)."""


@dataclass(frozen=True)
class Setting:
    """One training setting: a family's train network at a target density, with its full env config."""

    family: str
    network: NetworkSpec
    config: EnvConfig

    @property
    def target(self) -> float:
        """The setting's target density."""
        assert self.config.target_density is not None  # expand_settings always sets one
        return float(self.config.target_density)

    @property
    def label(self) -> str:
        """``family@target/network`` (a row of a report, a key of a search's networks)."""
        return f"{setting_label(self.family, self.target)}/{self.network.name}"


def setting_label(family: str, target: float) -> str:
    """``family@target``: one cell of the comparison (a family's networks at one target)."""
    return f"{family}@{float(target):g}"


def check_shared(configs: Mapping[str, EnvConfig]) -> None:
    """Refuse ``{family: config}`` whose configs differ on a :data:`SHARED_FIELDS` entry (one line, both values)."""
    items = list(configs.items())
    first_name, first = items[0]
    for name, config in items[1:]:
        for field_name in SHARED_FIELDS:
            mine, theirs = getattr(config, field_name), getattr(first, field_name)
            if mine != theirs:
                raise ValueError(
                    f"{field_name}={mine!r} of family {name!r} is not allowed with {field_name}={theirs!r} of "
                    f"family {first_name!r}; expected one {field_name} for every family of a run across settings "
                    f"(they share one env's observation and actions: {', '.join(SHARED_FIELDS)})"
                )


def expand_settings(
    groups: Mapping[str, tuple[Sequence[NetworkSpec | str], EnvConfig]], targets: Sequence[float]
) -> tuple[Setting, ...]:
    """One :class:`Setting` per family, train network and target, in that order.

    ``groups``: ``{family: (networks, config)}``; the config's ``target_density`` is replaced by each target.

    Raises:
        ValueError: No families, no networks, no targets, a target outside (0, 1], duplicate targets, or configs
            that differ on a shared field (:func:`check_shared`).

    """
    if not groups:
        raise ValueError("groups={} is not allowed; expected at least one family")
    if not targets:
        raise ValueError("targets=() is not allowed; expected at least one target density")
    for target in targets:
        check_number("targets", target, low=0.0, high=1.0, low_inclusive=False)
    if len(set(targets)) != len(targets):
        raise ValueError(f"targets={tuple(targets)!r} is not allowed; expected distinct target densities")
    check_shared({name: config for name, (_, config) in groups.items()})
    settings = []
    for family, (networks, config) in groups.items():
        if not networks:
            raise ValueError(f"networks=() of family {family!r} is not allowed; expected at least one network")
        for spec in (parse_network(n) for n in networks):
            for target in targets:
                settings.append(Setting(family, spec, config.replace(**spec.env_kwargs(), target_density=target)))
    return tuple(settings)


class SettingsEnv(FamilyEnv):
    """Every episode a :class:`Setting` drawn from ``settings`` (its own ``np_random``), padded to ``max_layers``.

    A :class:`FamilyEnv` (its spaces, draws, copies and attributes) whose i-th entry is ``settings[i]``:
    ``specs[i]`` its network (repeated once per target), ``envs[i]`` a :class:`SparsityEnv` of its config.
    ``config`` is the first setting's (what a policy is checked against: the shared fields are every setting's);
    ``info`` adds ``family`` and ``target_density`` (the episode's). Data is loaded once and shared.

    Args:
        settings: From :func:`expand_settings` (at least one; shared fields equal).
        max_layers: Rows of the padded observation; at least the deepest network's layer count (the default).

    """

    def __init__(self, settings: Sequence[Setting], max_layers: int | None = None) -> None:
        self.settings = tuple(settings)
        if not self.settings:
            raise ValueError("settings=() is not allowed; expected at least one setting")
        families: dict[str, EnvConfig] = {}
        for s in self.settings:
            families.setdefault(s.family, s.config)
        check_shared(families)
        self.specs = tuple(s.network for s in self.settings)
        self.config = self.settings[0].config
        data = load_dataset(self.config.dataset, self.config.data_seed, self.config.data_root)
        self.envs: list[SparsityEnv] = [SparsityEnv(config=s.config, data=data) for s in self.settings]
        columns = {tuple(e.layout.columns) for e in self.envs}
        if len(columns) != 1:
            raise ValueError(f"settings with observation columns {sorted(columns)} are not allowed; expected one")
        depths = [len(e.layer_names) for e in self.envs]
        self.max_layers = max(depths) if max_layers is None else int(max_layers)
        self.padded = [PadLayers(e, self.max_layers) for e in self.envs]
        self.observation_space = self.padded[0].observation_space
        self.action_space = self.padded[0].action_space
        self.feature_names = (*self.envs[0].layout.columns, VALID_COLUMN)
        self.index = 0
        self.in_episode = False
        self.copied_mid_episode = False

    @property
    def setting(self) -> Setting:
        """The current episode's setting."""
        return self.settings[self.index]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Draw a setting and start a training run of it (the draw and the inner seed from ``np_random``)."""
        obs, info = super().reset(seed=seed, options=options)
        info.update(family=self.setting.family, target_density=self.setting.target)
        return obs, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Step the current setting's env (the first ``L`` action entries)."""
        obs, reward, terminated, truncated, info = super().step(action)
        info.update(family=self.setting.family, target_density=self.setting.target)
        return obs, reward, terminated, truncated, info

    def ranges(self) -> dict[str, Any]:
        """What training sees: ``targets``, ``families``, ``networks`` (sorted, distinct) and ``depths`` [lo, hi]."""
        return settings_ranges(self.settings, [len(e.layer_names) for e in self.envs])


def settings_ranges(settings: Sequence[Setting], depths: Sequence[int]) -> dict[str, Any]:
    """The ranges of :meth:`SettingsEnv.ranges` from the settings and their networks' layer counts."""
    return {
        "targets": sorted({s.target for s in settings}),
        "families": sorted({s.family for s in settings}),
        "networks": sorted({s.network.name for s in settings}),
        "depths": [int(min(depths)), int(max(depths))],
    }
