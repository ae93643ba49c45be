"""Handcrafted schedules and criterion-driven methods as fixed policies with SB3's ``predict`` signature."""

from baselines.handcrafted import handcrafted_grid, parse_cell
from baselines.policies import SchedulePolicy
from baselines.registry import Method, available_policies, env_kwargs, make_policy, method, register_method
from baselines.schedules import SCHEDULES, constant, cosine, cubic, linear, polynomial, quadratic

__all__ = [
    "SCHEDULES",
    "Method",
    "SchedulePolicy",
    "available_policies",
    "constant",
    "cosine",
    "cubic",
    "env_kwargs",
    "handcrafted_grid",
    "linear",
    "make_policy",
    "method",
    "parse_cell",
    "polynomial",
    "quadratic",
    "register_method",
]
