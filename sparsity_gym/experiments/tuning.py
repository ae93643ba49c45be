"""Picking the best of a set of policies on a split: the tuned handcrafted cell, the prior, a search's trials.

One mechanism serves every pick of the project. :func:`score_policies` plays every :class:`Cell` on every
network of a split with the same seeds (through :func:`sparsity_gym.experiments.grid.run_grid`: a worker pool,
a progress bar), tables the **validation** and test accuracies as :class:`Scores`, and caches the table in a
JSON file of the run folder (a :class:`ScoreCache`); :attr:`Scores.best` is the one rule,
:func:`sparsity_gym.experiments.paired_intervals.best_of`: the best mean validation accuracy, the first in cell
order on a tie. Its calls:

* *tuned handcrafted* (:func:`tune`): the cells of the handcrafted grid (schedule shape × pruning-window end ×
  allocation) on a task's **train** networks, with the tuning seeds (``seeds("tuning", n)``, apart from every
  evaluation seed): the schedule a user would pick in advance, the fair opponent. Cached in ``tuning.json``
  (:class:`TuningCache`): one file per task, one entry per env configuration (target density, budget,
  iterations...), cell list and seed list; a matching entry is reused, a file of another task refused.
* ``--prior auto`` (``agents.ppo.prior``): the registered schedules on a family's train networks, seeds
  ``seeds("prior", n)``, cached in ``prior.json``.
* a search's trial (:mod:`sparsity_gym.experiments.search`): one static cell on the train networks.
* the *oracle* (:func:`sparsity_gym.experiments.paired_intervals.oracle`): the same rule on episodes already run, per
  held-out network on its own **test** results: an upper bound no fixed schedule chosen in advance can claim.

This module imports no policy code (``experiments`` stands below ``baselines``): the caller passes each policy
as a :class:`Cell`: a name, a picklable policy factory (``functools.partial(baselines.make_policy, name)``) and
the env keywords it needs (``baselines.env_kwargs(name)``, e.g. its allocation).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sparsity_gym.core.io import atomic_write_text
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.tasks import Task, get_task
from sparsity_gym.experiments.evaluation import EpisodeResult
from sparsity_gym.experiments.grid import GridJob, PolicyFactory, run_grid
from sparsity_gym.experiments.paired_intervals import best_of
from sparsity_gym.experiments.seeds import seeds as seed_range

__all__ = [
    "CACHE_NAME",
    "Cell",
    "ScoreCache",
    "Scores",
    "TuningCache",
    "TuningTable",
    "score_policies",
    "train_configs",
    "tune",
    "tuning_key",
]

CACHE_NAME = "tuning.json"


@dataclass(frozen=True)
class Cell:
    """One policy to score: a cell of the handcrafted grid, a static schedule, any fixed policy.

    Attributes:
        name: The policy's name (``cubic``, ``linear@0.9+lamp``...).
        factory: ``env -> policy``, picklable (a top-level function or a ``functools.partial`` of one).
        env_kwargs: ``EnvConfig`` fields the cell needs on top of the split's (e.g. ``{"allocation": "erk"}``).

    """

    name: str
    factory: PolicyFactory
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scores:
    """Validation (and test) accuracy of every cell on every network of a split, one value per seed, and the pick.

    Attributes:
        cells: Cell names in the order given (the order that breaks ties).
        val: ``val[cell][network]``: validation accuracies, one per seed in seed order.
        test: ``test[cell][network]``: test accuracies (kept for reference; never used for the pick).
        chosen: The pick as a record kept it (a cache that stores the choice): reused as it is, never re-chosen.
            ``None``: the rule decides (:attr:`best`).
        seconds: Wall seconds the episodes took when they ran here; ``None`` when read back from a cache.

    """

    cells: tuple[str, ...]
    val: Mapping[str, Mapping[str, list[float]]]
    test: Mapping[str, Mapping[str, list[float]]] = field(default_factory=dict)
    chosen: str | None = None
    seconds: float | None = field(default=None, compare=False)

    def mean_val(self, cell: str) -> float:
        """Mean validation accuracy of ``cell`` over every network and seed."""
        return float(np.mean([v for values in self.val[cell].values() for v in values]))

    @property
    def means(self) -> dict[str, float]:
        """``{cell: mean validation accuracy}`` in cell order."""
        return {c: self.mean_val(c) for c in self.cells}

    @property
    def best(self) -> str:
        """The pick: the recorded choice, else the best mean validation accuracy (the first in cell order on a tie)."""
        if self.chosen is not None:
            return self.chosen
        best = best_of(self.means)
        assert best is not None  # a table holds at least one cell
        return best

    @classmethod
    def from_results(
        cls, cells: Sequence[str], results: Sequence[EpisodeResult], seconds: float | None = None
    ) -> Scores:
        """The table of ``results`` (episodes of ``cells``, in job order then seed order)."""
        val: dict[str, dict[str, list[float]]] = {c: defaultdict(list) for c in cells}
        test: dict[str, dict[str, list[float]]] = {c: defaultdict(list) for c in cells}
        for r in results:
            val[r.policy][r.network].append(r.val_accuracy)
            test[r.policy][r.network].append(r.test_accuracy)
        as_dicts = {c: dict(v) for c, v in val.items()}, {c: dict(v) for c, v in test.items()}
        return cls(tuple(cells), *as_dicts, None, seconds)


class ScoreCache(Protocol):
    """Where :func:`score_policies` keeps a table between runs (a JSON file in the run folder)."""

    def load(self) -> Scores | None:
        """The cached table, or ``None`` when there is none yet (``ValueError`` for a file that does not fit)."""
        ...

    def save(self, scores: Scores) -> None:
        """Keep ``scores`` (atomically)."""
        ...


def score_policies(
    cells: Sequence[Cell],
    networks: Mapping[str, EnvConfig],
    seeds: Sequence[int],
    split: str = "train",
    cache: ScoreCache | None = None,
    **grid: Any,
) -> Scores:
    """Play every cell on every network with every seed; the table of their accuracies (cached in ``cache``).

    Args:
        cells: The policies (at least one, names unique).
        networks: ``{network label: env config on that network}``; a cell plays ``config.replace(**cell.env_kwargs)``.
        seeds: The seeds every cell plays on every network.
        split: The split label of the episodes (``train`` for every pick made in advance).
        cache: Read first (a table there is returned, no episode runs); written after the episodes ran.
        **grid: :func:`sparsity_gym.experiments.grid.run_grid`'s ``backend``, ``workers``, ``threads_per_worker``,
            ``progress``, ``on_result``, ``pool``.

    Raises:
        ValueError: No cells, duplicate names, no networks or seeds, or a cache that does not fit.

    """
    names = [c.name for c in cells]
    if not cells:
        raise ValueError("cells=() is not allowed; expected at least one policy to score")
    if len(set(names)) != len(names):
        raise ValueError(f"cells={names!r} is not allowed; expected unique names")
    if not networks:
        raise ValueError("networks={} is not allowed; expected at least one network of the split")
    cached = None if cache is None else cache.load()
    if cached is not None:
        return cached
    jobs = [
        GridJob(cell.name, cell.factory, config.replace(**dict(cell.env_kwargs)), tuple(seeds), split, network)
        for cell in cells
        for network, config in networks.items()
    ]
    start = time.perf_counter()
    results = run_grid(jobs, **grid)
    scores = Scores.from_results(names, results, time.perf_counter() - start)
    if cache is not None:
        cache.save(scores)
    return scores


# ---------------------------------------------------------------------------------------------- the tuned cell
@dataclass(frozen=True, kw_only=True)
class TuningTable(Scores):
    """The scores of the handcrafted grid on a task's train networks, and what they were tuned for.

    Attributes:
        task: The task's name.
        key: The cache key (:func:`tuning_key`).
        target: The target density tuned for.
        seeds: The tuning seeds.

    """

    task: str
    key: str
    target: float
    seeds: tuple[int, ...]

    @classmethod
    def of(cls, scores: Scores, task: str, key: str, target: float, seeds: tuple[int, ...]) -> TuningTable:
        """``scores`` as the table of a tuning of ``task`` at ``target`` with ``seeds``."""
        return cls(
            cells=scores.cells,
            val=scores.val,
            test=scores.test,
            seconds=scores.seconds,
            task=task,
            key=key,
            target=target,
            seeds=seeds,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the pick included, for readers of the file)."""
        return {
            "task": self.task,
            "key": self.key,
            "target": self.target,
            "seeds": list(self.seeds),
            "cells": list(self.cells),
            "val": {c: dict(v) for c, v in self.val.items()},
            "test": {c: dict(v) for c, v in self.test.items()},
            "best": self.best,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TuningTable:
        """The table of :meth:`to_json` (the pick is the rule's on the stored values)."""
        return cls(
            task=str(data["task"]),
            key=str(data["key"]),
            target=float(data["target"]),
            seeds=tuple(int(s) for s in data["seeds"]),
            cells=tuple(data["cells"]),
            val={c: {n: [float(x) for x in v] for n, v in nets.items()} for c, nets in data["val"].items()},
            test={c: {n: [float(x) for x in v] for n, v in nets.items()} for c, nets in data["test"].items()},
        )


def tuning_key(task: Task, target: float, cells: Sequence[Cell], seeds: Sequence[int], env: Mapping[str, Any]) -> str:
    """A digest of what the table depends on: the task's settings and networks, target, cells, seeds, overrides."""
    payload = {
        "task": task.name,
        "target": float(target),
        "networks": list(task.train),
        "cells": [[c.name, sorted((k, repr(v)) for k, v in c.env_kwargs.items())] for c in cells],
        "seeds": [int(s) for s in seeds],
        "env": sorted((k, repr(v)) for k, v in {**task.settings(target), **env}.items()),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TuningCache:
    """``tuning.json``: ``{"task": name, "entries": {key: TuningTable.to_json()}}``, one entry per tuning."""

    path: Path
    task: str
    key: str
    target: float
    seeds: tuple[int, ...]

    def _entries(self) -> dict[str, Any]:
        """The file's entries (empty when there is no file); ``ValueError`` for a file of another task."""
        if not self.path.exists():
            return {}
        data = json.loads(self.path.read_text(encoding="utf-8"))
        if data.get("task") != self.task:
            raise ValueError(
                f"run_dir holds {self.path.name} of task={data.get('task')!r}; expected task={self.task!r} "
                "(use another run folder for another task)"
            )
        return dict(data.get("entries", {}))

    def load(self) -> TuningTable | None:
        """The entry of :attr:`key`, if the file has it."""
        entry = self._entries().get(self.key)
        return None if entry is None else TuningTable.from_json(entry)

    def save(self, scores: Scores) -> None:
        """Add the entry of :attr:`key` (re-read first: another process may have added one meanwhile)."""
        entries = self._entries()
        entries[self.key] = TuningTable.of(scores, self.task, self.key, self.target, self.seeds).to_json()
        atomic_write_text(self.path, json.dumps({"task": self.task, "entries": entries}, indent=1, sort_keys=True))


def train_configs(task: Task, target: float, env: Mapping[str, Any]) -> dict[str, EnvConfig]:
    """``{network: EnvConfig}`` of a task's train split at ``target``: the task's settings, then ``env`` on top."""
    return {network: EnvConfig(**{**task.env_kwargs(network, target), **env}) for network in task.train}


def tune(
    task: str | Task,
    cells: Sequence[Cell],
    target: float | None = None,
    run_dir: str | Path | None = None,
    seeds: Sequence[int] = seed_range("tuning", 1),
    env_overrides: Mapping[str, Any] | None = None,
    backend: str = "process",
    workers: int | None = None,
    progress: bool = True,
    threads_per_worker: int | None = None,
) -> TuningTable:
    """The tuning table of ``task`` at ``target`` (default: its first target): every cell on every train network.

    Args:
        task: A task or its name.
        cells: The grid (at least one cell, names unique).
        target: Target density; default the task's first.
        run_dir: Folder of the cache (``tuning.json``); ``None``: no cache.
        seeds: Tuning seeds, apart from every evaluation seed (default: the first of ``seeds("tuning", n)``).
        env_overrides: ``EnvConfig`` fields on top of the task's (e.g. ``observations=()`` for speed).
        backend: :func:`run_grid`'s backend.
        workers: :func:`run_grid`'s workers.
        progress: Show a progress bar.
        threads_per_worker: :func:`run_grid`'s torch threads per worker.

    Raises:
        ValueError: No cells, duplicate names, or a cache in ``run_dir`` that holds another task.

    """
    t = task if isinstance(task, Task) else get_task(task)
    target = t.targets[0] if target is None else float(target)
    env = dict(env_overrides or {})
    key = tuning_key(t, target, cells, seeds, env)
    seed_tuple = tuple(int(s) for s in seeds)
    cache = TuningCache(Path(run_dir) / CACHE_NAME, t.name, key, target, seed_tuple) if run_dir is not None else None
    grid = {"backend": backend, "workers": workers, "threads_per_worker": threads_per_worker, "progress": progress}
    scores = score_policies(cells, train_configs(t, target, env), seed_tuple, "train", cache, **grid)
    return scores if isinstance(scores, TuningTable) else TuningTable.of(scores, t.name, key, target, seed_tuple)
