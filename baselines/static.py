"""The parametric static schedule: a handcrafted cell with continuous knobs, the search opponent's space.

A *static* schedule decides everything before training starts: it is a pure function of progress, like the
handcrafted cells (:mod:`baselines.handcrafted`), with more knobs:

* ``start`` (``s``) and ``end`` (``e``): the pruning window, as fractions of training (``0 <= s < e <= 1``);
* ``exponent`` (``p``): the power of the polynomial, any positive real (AGP, Zhu & Gupta 2017, "To prune, or not
  to prune", eq. 1, its cubic generalised): the global density at progress ``t`` for the target ``d_T`` is
  ``d(t) = d_T + (1 - d_T) * (1 - q)**p``, ``q = clip((t - s) / (e - s), 0, 1)``
  (:func:`baselines.schedules.polynomial`);
* ``allocation``: an allocation rule of :mod:`sparsity_gym.masks.allocation` (``uniform``, ``er``, ``erk``,
  ``lamp``, ``global_magnitude``) that shares the global density across layers (``EnvConfig.allocation``), or
  none (every layer asks for ``d(t)``, ``allocation="policy"``);
* ``first`` and ``last``: multipliers of the first and the last controlled layer's density under the rule (the
  input and output layers at weight granularity), 1 by default; RigL keeps its first layer dense at extreme
  sparsity (Evci et al. 2020, "Rigging the Lottery", §3 "Sparsity distribution" and §4.1).

**How the multipliers act.** With multipliers ``m = (first, 1, ..., 1, last)`` (one layer: ``first * last``)
the policy requests, at every decision, the densities ``x_l = clip(c * m_l * d(t), min_density, 1)`` with the
one ``c`` that keeps their weighted mean at ``d(t)``: ``sum_l W_l x_l = d(t) * sum_l W_l``, ``W_l`` the
layer's dense weights (water-filling, :func:`sparsity_gym.pruning.budget.tilted`); ``min_density`` is the env's
action floor. The cell runs with the rule and ``EnvConfig.allocation_tilt`` on, so the env shares ``d(t)`` out
by the rule (``r_l``) and tilts it by the request: ``clip(c' * r_l * x_l / d(t), 1 / units_l, 1)``, water-filled
back onto ``d(t)``. While no layer is clipped the layers' densities are ``r_l * m_l`` up to one common factor:
the rule's allocation with the first and last layer multiplied and the others scaled back onto the budget.
The global density is ``d(t)`` at every decision, and the last decision is projected onto the budget like any
policy's. With every multiplier 1 the request is uniform and the cell is the handcrafted cell of the same
schedule and rule (``poly[s=0,e=0.9,p=3]+erk`` plays exactly the episodes of ``cubic@0.9+erk``); its env then
has no tilt.

**Names.** ``poly[s=<start>,e=<end>,p=<exponent>]`` then ``+<rule>`` then ``[first=<x>,last=<y>]`` (only with a
rule; a multiplier of 1 is left out), e.g. ``poly[s=0.1,e=0.8,p=2.5]+erk[first=3,last=0.5]``. A knob left out of
a name takes its default (``s=0``, ``e=0.75``, ``p=3``, multipliers 1). Numbers print as Python's shortest
round-trip ``repr`` (``3`` for ``3.0``), so :func:`parse_static` of :func:`static_name` gives the knobs back
exactly. The allowed ranges (:data:`RANGES`) are wider than the search's (:data:`SEARCH_SPACE`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from baselines.fixed_policies import FixedPolicy, density_map, observed_target, pruning_context
from baselines.schedules import DEFAULT_P_END, DEFAULT_P_START, polynomial
from sparsity_gym.core.checks import check_choice
from sparsity_gym.experiments.search import Knob
from sparsity_gym.masks.allocation import available_allocations
from sparsity_gym.pruning.budget import tilted

PREFIX = "poly"
SHAPE_KNOBS = {"s": "start", "e": "end", "p": "exponent"}
"""The knobs inside ``poly[...]``: their letter in a name, their field."""
MULTIPLIERS = ("first", "last")
RANGES: Mapping[str, tuple[float, float]] = {
    "start": (0.0, 1.0),
    "end": (0.0, 1.0),
    "exponent": (0.0, 100.0),
    "first": (0.0, 1000.0),
    "last": (0.0, 1000.0),
}
"""What a name may hold: ``0 <= start < end <= 1``, ``0 < exponent <= 100``, ``0 < first, last <= 1000``."""
_NAME = re.compile(r"^poly\[(?P<shape>[^\]]*)\](?:\+(?P<rule>[a-z_]+)(?:\[(?P<mults>[^\]]*)\])?)?$")


@dataclass(frozen=True)
class StaticKnobs:
    """The knobs of a static schedule (see the module docstring).

    Attributes:
        start: Progress at which pruning starts.
        end: Progress at which the density reaches the target.
        exponent: The polynomial's power.
        allocation: An allocation rule, or ``None`` (the policy's uniform request, ``allocation="policy"``).
        first: Multiplier of the first controlled layer's density (needs a rule unless 1).
        last: Multiplier of the last controlled layer's density (needs a rule unless 1).

    """

    start: float = DEFAULT_P_START
    end: float = DEFAULT_P_END
    exponent: float = 3.0
    allocation: str | None = None
    first: float = 1.0
    last: float = 1.0

    def __post_init__(self) -> None:
        for knob in ("start", "end", "exponent", "first", "last"):
            value = getattr(self, knob)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{knob}={value!r} is not allowed in a static schedule; expected a finite number")
            object.__setattr__(self, knob, float(value))
        _check_range("start", self.start, "0 <= start < 1", 0.0 <= self.start < 1.0)
        _check_range("end", self.end, f"start < end <= 1 (start={_num(self.start)})", self.start < self.end <= 1.0)
        _check_range("exponent", self.exponent, "0 < exponent <= 100", 0.0 < self.exponent <= 100.0)
        for knob in MULTIPLIERS:
            value = getattr(self, knob)
            _check_range(knob, value, f"0 < {knob} <= 1000", 0.0 < value <= 1000.0)
        if self.allocation is not None:
            check_choice("allocation", self.allocation, available_allocations())
        elif self.multiplied:
            raise ValueError(
                f"first={_num(self.first)}, last={_num(self.last)} is not allowed without an allocation rule; "
                f"expected a rule to tilt (one of {', '.join(available_allocations())}), e.g. +uniform[first=3]"
            )

    @property
    def multiplied(self) -> bool:
        """Whether a multiplier differs from 1 (the env then tilts the rule)."""
        return self.first != 1.0 or self.last != 1.0

    def multipliers(self, layers: int) -> np.ndarray:
        """``(first, 1, ..., 1, last)`` for ``layers`` layers (one layer: ``first * last``)."""
        m = np.ones(layers)
        m[0] *= self.first
        m[-1] *= self.last
        return m


def _check_range(knob: str, value: float, allowed: str, ok: bool) -> None:
    if not ok:
        raise ValueError(f"{knob}={_num(value)} is not allowed in a static schedule; expected {allowed}")


def _num(value: float) -> str:
    """The shortest text that reads back as ``value`` (``3`` for 3.0, ``0.1``, ``1e-05``)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def static_name(knobs: StaticKnobs) -> str:
    """The name of ``knobs`` (:func:`parse_static` reads it back exactly)."""
    name = f"{PREFIX}[s={_num(knobs.start)},e={_num(knobs.end)},p={_num(knobs.exponent)}]"
    if knobs.allocation is None:
        return name
    mults = [f"{k}={_num(getattr(knobs, k))}" for k in MULTIPLIERS if getattr(knobs, k) != 1.0]
    return f"{name}+{knobs.allocation}" + (f"[{','.join(mults)}]" if mults else "")


def _pairs(text: str, allowed: Mapping[str, str], name: str) -> dict[str, float]:
    """``k=v`` pairs of ``text`` as ``{field: value}`` (``allowed`` maps a name's key to its field)."""
    out: dict[str, float] = {}
    for item in filter(None, text.split(",")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in allowed:
            knobs = ", ".join(f"{k}=<number>" for k in allowed)
            raise ValueError(f"policy={name!r} is not allowed: {item!r} is no knob; expected {knobs}")
        if allowed[key] in out:
            raise ValueError(f"policy={name!r} is not allowed: knob {key} given twice")
        try:
            out[allowed[key]] = float(value)
        except ValueError:
            raise ValueError(f"policy={name!r} is not allowed: {key}={value!r} is not a number") from None
    return out


def parse_static(name: str) -> StaticKnobs:
    """The knobs of a static schedule's name; ``ValueError`` (one line, naming the knob and its range) if bad."""
    match = _NAME.match(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(
            f"policy={name!r} is not allowed; expected a static schedule like "
            "'poly[s=0.1,e=0.8,p=2.5]+erk[first=3,last=0.5]' (baselines.static)"
        )
    knobs: dict[str, Any] = _pairs(match["shape"], SHAPE_KNOBS, name)
    if match["rule"] is not None:
        check_choice(f"allocation of policy {name!r}", match["rule"], available_allocations())
        knobs["allocation"] = match["rule"]
        knobs.update(_pairs(match["mults"] or "", {k: k for k in MULTIPLIERS}, name))
    try:
        return StaticKnobs(**knobs)
    except ValueError as exc:
        raise ValueError(f"policy={name!r}: {exc}") from None


def is_static(name: Any) -> bool:
    """Whether ``name`` is a static schedule's name (``poly[...]``), valid or not: :func:`parse_static` says why not."""
    return isinstance(name, str) and name.startswith(f"{PREFIX}[")


def static_env_kwargs(name: str) -> dict[str, Any]:
    """The env settings of a static schedule: its rule (``allocation``) and, with multipliers, the tilt."""
    knobs = parse_static(name)
    if knobs.allocation is None:
        return {}
    return {"allocation": knobs.allocation, **({"allocation_tilt": True} if knobs.multiplied else {})}


class StaticPolicy(FixedPolicy):
    """Every layer asks for ``d(t)`` times its multiplier, water-filled onto ``d(t)`` (SB3 ``predict`` signature).

    ``t`` and the target are read from the observation; the layers' dense weights (for the weighted mean) are
    read once from the env (or pruning driver) it is built on.
    """

    reads = ("progress", "target_density")

    def __init__(self, env: gym.Env, knobs: StaticKnobs, name: str) -> None:
        base = pruning_context(env)
        wanted = {"allocation": knobs.allocation or "policy", "allocation_tilt": knobs.multiplied}
        given = {"allocation": base.config.allocation, "allocation_tilt": base.config.allocation_tilt}
        if knobs.allocation is not None and not knobs.multiplied:  # a uniform request is the rule, tilted or not
            wanted["allocation_tilt"] = given["allocation_tilt"]
        if given != wanted:
            raise ValueError(
                f"allocation={given['allocation']!r}, allocation_tilt={given['allocation_tilt']} is not allowed for "
                f"policy {name!r}; expected {wanted['allocation']!r}, {wanted['allocation_tilt']} "
                f"(build the env with baselines.env_kwargs({name!r}))"
            )
        super().__init__(env, name, layer_units=np.array([m.num_units for m in base.masks.layers]))
        self.knobs = knobs
        self.weights = np.array([m.info.num_weights for m in base.masks.layers], dtype=np.float64)
        self.action_map = density_map(env)
        self._progress_col = self.column("progress")
        self._target_col = self.column("target_density")

    def density(self, progress: float, target: float) -> float:
        """The global density ``d(t)`` the schedule asks for at progress ``t`` for the target density ``target``."""
        k = self.knobs
        return float(polynomial(progress, target, k.exponent, k.start, k.end))

    def request(self, density: float) -> np.ndarray:
        """The per-layer densities asked for at global density ``density`` (the module docstring's ``x``)."""
        layers = len(self.weights)
        if not self.knobs.multiplied:
            return np.full(layers, density)
        floor = [self.action_map.low] * layers
        return tilted(np.full(layers, density), self.knobs.multipliers(layers), self.weights, floor)

    def actions(self, observations: np.ndarray) -> np.ndarray:  # noqa: D102
        progress = observations[:, 0, self._progress_col]
        targets = observed_target(observations, self._target_col)
        rows = [self.request(self.density(p, t)) for p, t in zip(progress, targets, strict=True)]
        return self.action_map(np.array(rows))


def make_static_policy(name: str, env: gym.Env) -> StaticPolicy:
    """The :class:`StaticPolicy` of static schedule ``name``, reported under ``name``."""
    return StaticPolicy(env, parse_static(name), name)


SEARCH_SPACE: Mapping[str, Knob] = {
    "start": Knob(0.0, 0.5),
    "end": Knob(0.55, 1.0),
    "exponent": Knob(0.5, 8.0, log=True),
    "allocation": Knob(choices=("uniform", "er", "erk", "lamp", "global_magnitude")),
    "first": Knob(0.25, 32.0, log=True),
    "last": Knob(0.25, 32.0, log=True),
}
"""The search opponent's ranges: window start in [0, 0.5], end in [0.55, 1], exponent 0.5-8 and multipliers
0.25-32 on log scales, any allocation rule (:mod:`sparsity_gym.experiments.search` samples it)."""

SEARCH_DIGITS = 3
"""Significant digits of a searched point's numbers: the point a trial names and plays (:func:`searched_name`)."""


def searched_name(params: Mapping[str, Any]) -> str:
    """The static schedule of a search's point ``{knob: value}`` (numbers to :data:`SEARCH_DIGITS` digits)."""
    values: dict[str, Any] = {
        k: v if isinstance(v, str) else float(f"{float(v):.{SEARCH_DIGITS}g}") for k, v in params.items()
    }
    return static_name(StaticKnobs(**values))
