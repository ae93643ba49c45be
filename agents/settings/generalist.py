"""A run across settings: ``--train-targets`` and ``--also-task`` turn a task run into a generalist's training.

``train_agent.py --task mnist1d_mlp --also-task mnist1d_cnn --train-targets 0.01 0.03 0.1`` trains one PPO
policy whose episodes draw a target from ``--train-targets`` and a network from the train splits of the task's
family and of every ``--also-task`` family (:class:`sparsity_gym.experiments.settings_env.SettingsEnv`). The
families must share a dataset, the observation and the action map (:data:`SHARED_FIELDS`); each keeps its own
training length.

**Each family's env settings** (:func:`family_configs`): the run's env config (``--task``'s settings with the
flags given on top), where every setting the run left at ``--task``'s value takes the ``--also-task``'s own
value instead; a setting the run changed from ``--task``'s (a flag such as ``--total-iterations 20``, or the
tuned cell's allocation under ``--prior tuned``) applies to every family. Model selection, the tuned grid, the
prior and the comparison stay the run's (``--task``'s family at ``--target-density``); the schema records the
ranges training saw (targets, families, networks, depths: :func:`training_ranges`).
"""

from __future__ import annotations

from typing import Any, Protocol

from sparsity_gym.core.checks import check_choice, check_number
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.env.tasks import available_tasks, get_task
from sparsity_gym.experiments.families import get_family
from sparsity_gym.experiments.settings_env import (
    SHARED_FIELDS,
    Setting,
    check_shared,
    expand_settings,
    settings_ranges,
)


class RunSettings(Protocol):
    """The fields of :class:`agents.settings.train_config.TrainConfig` a run across settings reads.

    A protocol, not the class: ``train_config`` checks its flags with this module, which so imports nothing of it.
    """

    @property
    def env(self) -> EnvConfig: ...
    @property
    def task(self) -> str | None: ...
    @property
    def family(self) -> str: ...
    @property
    def train_targets(self) -> tuple[float, ...]: ...
    @property
    def also_task(self) -> tuple[str, ...]: ...


__all__ = ["SHARED_FIELDS", "check_generalist", "family_configs", "is_generalist", "train_targets"]


def is_generalist(cfg: RunSettings) -> bool:
    """Whether ``cfg`` trains across settings (``--train-targets`` or ``--also-task`` given)."""
    return bool(cfg.train_targets or cfg.also_task)


def train_targets(cfg: RunSettings) -> tuple[float, ...]:
    """The targets training draws from: ``--train-targets``, else the run's ``--target-density``."""
    if cfg.train_targets:
        return tuple(float(t) for t in cfg.train_targets)
    assert cfg.env.target_density is not None
    return (float(cfg.env.target_density),)


def check_generalist(cfg: RunSettings) -> None:
    """Check the across-settings flags (``ValueError`` naming the field and both values).

    Targets in (0, 1] and distinct; ``--also-task`` known, distinct, with ``--task``, and families that share
    :data:`SHARED_FIELDS`.
    """
    for target in cfg.train_targets:
        check_number("train_targets", target, low=0.0, high=1.0, low_inclusive=False)
    if len(set(cfg.train_targets)) != len(cfg.train_targets):
        raise ValueError(f"train_targets={cfg.train_targets!r} is not allowed; expected distinct target densities")
    if cfg.train_targets and cfg.env.target_density is None:
        raise ValueError("train_targets is not allowed with target_density=None; expected a run with a budget")
    if not cfg.also_task:
        return
    if cfg.task is None:
        raise ValueError(
            f"also_task={cfg.also_task!r} is not allowed without --task; the families' settings come from tasks"
        )
    for name in cfg.also_task:
        check_choice("also_task", name, available_tasks())
    if cfg.task in cfg.also_task or len(set(cfg.also_task)) != len(cfg.also_task):
        raise ValueError(
            f"also_task={cfg.also_task!r} is not allowed with task={cfg.task!r}; expected other tasks, each once"
        )
    family_configs(cfg)  # refuses families that cannot share one env


def family_configs(cfg: RunSettings) -> dict[str, EnvConfig]:
    """``{family: env config}`` of the run's families: ``cfg.family`` with ``cfg.env``, then each ``--also-task``.

    An ``--also-task``'s config is ``cfg.env`` with its own task settings wherever ``cfg.env`` kept ``--task``'s
    (see the module doc). Raises ``ValueError`` when the configs differ on a shared field.
    """
    configs = {cfg.family: cfg.env}
    if cfg.also_task:
        assert cfg.task is not None
        base = get_task(cfg.task).settings()
        defaults = EnvConfig()
        for name in cfg.also_task:
            own = get_task(name).settings()
            kept = {
                key: value
                for key, value in own.items()
                if key != "target_density" and getattr(cfg.env, key) == base.get(key, getattr(defaults, key))
            }
            configs[name] = cfg.env.replace(**kept)
    check_shared(configs)
    return configs


def training_settings(cfg: RunSettings) -> tuple[Setting, ...] | None:
    """The settings a generalist's episodes draw from (``None`` for a run at one target on one family)."""
    if not is_generalist(cfg):
        return None
    groups = {name: (get_family(name).train, config) for name, config in family_configs(cfg).items()}
    return expand_settings(groups, train_targets(cfg))


def training_ranges(settings: tuple[Setting, ...] | None) -> dict[str, Any] | None:
    """The ranges the schema records for a generalist (``None`` otherwise): :func:`settings_ranges` of its settings.

    The depths are the layer counts of the networks as built (one env per distinct network, then released).
    """
    if settings is None:
        return None
    depths: dict[str, int] = {}
    for s in settings:
        if s.network.name not in depths:
            env = SparsityEnv(config=s.config.replace(observations=()))
            depths[s.network.name] = len(env.layer_names)
            env.close()
    return settings_ranges(settings, list(depths.values()))


def train_names(cfg: RunSettings, family: Any) -> list[str]:
    """The training networks the schema records: the family's train split, and every ``--also-task``'s."""
    names = [s.name for s in family.train]
    for name in cfg.also_task:
        names += [s.name for s in get_family(name).train if s.name not in names]
    return names


def generalist_notes(cfg: RunSettings) -> list[str]:
    """The report's line on a run across settings (none for a run at one setting)."""
    settings = training_settings(cfg)
    if settings is None:
        return []
    ranges = settings_ranges(settings, [0])
    targets = ", ".join(f"{t:g}" for t in ranges["targets"])
    return [
        f"Trained across settings: every episode drew one of {len(settings)} (family, network, target) settings "
        f"uniformly, across targets {targets} on families {', '.join(ranges['families'])} "
        f"({', '.join(ranges['networks'])}); each family with its own task's training length."
    ]


def training_entries(cfg: RunSettings, family: Any) -> int:
    """What the paired reward's seed pool counts per seed: the settings of a run across them, else train networks."""
    settings = training_settings(cfg)
    return len(family.train) if settings is None else len(settings)
