"""Choosing the handcrafted schedule the learned policy starts from (``--prior auto``).

The actor of :class:`agents.ppo.layerwise_policy.LayerwisePolicy` can be a residual on a handcrafted schedule (its
*prior*). ``auto`` picks that schedule the way a practitioner would, without touching the held-out networks: the
project's one picker (:func:`sparsity_gym.experiments.tuning.score_policies`) plays every registered schedule
on every network of the family's **train** split at the training setting, with seeds of their own
(``seeds("prior", n)``, apart from training, selection and comparison seeds), and the best mean **validation**
accuracy wins (ties: registry order). The scores are written to ``prior.json`` in the run folder and read back
on ``--resume``, so a resumed run never re-chooses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baselines import available_policies, policy_cell
from sparsity_gym.core.io import atomic_write_text
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.experiments.families import NetworkSpec
from sparsity_gym.experiments.seeds import seeds as seed_range
from sparsity_gym.experiments.tuning import Scores, score_policies

RECORD_NAME = "prior.json"


@dataclass(frozen=True)
class PriorRecord:
    """``prior.json``: the chosen schedule, every schedule's mean validation accuracy, the networks and seeds.

    It keeps each schedule's mean only, so a table read back holds one pooled value per schedule, and the
    recorded choice (a resumed run keeps the prior its model was built with).
    """

    path: Path
    networks: tuple[str, ...]
    seeds: int

    def load(self) -> Scores | None:
        """The recorded choice and means, or ``None`` when there is no record yet."""
        if not self.path.exists():
            return None
        data = json.loads(self.path.read_text())
        means = {str(k): float(v) for k, v in data.get("val_accuracy", {}).items()}
        return Scores(tuple(means), {k: {"pooled": [v]} for k, v in means.items()}, chosen=str(data["prior"]))

    def save(self, scores: Scores) -> None:
        """Write the choice and the means (atomically)."""
        record = {"prior": scores.best, "val_accuracy": scores.means, "networks": list(self.networks)}
        atomic_write_text(self.path, json.dumps({**record, "seeds": self.seeds}, indent=2))


def choose_prior(
    requested: str,
    networks: Sequence[NetworkSpec],
    config: EnvConfig | Mapping[str, Any],
    seeds: int,
    record: str | Path,
    **grid: Any,
) -> str:
    """The prior to train with: ``requested`` itself unless it is ``auto``; then the picker's best schedule.

    ``auto`` scores the registered schedules on ``networks`` with ``seeds("prior", seeds)`` at ``config``
    (:func:`sparsity_gym.experiments.tuning.score_policies`; ``grid``: its ``backend``, ``workers``,
    ``progress``...). ``record`` (``prior.json``) keeps the choice and the scores; an existing record is reused,
    so ``--resume`` keeps the prior the model was built with.
    """
    if requested != "auto":
        return requested
    base = config if isinstance(config, EnvConfig) else EnvConfig(**config)
    configs = {spec.name: base.replace(**spec.env_kwargs()) for spec in networks}
    cells = [policy_cell(name) for name in available_policies("schedule")]
    cache = PriorRecord(Path(record), tuple(configs), seeds)
    grid = {"backend": "sequential", "progress": False, **grid}
    return score_policies(cells, configs, seed_range("prior", seeds), "train", cache, **grid).best
