"""The cost to catch up: episodes a fresh search needs to reach a generalist's zero-shot accuracy, and break-even.

A generalist (one policy trained across settings) answers a new setting, say a held-out target, with no new
episode: its *zero-shot* validation accuracy there (on the train split, where a search also scores). A static
search must start over on that setting. Its **catch-up cost** (:func:`catch_up`) is the number of episodes its
trials have spent when its incumbent (the best value so far) first reaches that accuracy: trial ``k`` costs
``per_trial`` episodes (networks × seeds), so the cost is ``k × per_trial`` for the first such ``k``. A search
whose incumbent never reaches it within its study is *censored*: its cost is at least the episodes it spent.

**Break-even** (:func:`break_even`): training the generalist costs ``G`` episodes once; serving ``N`` new settings
by search costs ``N × c`` with ``c`` the mean catch-up cost per setting. The generalist is the cheaper way to
that accuracy for ``N > G / c`` settings: the break-even count is ``floor(G / c) + 1``, the fewest settings at
which it is strictly cheaper. With a censored setting ``c`` is a lower bound, so the count is an upper bound
(``BreakEven.censored``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sparsity_gym.core.checks import check_number

__all__ = ["BreakEven", "CatchUp", "break_even", "catch_up", "incumbent_curve", "plot_catch_up", "study_values"]


def incumbent_curve(values: Sequence[float], per_trial: int) -> list[tuple[int, float]]:
    """``[(episodes after trial k, best value of trials 1..k)]`` for the trials' ``values`` in trial order."""
    check_number("per_trial", per_trial, low=1, integer=True)
    curve, best = [], -math.inf
    for k, value in enumerate(values, start=1):
        best = max(best, float(value))
        curve.append((k * per_trial, best))
    return curve


@dataclass(frozen=True)
class CatchUp:
    """A search's cost to reach ``threshold``.

    Attributes:
        setting: The setting searched (``family@target``).
        threshold: The accuracy to reach (the generalist's zero-shot validation accuracy).
        episodes: Episodes spent when the incumbent first reached ``threshold``; all the study spent if never.
        reached: Whether it did (``False``: censored, the cost is at least ``episodes``).
        spent: Episodes the whole study spent.

    """

    setting: str
    threshold: float
    episodes: int
    reached: bool
    spent: int

    @property
    def text(self) -> str:
        """``12 episodes`` or ``> 40 episodes`` (never reached within the study)."""
        return f"{self.episodes} episodes" if self.reached else f"> {self.episodes} episodes"


def catch_up(values: Sequence[float], per_trial: int, threshold: float, setting: str = "") -> CatchUp:
    """The catch-up cost of a search whose trials scored ``values`` (in trial order), ``per_trial`` episodes each.

    Raises:
        ValueError: No trials, or a trial cost below 1.

    """
    if not values:
        raise ValueError("values=() is not allowed; expected the values of at least one trial")
    curve = incumbent_curve(values, per_trial)
    spent = curve[-1][0]
    for episodes, best in curve:
        if best >= threshold:
            return CatchUp(setting, float(threshold), episodes, True, spent)
    return CatchUp(setting, float(threshold), spent, False, spent)


@dataclass(frozen=True)
class BreakEven:
    """Where the generalist's one training costs as much as the searches of that many new settings.

    Attributes:
        generalist_episodes: The generalist's training episodes (``G``).
        mean_cost: The mean catch-up cost per setting (``c``).
        ratio: ``G / c``: the settings at which both cost the same.
        settings: ``floor(G / c) + 1``: the fewest settings at which the generalist is strictly cheaper.
        censored: Some search never caught up (``c`` a lower bound, ``settings`` an upper bound).

    """

    generalist_episodes: int
    mean_cost: float
    ratio: float
    settings: int
    censored: bool

    @property
    def text(self) -> str:
        """``9 settings`` or ``at most 9 settings`` (a censored cost)."""
        return ("at most " if self.censored else "") + f"{self.settings} settings"


def break_even(generalist_episodes: int, costs: Sequence[CatchUp]) -> BreakEven:
    """The break-even count of settings (module doc) from the generalist's episodes and per-setting costs.

    Raises:
        ValueError: No costs, or a generalist without episodes.

    """
    check_number("generalist_episodes", generalist_episodes, low=1, integer=True)
    if not costs:
        raise ValueError("costs=() is not allowed; expected the catch-up cost of at least one setting")
    mean = sum(c.episodes for c in costs) / len(costs)
    ratio = generalist_episodes / mean
    return BreakEven(int(generalist_episodes), mean, ratio, math.floor(ratio) + 1, any(not c.reached for c in costs))


def study_values(path: str | Path, study_name: str = "search_tpe") -> tuple[list[float], int]:
    """``(values of the completed trials in trial order, episodes per trial)`` of an Optuna study in SQLite ``path``.

    ``per_trial`` is the study's record (:func:`sparsity_gym.experiments.search.run_search` writes it).

    Raises:
        ValueError: No such file, or a study without its ``per_trial`` record.

    """
    from sparsity_gym.experiments.search import import_optuna

    if not Path(path).exists():
        raise ValueError(f"path={str(path)!r} is not allowed; expected an Optuna SQLite study (search_tpe.db)")
    optuna = import_optuna()
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{path}")
    per_trial = study.user_attrs.get("per_trial")
    if per_trial is None:
        raise ValueError(f"study {study_name!r} in {path} has no per_trial record; expected one run_search wrote")
    done = optuna.trial.TrialState.COMPLETE
    trials = sorted(study.get_trials(deepcopy=False, states=(done,)), key=lambda t: t.number)
    return [float(t.value) for t in trials], int(per_trial)


def plot_catch_up(
    path: str | Path,
    curves: Mapping[str, Sequence[tuple[int, float]]],
    thresholds: Mapping[str, float],
    generalist_episodes: int | None = None,
    title: str = "",
) -> Path:
    """Each setting's incumbent against episodes (steps), its threshold dashed; the generalist's cost a grey line."""
    from sparsity_gym.experiments.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))

    def draw() -> None:
        for i, (setting, curve) in enumerate(curves.items()):
            colour = f"C{i % 10}"
            if curve:
                episodes = [e for e, _ in curve]
                ax.step(episodes, [100 * v for _, v in curve], where="post", color=colour, label=f"search at {setting}")
            if setting in thresholds:
                ax.axhline(100 * thresholds[setting], color=colour, ls="--", lw=1, label=f"generalist at {setting}")
        if generalist_episodes is not None:
            ax.axvline(generalist_episodes, color="tab:gray", lw=1.5, label="generalist's training")
        ax.set_xlabel("search episodes")
        ax.set_ylabel("incumbent validation accuracy (%)")
        ax.legend(fontsize=7)
        if title:
            ax.set_title(title, fontsize=9)

    return _save(fig, path, draw)
