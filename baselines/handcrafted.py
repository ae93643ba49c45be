"""Handcrafted cells by name: a schedule shape, a pruning-window end and an allocation rule.

A cell's name is ``<shape>[@<window_end>][+<allocation>]``, e.g. ``cubic``, ``cubic+erk``, ``linear@0.9+lamp``:

* ``shape``: a schedule of :data:`baselines.schedules.SCHEDULES` (linear, quadratic, cubic, cosine, constant);
* ``@w``: the pruning window ends at progress ``w`` (the schedule's ``p_end``: it reaches its final density at
  ``w`` and stays there; ``bench/schedule_landscape.py`` labels its windows the same way). Without it the
  schedule's default window (``p_end = 0.75``) applies, so a plain name means what it always meant;
* ``+allocation``: an allocation rule of :mod:`sparsity_gym.masks.allocation` (``uniform``, ``er``, ``erk``,
  ``lamp``, ``global_magnitude``), which the env applies (``EnvConfig.allocation``): the schedule gives the
  global density, the rule shares it across layers. :func:`cell_env_kwargs` says so; without it the policy's
  own (uniform) densities go to the env as they are (``allocation="policy"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from baselines.fixed_policies import SchedulePolicy, make_schedule_policy, pruning_context
from baselines.schedules import SCHEDULES
from sparsity_gym.core.checks import check_choice, check_number
from sparsity_gym.masks.allocation import available_allocations


def parse_cell(name: str) -> tuple[str, float | None, str | None]:
    """``(shape, window_end or None, allocation or None)`` of a cell name; ``ValueError`` if it is not one."""
    if not isinstance(name, str):
        raise ValueError(
            f"policy={name!r} is not allowed; expected a name like 'cubic', 'cubic+erk', 'linear@0.9+lamp'"
        )
    rest, _, allocation = name.partition("+")
    shape, at, window = rest.partition("@")
    check_choice("policy shape", shape, tuple(SCHEDULES))
    end: float | None = None
    if at:
        try:
            end = float(window)
        except ValueError:
            raise ValueError(
                f"policy={name!r} is not allowed; expected a number in (0, 1] after '@' (the pruning window's end)"
            ) from None
        check_number(f"window end of policy {name!r}", end, low=0.0, high=1.0, low_inclusive=False)
    if _:
        check_choice(f"allocation of policy {name!r}", allocation, available_allocations())
    return shape, end, allocation or None


def is_cell(name: str) -> bool:
    """Whether ``name`` parses as a handcrafted cell."""
    try:
        parse_cell(name)
    except ValueError:
        return False
    return True


def make_cell_policy(name: str, env: Any) -> SchedulePolicy:
    """The :class:`SchedulePolicy` of cell ``name`` (its schedule and window) on an env or a Pruner."""
    shape, end, allocation = parse_cell(name)
    config = pruning_context(env).config
    wanted = allocation or "policy"
    if config.allocation != wanted:
        raise ValueError(
            f"allocation={config.allocation!r} is not allowed for policy {name!r}; expected {wanted!r} "
            f"(build the env with baselines.env_kwargs({name!r}))"
        )
    window = {} if end is None or shape == "constant" else {"p_end": end}
    policy = make_schedule_policy(env, shape, **window)
    policy.name = name
    return policy


def cell_env_kwargs(name: str) -> dict[str, Any]:
    """The env settings cell ``name`` needs: ``{"allocation": rule}`` for a ``+rule`` name, else nothing."""
    _, _, allocation = parse_cell(name)
    return {} if allocation is None else {"allocation": allocation}


def handcrafted_grid(
    shapes: Sequence[str], windows: Sequence[float | None], allocations: Sequence[str | None]
) -> list[str]:
    """Every cell of ``shapes × windows × allocations`` by name, in that nesting order.

    A window of ``None`` is the schedule's default (no ``@``); an allocation of ``None`` or ``"policy"`` adds no
    ``+`` (the policy's own uniform densities). ``constant`` has no window: it appears once per allocation.
    """
    cells: list[str] = []
    for shape in shapes:
        check_choice("shape", shape, tuple(SCHEDULES))
        for window in [None] if shape == "constant" else windows:
            for allocation in allocations:
                name = shape if window is None else f"{shape}@{window:g}"
                if allocation not in (None, "policy"):
                    name = f"{name}+{allocation}"
                parse_cell(name)
                if name not in cells:
                    cells.append(name)
    return cells
