"""The equal-budget search opponents of a run (``--opponent search random``) and the opponents' costs.

Each opponent searches the static schedule's knobs (:data:`baselines.static.SEARCH_SPACE`: the pruning window,
the exponent, the allocation rule, the first and last layer's multipliers) on the task's **train** networks
at the run's target and env settings (those the tuned grid runs with), maximizing mean **validation**
accuracy over ``seeds("tuning", --search-seeds)`` per network: the tuned grid's own seeds, so the grid's cells
and the searched points are judged on the same episodes. ``search`` is Optuna's TPE, ``random`` its random
sampler (:mod:`sparsity_gym.experiments.search`), both seeded with ``--seed``.

The budget is the PPO run's (:func:`search_budget`): its training episodes plus the paired reward reference's
episodes, as :func:`agents.costs.read_agent_cost` reads them from its run folder, or ``--search-budget``. The
best point of each search joins the comparison under ``search (N episodes)`` / ``random (N episodes)``
(:func:`run_opponents`), on the same networks and seeds as every other policy. ``opponents.json`` in the run
folder records every opponent's cost (:class:`~sparsity_gym.experiments.opponents.Opponent`), the tuned cell's
tuning included (``tuned``). Each search is also cut at the PPO run's training seconds (:func:`at_learned_seconds`:
its trials' recorded seconds summed in trial order, the best point within them), so the report compares at
equal wall time as well as at equal episodes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from agents.config import TrainConfig
from agents.costs import ppo_run_dir, read_agent_cost
from agents.tuned import tuning_overrides
from baselines import SEARCH_SPACE, policy_cell, searched_name
from sparsity_gym.env.config import EnvConfig
from sparsity_gym.env.tasks import get_task
from sparsity_gym.experiments.opponents import AtSeconds, Opponent, best_within_seconds, read_opponents, write_opponents
from sparsity_gym.experiments.search import import_optuna, run_search, study_path
from sparsity_gym.experiments.seeds import seeds
from sparsity_gym.experiments.tuning import train_configs

SAMPLER_OF = {"search": "tpe", "random": "random"}
"""The Optuna sampler of each ``--opponent``."""


def search_budget(cfg: TrainConfig, records: str | Path) -> int:
    """``--search-budget``, else the episodes of the PPO run in ``records``: its training plus reference episodes.

    The run's records are read by :func:`agents.costs.read_agent_cost` (the report's cost column reads the same).

    Raises:
        ValueError: No ``--search-budget`` and ``records`` holds no PPO run's records.

    """
    if cfg.search_budget:
        return cfg.search_budget
    cost = read_agent_cost(records)
    if cost is None:
        raise ValueError(
            f"run_dir={str(records)!r} is not allowed for the search's budget: it holds no checkpoints/state.json "
            "(no PPO run trained there); expected a PPO run folder, or pass --search-budget N (episodes)"
        )
    return cost.all_episodes


def search_configs(cfg: TrainConfig) -> dict[str, EnvConfig]:
    """``{network: EnvConfig}`` the search plays: the task's train split with the tuned grid's settings."""
    assert cfg.task is not None and cfg.env.target_density is not None  # a task run always has both
    return train_configs(get_task(cfg.task), cfg.env.target_density, tuning_overrides(cfg.env))


def searching(cfg: TrainConfig) -> tuple[str, ...]:
    """The searches ``cfg`` runs (``--opponent`` without ``none``)."""
    return tuple(o for o in cfg.opponent if o != "none")


def run_opponents(cfg: TrainConfig, run_dir: Path) -> dict[str, str]:
    """Run (or resume) every ``cfg.opponent`` search; ``{label in the results: best point's name}``.

    The budget is :func:`search_budget` of the PPO run's records (:func:`agents.costs.ppo_run_dir`: the run
    folder, or ``--model``'s in ``evaluate`` mode). Each search's cost is added to ``run_dir/opponents.json``.
    """
    chosen = searching(cfg)
    if not chosen:
        return {}
    budget = search_budget(cfg, ppo_run_dir(cfg))
    learned = read_agent_cost(ppo_run_dir(cfg))
    configs = search_configs(cfg)
    results: list[Opponent] = []
    for name in chosen:
        result = run_search(
            SAMPLER_OF[name],
            SEARCH_SPACE,
            searched_name,
            policy_cell,
            configs,
            seeds("tuning", cfg.search_seeds),
            budget,
            run_dir,
            seed=cfg.seed,
            progress=cfg.progress_bar,
            backend=cfg.backend,
            workers=cfg.workers or None,
        )
        print(f"{result.label}: best point {result.best} (train-split validation accuracy {result.best_value:.4f})")
        record = result.opponent()
        if learned is not None and learned.seconds is not None:  # the same search at equal wall time
            at = at_learned_seconds(run_dir, result.sampler, learned.seconds, result.budget.per_trial)
            record = dataclasses.replace(record, at_seconds=at)
        results.append(record)
    write_opponents(run_dir, results)
    return {r.label: str(r.best) for r in results}


def at_learned_seconds(run_dir: str | Path, sampler: str, seconds: float, per_trial: int) -> AtSeconds:
    """The search of ``sampler`` in ``run_dir`` cut at the learned policy's ``seconds`` (equal wall time).

    Its trials' recorded seconds (``user_attrs["seconds"]``) are summed in trial order; the best point among
    those within the cut (:func:`sparsity_gym.experiments.opponents.best_within_seconds`).
    """
    optuna = import_optuna()
    study = optuna.load_study(study_name=f"search_{sampler}", storage=f"sqlite:///{study_path(run_dir, sampler)}")
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    trials = [
        (str(t.user_attrs["policy"]), float(t.value), float(t.user_attrs.get("seconds", 0.0)))
        for t in sorted(complete, key=lambda t: t.number)
    ]
    return best_within_seconds(trials, seconds, per_trial)


def opponent_notes(run_dir: Path, labels: dict[str, str]) -> list[str]:
    """One line per search opponent of ``labels`` for ``results.md``: its best point, budget and cost."""
    costs = {o.label: o for o in read_opponents(run_dir).values()}
    notes = []
    for label, best in labels.items():
        cost = costs[label]
        how = "Optuna's TPE" if cost.name == "search" else "random search"
        notes.append(
            f"`{label}`: the static schedule `{best}`, the best mean validation accuracy on the train split among "
            f"the points {how} tried over the static schedule's knobs, {cost.episodes} episodes of a budget of "
            f"{cost.budget} ({cost.seconds} s; run_dir/search_{SAMPLER_OF[cost.name]}.db, opponents.json)"
            + (f"; at equal wall time, {cost.at_seconds.text(cost.best)}." if cost.at_seconds is not None else ".")
        )
    return notes
