"""Tuned handcrafted baselines (the fair opponent) and the oracle (an upper bound), cached per task.

*Tuned handcrafted* is the cell of the handcrafted grid (schedule shape × pruning-window end × allocation) with
the best mean **validation** accuracy on a task's **train** networks, on seeds apart from every evaluation seed
(:data:`TUNING_SEED_START` = 5000 and up): the schedule a user would pick in advance. The *oracle* is the best
cell per held-out network chosen on that network's own **test** results: an upper bound that no fixed schedule
chosen in advance can claim, labelled so wherever it is reported.

This module imports no policy code (``experiments`` stands below ``baselines``): the caller passes the grid as
:class:`Cell` objects, each a name, a picklable policy factory (``functools.partial(baselines.make_policy,
name)``) and the env keywords the cell needs (``baselines.env_kwargs(name)``, e.g. its allocation). Episodes
run through :func:`sparsity_gym.experiments.grid.run_grid` (a process pool, with a progress bar).

The tuning table is cached as JSON in a run folder (``tuning.json``, written atomically): one file per task,
holding one entry per env configuration (target density, budget, iterations...), cell list and seed list.
A matching entry is reused; a file that holds another task is refused with a ``ValueError``.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparsity_gym.core.io import atomic_write_text
from sparsity_gym.env.config import EnvConfig
from sparsity_gym.env.tasks import Task, get_task
from sparsity_gym.experiments.evaluation import EpisodeResult
from sparsity_gym.experiments.grid import GridJob, PolicyFactory, run_grid

__all__ = [
    "CACHE_NAME",
    "TUNING_SEED_START",
    "Cell",
    "OracleEntry",
    "TuningTable",
    "oracle",
    "tune",
    "tuning_key",
]

TUNING_SEED_START = 5000
CACHE_NAME = "tuning.json"


@dataclass(frozen=True)
class Cell:
    """One cell of the handcrafted grid.

    Attributes:
        name: The policy's name (``cubic``, ``linear@0.9+lamp``...).
        factory: ``env -> policy``, picklable (a top-level function or a ``functools.partial`` of one).
        env_kwargs: ``EnvConfig`` fields the cell needs on top of the task's (e.g. ``{"allocation": "erk"}``).

    """

    name: str
    factory: PolicyFactory
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TuningTable:
    """Validation accuracy of every cell on the task's train networks, and the pick.

    Attributes:
        task: The task's name.
        key: The cache key (:func:`tuning_key`).
        target: The target density tuned for.
        seeds: The tuning seeds.
        cells: Cell names in grid order.
        val: ``val[cell][network]``: validation accuracies (one per seed, in seed order).
        test: ``test[cell][network]``: test accuracies (kept for reference; never used for the pick).

    """

    task: str
    key: str
    target: float
    seeds: tuple[int, ...]
    cells: tuple[str, ...]
    val: Mapping[str, Mapping[str, list[float]]]
    test: Mapping[str, Mapping[str, list[float]]]

    def mean_val(self, cell: str) -> float:
        """Mean validation accuracy of ``cell`` over every train network and seed."""
        return float(np.mean([v for values in self.val[cell].values() for v in values]))

    @property
    def best(self) -> str:
        """The tuned handcrafted cell: best mean validation accuracy (the first in grid order on a tie)."""
        means = [self.mean_val(c) for c in self.cells]
        return self.cells[int(np.argmax(means))]

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
        """The table of :meth:`to_json`."""
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


def _read_cache(path: Path, task: str) -> dict[str, Any]:
    """The cache file's entries for ``task`` (empty when there is no file); ``ValueError`` for another task."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("task") != task:
        raise ValueError(
            f"run_dir holds {path.name} of task={data.get('task')!r}; expected task={task!r} "
            "(use another run folder for another task)"
        )
    return dict(data.get("entries", {}))


def tune(
    task: str | Task,
    cells: Sequence[Cell],
    target: float | None = None,
    run_dir: str | Path | None = None,
    seeds: Sequence[int] = (TUNING_SEED_START,),
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
        seeds: Tuning seeds, apart from every evaluation seed (default 5000).
        env_overrides: ``EnvConfig`` fields on top of the task's (e.g. ``observations=()`` for speed).
        backend: :func:`run_grid`'s backend.
        workers: :func:`run_grid`'s workers.
        progress: Show a progress bar.
        threads_per_worker: :func:`run_grid`'s torch threads per worker.

    Raises:
        ValueError: No cells, duplicate names, or a cache in ``run_dir`` that holds another task.

    """
    t = task if isinstance(task, Task) else get_task(task)
    if not cells:
        raise ValueError("cells=() is not allowed; expected at least one cell of the handcrafted grid")
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        raise ValueError(f"cells={names!r} is not allowed; expected unique names")
    target = t.targets[0] if target is None else float(target)
    env = dict(env_overrides or {})
    key = tuning_key(t, target, cells, seeds, env)
    path = None if run_dir is None else Path(run_dir) / CACHE_NAME
    entries = {} if path is None else _read_cache(path, t.name)
    if key in entries:
        return TuningTable.from_json(entries[key])
    jobs = [
        GridJob(
            cell.name,
            cell.factory,
            EnvConfig(**{**t.env_kwargs(network, target), **env, **dict(cell.env_kwargs)}),
            seeds=tuple(seeds),
            split="train",
            network=network,
        )
        for cell in cells
        for network in t.train
    ]
    results = run_grid(jobs, backend, workers, threads_per_worker, progress)
    table = _table(t.name, key, target, tuple(int(s) for s in seeds), tuple(names), results)
    if path is not None:
        entries = _read_cache(path, t.name)  # re-read: another process may have added an entry meanwhile
        entries[key] = table.to_json()
        atomic_write_text(path, json.dumps({"task": t.name, "entries": entries}, indent=1, sort_keys=True))
    return table


def _table(
    task: str, key: str, target: float, seeds: tuple[int, ...], cells: tuple[str, ...], results: list[EpisodeResult]
) -> TuningTable:
    val: dict[str, dict[str, list[float]]] = {c: defaultdict(list) for c in cells}
    test: dict[str, dict[str, list[float]]] = {c: defaultdict(list) for c in cells}
    for r in results:
        val[r.policy][r.network].append(r.val_accuracy)
        test[r.policy][r.network].append(r.test_accuracy)
    return TuningTable(task, key, target, seeds, cells, {c: dict(v) for c, v in val.items()}, test)


@dataclass(frozen=True)
class OracleEntry:
    """The oracle of one held-out network: an upper bound, chosen on the network's own test results."""

    network: str
    cell: str
    test_accuracy: float
    label: str = "oracle (upper bound: chosen on its own test results)"


def oracle(results: Sequence[EpisodeResult], cells: Sequence[str] | None = None) -> dict[str, OracleEntry]:
    """Per network of ``results``: the cell with the best mean **test** accuracy (first in order on a tie).

    ``cells`` restricts the choice to those policy names (default: every policy in ``results``). The result is an
    upper bound for any fixed schedule chosen in advance, never a baseline one could run.
    """
    means: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        if cells is None or r.policy in cells:
            means[r.network][r.policy].append(r.test_accuracy)
    out = {}
    for network, by_cell in means.items():
        order = [c for c in (cells or list(by_cell)) if c in by_cell]
        scores = [float(np.mean(by_cell[c])) for c in order]
        best = int(np.argmax(scores))
        out[network] = OracleEntry(network, order[best], scores[best])
    return out
