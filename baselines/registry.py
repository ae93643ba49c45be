"""The registry of fixed policies: ``make_policy(name, env)`` and the env settings each method needs.

Besides the registered names, two families of names run anywhere a registered policy does: handcrafted cells
(:mod:`baselines.handcrafted`, ``linear@0.9+lamp``) and static schedules (:mod:`baselines.static`,
``poly[s=0.1,e=0.8,p=2.5]+erk[first=3]``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import gymnasium as gym

from baselines.criteria import (
    CONTRIBUTION_ENV_KWARGS,
    DYNO_ENV_KWARGS,
    NEQ_ENV_KWARGS,
    SNR_ENV_KWARGS,
    ContributionPolicy,
    DynoPolicy,
    make_neq_policy,
    make_snr_policy,
)
from baselines.handcrafted import cell_env_kwargs, is_cell, make_cell_policy
from baselines.policies import make_schedule_policy
from baselines.schedules import SCHEDULES
from baselines.static import is_static, make_static_policy, static_env_kwargs
from sparsity_gym.core.registry import Registry
from sparsity_gym.experiments.tuning import Cell


@dataclass(frozen=True)
class Method:
    """A fixed policy: how many units per layer (``factory``) and the env settings it needs (``env_kwargs``)."""

    name: str
    factory: Callable[..., Any]
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "schedule"


METHODS: Registry[Method] = Registry("policy")


def register_method(method: Method) -> Method:
    """Add ``method`` to the registry."""
    METHODS.add(method.name, method)
    return method


for _name in SCHEDULES:
    register_method(
        Method(_name, lambda env, _n=_name, **kw: make_schedule_policy(env, _n, **kw), MappingProxyType({}))
    )


register_method(Method("snr", make_snr_policy, MappingProxyType(SNR_ENV_KWARGS), kind="criterion"))
register_method(Method("dyno", DynoPolicy, MappingProxyType(DYNO_ENV_KWARGS), kind="criterion"))
register_method(Method("neq", make_neq_policy, MappingProxyType(NEQ_ENV_KWARGS), kind="criterion"))
register_method(Method("contribution", ContributionPolicy, MappingProxyType(CONTRIBUTION_ENV_KWARGS), kind="criterion"))


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
