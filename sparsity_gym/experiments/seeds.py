"""Seed ranges by purpose: every episode an experiment runs takes its seed from one of these disjoint ranges.

A seed fixes a network's initialisation and its data order (``env.reset(seed=...)``), so two uses of the same
seed on the same network replay the same training run. Keeping the ranges apart keeps each use honest: the
comparison's test seeds are never seen by the tuning, the prior, the search or model selection.

| purpose        | first seed | what draws from it                                                              |
|----------------|------------|---------------------------------------------------------------------------------|
| ``training``   | 0          | PPO's ``--seed`` (its training envs are seeded ``seed + i``)                    |
| ``comparison`` | 1000       | the comparison on held-out networks (``--eval-seed-start``): the reported tests |
| ``selection``  | 2000       | the periodic evaluation that keeps ``best_model.zip``                           |
| ``benchmark``  | 3000       | ``bench/`` scripts (room table, schedule landscape)                             |
| ``prior``      | 4000       | ``--prior auto``: the schedule the actor starts from                            |
| ``tuning``     | 5000       | the tuned handcrafted cell and the searched static schedule (train split)       |
| ``pool``       | 6000       | the finite pool of training seeds of the paired reward (``--seed-pool``)        |

Each range holds :data:`WIDTH` seeds, so ``seeds("tuning", 7)`` is ``5000 … 5006`` and never reaches the next.
"""

from __future__ import annotations

from types import MappingProxyType

from sparsity_gym.core.checks import check_choice, check_number

WIDTH = 1000
"""Seeds per range: a purpose never draws more than this many."""

SEED_RANGES = MappingProxyType(
    {
        "training": 0,
        "comparison": 1000,
        "selection": 2000,
        "benchmark": 3000,
        "prior": 4000,
        "tuning": 5000,
        "pool": 6000,
    }
)
"""The first seed of each purpose's range (the module docstring's table)."""


def seed_start(purpose: str) -> int:
    """The first seed of ``purpose``'s range (``ValueError`` naming the purposes)."""
    check_choice("purpose", purpose, tuple(SEED_RANGES))
    return SEED_RANGES[purpose]


def seeds(purpose: str, count: int, offset: int = 0) -> tuple[int, ...]:
    """``count`` seeds of ``purpose``'s range, starting ``offset`` seeds in (``ValueError`` past its end)."""
    check_number("count", count, low=0, integer=True)
    check_number("offset", offset, low=0, integer=True)
    if offset + count > WIDTH:
        raise ValueError(
            f"count={count} with offset={offset} is not allowed for purpose={purpose!r}; "
            f"expected at most {WIDTH} seeds per range"
        )
    start = seed_start(purpose) + offset
    return tuple(range(start, start + count))
