"""The static searches a generalist meets at the same total budget, over many settings (family × target).

A policy trained across settings (:mod:`sparsity_gym.experiments.settings_env`) spends one budget on all of
them. Its search opponents spend the same episodes (:mod:`sparsity_gym.experiments.search` runs each search):

* **(a) one search per setting** (:func:`run_setting_searches`): the budget split equally between the settings
  (:func:`split_budget`), each setting a TPE study of its own on its own train networks at its own target;
* **(b) one search over all settings** (:func:`run_joint_search`): one static point for every family and
  target, a trial playing it on every setting, its value the mean over settings of each setting's mean
  validation accuracy (:func:`mean_over_settings`: every setting weighs the same, whatever its networks' count),
  with the whole budget;
* **(c) a point found at one target, used at another** (:func:`transfer_plan`): what a user without a new search
  does; a static schedule reads its target when it plays, so the point runs unchanged at the new target.

A setting's networks are keyed ``family@target/network`` (:attr:`Setting.label`) in one ``{label: EnvConfig}``
mapping per setting (:func:`setting_networks`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparsity_gym.core.checks import check_number
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.experiments.search import Knob, SearchResult, run_search
from sparsity_gym.experiments.settings_env import Setting, setting_label
from sparsity_gym.experiments.tuning import Cell, Scores

__all__ = [
    "SplitBudget",
    "Transfer",
    "mean_over_settings",
    "run_joint_search",
    "run_setting_searches",
    "setting_networks",
    "split_budget",
    "transfer_plan",
]


@dataclass(frozen=True)
class SplitBudget:
    """A total budget split equally between settings: each setting's episodes, trial cost and trials.

    Attributes:
        total: The whole budget (episodes).
        episodes: ``{setting: its share}``; the shares sum to ``total``.
        per_trial: ``{setting: episodes one trial costs}`` (its networks × seeds).

    """

    total: int
    episodes: dict[str, int]
    per_trial: dict[str, int]

    @property
    def trials(self) -> dict[str, int]:
        """``{setting: trials its share buys}``: ``share // per_trial``."""
        return {s: self.episodes[s] // self.per_trial[s] for s in self.episodes}

    @property
    def leftover(self) -> int:
        """Episodes of the budget no trial spends (each share's ``share mod per_trial``, summed)."""
        return self.total - sum(t * self.per_trial[s] for s, t in self.trials.items())


def split_budget(total: int, per_trial: Mapping[str, int]) -> SplitBudget:
    """Split ``total`` episodes equally between the settings of ``per_trial`` (``{setting: trial cost}``).

    Each setting gets ``total // n`` episodes and the first ``total mod n`` settings, in the given order, one more,
    so the shares sum to the budget and differ by at most one episode. A share buys ``share // per_trial``
    trials; what is left of a share is not spent (a search never runs a partial trial, as
    :class:`~sparsity_gym.experiments.search.Budget`). Example: 100 episodes, 3 settings of 4-episode trials:
    shares 34, 33, 33, trials 8, 8, 8, 4 episodes left over.

    Raises:
        ValueError: No settings, a trial cost below 1, or a share that buys no trial (naming the setting).

    """
    if not per_trial:
        raise ValueError("per_trial={} is not allowed; expected at least one setting")
    check_number("total", total, low=0, integer=True)
    for name, cost in per_trial.items():
        check_number(f"per_trial[{name!r}]", cost, low=1, integer=True)
    base, extra = divmod(int(total), len(per_trial))
    episodes = {name: base + (1 if i < extra else 0) for i, name in enumerate(per_trial)}
    for name, share in episodes.items():
        if share < per_trial[name]:
            raise ValueError(
                f"total={total} episodes is not allowed for {len(per_trial)} settings: setting {name!r} gets "
                f"{share}, less than one trial's {per_trial[name]}; expected at least "
                f"{len(per_trial) * max(per_trial.values())} episodes"
            )
    return SplitBudget(int(total), episodes, {k: int(v) for k, v in per_trial.items()})


def setting_networks(settings: Sequence[Setting], **overrides: Any) -> dict[str, dict[str, EnvConfig]]:
    """``{family@target: {family@target/network: config}}``: each setting's train networks (``overrides`` on top).

    A search does not read the observation statistics: pass ``observations=()`` to skip them, as the tuning does.
    """
    cells: dict[str, dict[str, EnvConfig]] = {}
    for s in settings:
        config = s.config.replace(**overrides) if overrides else s.config
        cells.setdefault(setting_label(s.family, s.target), {})[s.label] = config
    return cells


def mean_over_settings(scores: Scores, policy: str) -> float:
    """The mean over settings of each setting's mean validation accuracy (networks keyed ``setting/network``).

    Every setting weighs the same: a family of four networks counts as much as one of three.
    """
    by_setting: dict[str, list[float]] = {}
    for network, values in scores.val[policy].items():
        by_setting.setdefault(network.split("/")[0], []).extend(values)
    return float(np.mean([np.mean(v) for v in by_setting.values()]))


def _folder(run_dir: str | Path, name: str) -> Path:
    """A setting's study folder: ``run_dir/settings/<family@target>`` (characters a path dislikes as ``_``)."""
    return Path(run_dir) / "settings" / re.sub(r"[^A-Za-z0-9@._-]", "_", name)


def run_setting_searches(
    sampler: str,
    space: Mapping[str, Knob],
    to_name: Callable[[Mapping[str, Any]], str],
    to_cell: Callable[[str], Cell],
    cells: Mapping[str, Mapping[str, EnvConfig]],
    seeds: Sequence[int],
    budget: int,
    run_dir: str | Path,
    seed: int = 0,
    **search: Any,
) -> dict[str, SearchResult]:
    """Opponent (a): one search per setting of ``cells`` (:func:`setting_networks`), the budget split equally.

    Each setting's study lives in ``run_dir/settings/<family@target>/`` (resumable, as every search); the
    settings' results by setting. ``search``: :func:`run_search`'s ``progress``, ``backend``, ``workers``...
    """
    plan = split_budget(budget, {name: len(nets) * len(seeds) for name, nets in cells.items()})
    return {
        name: run_search(
            sampler, space, to_name, to_cell, nets, seeds, plan.episodes[name], _folder(run_dir, name), seed, **search
        )
        for name, nets in cells.items()
    }


def run_joint_search(
    sampler: str,
    space: Mapping[str, Knob],
    to_name: Callable[[Mapping[str, Any]], str],
    to_cell: Callable[[str], Cell],
    cells: Mapping[str, Mapping[str, EnvConfig]],
    seeds: Sequence[int],
    budget: int,
    run_dir: str | Path,
    seed: int = 0,
    **search: Any,
) -> SearchResult:
    """Opponent (b): one search of one point for every setting, scored by :func:`mean_over_settings`.

    A trial plays every network of every setting with every seed (it costs their count × seeds); the study
    lives in ``run_dir/joint/``.
    """
    networks = {label: config for nets in cells.values() for label, config in nets.items()}
    return run_search(
        sampler,
        space,
        to_name,
        to_cell,
        networks,
        seeds,
        budget,
        Path(run_dir) / "joint",
        seed,
        objective=mean_over_settings,
        **search,
    )


@dataclass(frozen=True)
class Transfer:
    """Opponent (c): the point found by the search at ``source`` played at ``target``."""

    source: float
    target: float
    policy: str

    @property
    def label(self) -> str:
        """``search@<source> at <target>``."""
        return f"search@{self.source:g} at {self.target:g}"


def transfer_plan(found: Mapping[float, str], targets: Sequence[float]) -> list[Transfer]:
    """For each of ``targets``, the point found at the nearest *other* searched target (``found``: target -> point).

    Nearest on a log scale (density ratios: 0.02 is as near 0.01 as 0.04 is), the lower target on a tie. A target
    that was searched takes its nearest other one (what the point of a neighbouring search gives there).

    Raises:
        ValueError: Fewer than one other searched target for some target.

    """
    plan = []
    for target in targets:
        sources = sorted(t for t in found if not math.isclose(t, target))
        if not sources:
            raise ValueError(f"found={dict(found)!r} is not allowed for target {target}; expected a search elsewhere")
        source = min(sources, key=lambda t: (round(abs(math.log(t / target)), 9), t))
        plan.append(Transfer(float(source), float(target), found[source]))
    return plan
