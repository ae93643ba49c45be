"""The registry of fixed policies: ``make_policy(name, env)``, the env settings each method needs, and ``method``.

Besides the registered names, two families of names run anywhere a registered policy does: handcrafted cells
(:mod:`baselines.handcrafted`, ``linear@0.9+lamp``) and static schedules (:mod:`baselines.static`,
``poly[s=0.1,e=0.8,p=2.5]+erk[first=3]``).

:func:`method` returns a :class:`Method` as a policy the pruning driver takes (``Pruner(model, optimizer,
baselines.method("cubic@0.9+erk"), ...)``): its ``settings`` go into the driver's config, its ``reads`` name the
observation columns it reads, and ``bind(pruner)`` builds the fixed policy on the driver.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any

import gymnasium as gym

from baselines.criteria import (
    CONTRIBUTION_ENV_KWARGS,
    DYNO_ENV_KWARGS,
    NEQ_ENV_KWARGS,
    SNR_ENV_KWARGS,
    ConstantThresholdPolicy,
    ContributionPolicy,
    DynoPolicy,
    make_neq_policy,
    make_snr_policy,
)
from baselines.fixed_policies import SchedulePolicy, make_schedule_policy
from baselines.handcrafted import cell_env_kwargs, is_cell, make_cell_policy
from baselines.schedules import SCHEDULES
from baselines.static import is_static, make_static_policy, static_env_kwargs
from sparsity_gym.core.registry import Registry
from sparsity_gym.experiments.tuning import Cell
from sparsity_gym.pruning.policy_binding import register_policy_names


@dataclass(frozen=True)
class Method:
    """A fixed policy: how many units per layer (``factory``) and the env settings it needs (``env_kwargs``).

    As a policy of :class:`sparsity_gym.Pruner`: ``settings`` (its env settings), ``reads`` (the observation
    columns it reads) and ``bind(context)`` (the fixed policy built on the driver, with ``options`` passed to
    the factory).
    """

    name: str
    factory: Callable[..., Any]
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "schedule"
    reads: tuple[str, ...] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> dict[str, Any]:
        """The settings the method needs (its env settings), for the pruning driver's config."""
        return dict(self.env_kwargs)

    def bind(self, context: Any) -> Any:
        """The fixed policy acting in ``context`` (an env or a Pruner)."""
        return self.factory(context, **self.options)


METHODS: Registry[Method] = Registry("policy")


def register_method(method: Method) -> Method:
    """Add ``method`` to the registry."""
    METHODS.add(method.name, method)
    return method


for _name in SCHEDULES:
    register_method(
        Method(
            _name,
            lambda env, _n=_name, **kw: make_schedule_policy(env, _n, **kw),
            MappingProxyType({}),
            reads=SchedulePolicy.reads,
        )
    )

_THRESHOLD = ConstantThresholdPolicy.reads
register_method(Method("snr", make_snr_policy, MappingProxyType(SNR_ENV_KWARGS), "criterion", _THRESHOLD))
register_method(Method("dyno", DynoPolicy, MappingProxyType(DYNO_ENV_KWARGS), "criterion", DynoPolicy.reads))
register_method(Method("neq", make_neq_policy, MappingProxyType(NEQ_ENV_KWARGS), "criterion", _THRESHOLD))
register_method(
    Method(
        "contribution",
        ContributionPolicy,
        MappingProxyType(CONTRIBUTION_ENV_KWARGS),
        "criterion",
        ContributionPolicy.reads,
    )
)


def available_policies(kind: str | None = None) -> tuple[str, ...]:
    """Registered policy names (all, or only those of ``kind``: ``schedule`` or ``criterion``)."""
    return tuple(n for n, m in METHODS.items() if kind is None or m.kind == kind)


def make_policy(name: str, env: gym.Env, **kwargs: Any) -> Any:
    """The fixed policy ``name`` acting in ``env`` (an object with SB3's ``predict`` signature).

    Besides the registered names, any handcrafted cell ``<shape>[@<window_end>][+<allocation>]``
    (:mod:`baselines.handcrafted`, e.g. ``linear@0.9+lamp``) and any static schedule ``poly[...]``
    (:mod:`baselines.static`).
    """
    if name not in METHODS and (is_static(name) or (isinstance(name, str) and is_cell(name))):
        if kwargs:
            raise ValueError(f"policy {name!r} takes no keyword arguments; got {sorted(kwargs)}")
        return make_static_policy(name, env) if is_static(name) else make_cell_policy(name, env)
    return METHODS.get(name).factory(env, **kwargs)


def env_kwargs(name: str) -> dict[str, Any]:
    """The env settings method ``name`` needs (selector, regrowth, effect...); empty for plain schedules.

    A handcrafted cell with ``+allocation`` needs ``{"allocation": allocation}``; a static schedule its rule and,
    with multipliers, ``allocation_tilt`` (:func:`baselines.static.static_env_kwargs`).
    """
    if is_static(name):
        return static_env_kwargs(name)
    if name not in METHODS and isinstance(name, str) and is_cell(name):
        return cell_env_kwargs(name)
    return dict(METHODS.get(name).env_kwargs)


def policy_cell(name: str) -> Cell:
    """``name`` as a :class:`~sparsity_gym.experiments.tuning.Cell` for the picker and the search (picklable)."""
    return Cell(name, functools.partial(make_policy, name), env_kwargs(name))


def method(name: str, **kwargs: Any) -> Method:
    """The fixed policy ``name`` (a registered method or a handcrafted cell) as a policy of the pruning driver.

    ``kwargs`` go to its factory when it is bound (e.g. ``method("contribution", keep=0.5)``)::

        pruner = Pruner(model, optimizer, baselines.method("cubic@0.9+erk"), target_density=0.05, total_steps=n)
    """
    if name not in METHODS and isinstance(name, str) and (is_cell(name) or is_static(name)):
        if kwargs:
            raise ValueError(f"policy {name!r} takes no keyword arguments; got {sorted(kwargs)}")
        factory = partial(_named_policy, name)
        return Method(name, factory, MappingProxyType(env_kwargs(name)), reads=SchedulePolicy.reads)
    return dataclasses.replace(METHODS.get(name), options=MappingProxyType(dict(kwargs)))


def _named_policy(name: str, context: Any) -> Any:
    """The cell's or static schedule's policy on ``context`` (a module-level function: it pickles)."""
    return make_policy(name, context)


register_policy_names("baselines", method)  # Pruner(model, optimizer, "cubic@0.75+erk") plays baselines.method(name)
