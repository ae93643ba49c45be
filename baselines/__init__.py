"""Handcrafted schedules and criterion-driven methods as fixed policies with SB3's ``predict`` signature."""

from baselines.fixed_policies import SchedulePolicy
from baselines.handcrafted import handcrafted_grid, parse_cell
from baselines.policy_registry import (
    Method,
    available_policies,
    env_kwargs,
    make_policy,
    method,
    policy_cell,
    register_method,
)
from baselines.schedules import SCHEDULES, constant, cosine, cubic, linear, polynomial, quadratic
from baselines.static import SEARCH_SPACE, StaticKnobs, is_static, parse_static, searched_name, static_name

__all__ = [
    "SCHEDULES",
    "SEARCH_SPACE",
    "Method",
    "SchedulePolicy",
    "StaticKnobs",
    "available_policies",
    "constant",
    "cosine",
    "cubic",
    "env_kwargs",
    "handcrafted_grid",
    "is_static",
    "linear",
    "make_policy",
    "method",
    "parse_cell",
    "parse_static",
    "policy_cell",
    "polynomial",
    "quadratic",
    "register_method",
    "searched_name",
    "static_name",
]
