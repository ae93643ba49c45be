"""Choosing the handcrafted schedule the learned policy starts from (``--prior auto``).

The actor of :class:`agents.policy.LayerwisePolicy` can be a residual on a handcrafted schedule (its *prior*).
``auto`` picks that schedule the way a practitioner would, without touching the held-out networks: every
handcrafted schedule runs on every network of the family's **train** split at the training setting, with
seeds of their own (``PRIOR_SEED_START + i``, apart from training, selection and comparison seeds), and the one
with the highest mean **validation** accuracy wins (ties: registry order). The scores are written to
``prior.json`` in the run folder and read back on ``--resume``, so a resumed run never re-chooses.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from baselines import available_policies, make_policy
from sparsity_gym.core.io import atomic_write_text
from sparsity_gym.env.config import EnvConfig
from sparsity_gym.experiments.evaluation import seeds_from
from sparsity_gym.experiments.families import NetworkSpec
from sparsity_gym.experiments.grid import GridJob, run_grid

PRIOR_SEED_START = 4000


def score_schedules(
    networks: Sequence[NetworkSpec],
    config: EnvConfig | Mapping[str, Any],
    seeds: int,
    backend: str = "sequential",
    workers: int | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Mean validation accuracy of every handcrafted schedule over ``networks`` × ``seeds`` episodes."""
    names = available_policies("schedule")
    base = config if isinstance(config, EnvConfig) else EnvConfig(**config)
    jobs = [
        GridJob(
            name,
            functools.partial(make_policy, name),
            base.replace(**spec.env_kwargs()),
            seeds=seeds_from(PRIOR_SEED_START, seeds),
            split="train",
            network=spec.name,
        )
        for name in names
        for spec in networks
    ]
    results = run_grid(jobs, backend=backend, workers=workers, progress=progress)
    return {name: float(np.mean([r.val_accuracy for r in results if r.policy == name])) for name in names}


def choose_prior(
    requested: str,
    networks: Sequence[NetworkSpec],
    config: EnvConfig | Mapping[str, Any],
    seeds: int,
    record: str | Path,
    **grid: Any,
) -> str:
    """The prior to train with: ``requested`` itself unless it is ``auto``; then the best by :func:`score_schedules`.

    ``record`` (``prior.json``) keeps the choice and the scores; an existing record is reused, so ``--resume``
    keeps the prior the model was built with.
    """
    if requested != "auto":
        return requested
    path = Path(record)
    if path.exists():
        return str(json.loads(path.read_text())["prior"])
    scores = score_schedules(networks, config, seeds, **grid)
    best = max(scores, key=lambda name: scores[name])  # the first of equals, in registry order
    atomic_write_text(
        path,
        json.dumps(
            {"prior": best, "val_accuracy": scores, "networks": [s.name for s in networks], "seeds": seeds},
            indent=2,
        ),
    )
    return best
