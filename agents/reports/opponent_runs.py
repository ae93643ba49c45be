"""The equal-budget search opponents of a run (``--opponent search random``) and the opponents' costs.

Each opponent searches the static schedule's knobs (:data:`baselines.static.SEARCH_SPACE`: the pruning window,
the exponent, the allocation rule, the first and last layer's multipliers) on the task's **train** networks
at the run's target and env settings (those the tuned grid runs with), maximizing mean **validation**
accuracy over ``seeds("tuning", --search-seeds)`` per network: the tuned grid's own seeds, so the grid's cells
and the searched points are judged on the same episodes. ``search`` is Optuna's TPE, ``random`` its random
sampler (:mod:`sparsity_gym.experiments.search`), both seeded with ``--seed``.

The budget is the PPO run's (:func:`search_budget`): its training episodes plus the paired reward reference's
episodes, as :func:`agents.reports.costs.read_agent_cost` reads them from its run folder, or ``--search-budget``. The
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

from agents.reports.costs import ppo_run_dir, read_agent_cost
from agents.reports.prior_search import continue_prior_study, incumbent, sampler_seeds, search_configs
from agents.settings.train_config import TrainConfig
from baselines import SEARCH_SPACE, policy_cell, searched_name
from sparsity_gym.experiments.opponents import AtSeconds, Opponent, best_within_seconds, read_opponents, write_opponents
from sparsity_gym.experiments.search import import_optuna, run_search, study_path
from sparsity_gym.experiments.seeds import seeds

SAMPLER_OF = {"search": "tpe", "random": "random"}
"""The Optuna sampler of each ``--opponent``."""


def search_budget(cfg: TrainConfig, records: str | Path) -> int:
    """``--search-budget``, else the episodes of the PPO run in ``records``: its training plus reference episodes.

    The run's records are read by :func:`agents.reports.costs.read_agent_cost` (the report's cost column reads the
    same).

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


def searching(cfg: TrainConfig) -> tuple[str, ...]:
    """The searches ``cfg`` runs (``--opponent`` without ``none``)."""
    return tuple(o for o in cfg.opponent if o != "none")


def seed_folder(run_dir: str | Path, index: int, seed: int) -> Path:
    """Where the ``index``-th sampler seed's studies sit: the run folder for the first, ``sampler_seed_<s>/`` after."""
    return Path(run_dir) if index == 0 else Path(run_dir) / f"sampler_seed_{seed}"


def run_opponents(cfg: TrainConfig, run_dir: Path) -> dict[str, str]:
    """Run (or resume) every ``cfg.opponent`` search per sampler seed; ``{label in the results: best point's name}``.

    The budget is :func:`search_budget` of the PPO run's records (:func:`agents.reports.costs.ppo_run_dir`: the run
    folder, or ``--model``'s in ``evaluate`` mode), the prior search's episodes included
    (:mod:`agents.reports.prior_search`). The first sampler seed's studies are ``search_tpe.db`` / ``search_random.db``
    (TPE continuing the prior's study under ``--prior search``), each other seed's sit in ``sampler_seed_<s>/``. Each
    search's cost is added to ``run_dir/opponents.json``; the prior's incumbent, when there is one, joins the comparison
    too.
    """
    chosen = searching(cfg)
    labels = incumbent(run_dir)
    if not chosen:
        return labels
    budget = search_budget(cfg, ppo_run_dir(cfg))
    learned = read_agent_cost(ppo_run_dir(cfg))
    configs = search_configs(cfg)
    records: list[Opponent] = []
    for index, seed in enumerate(sampler_seeds(cfg)):
        folder = seed_folder(run_dir, index, seed)
        for opponent in chosen:
            continue_prior_study(run_dir, SAMPLER_OF[opponent], seed, cfg)
            result = run_search(
                SAMPLER_OF[opponent],
                SEARCH_SPACE,
                searched_name,
                policy_cell,
                configs,
                seeds("tuning", cfg.search_seeds),
                budget,
                folder,
                seed=seed,
                progress=cfg.progress_bar,
                backend=cfg.backend,
                workers=cfg.workers or None,
            )
            record = seeded_opponent(result.opponent(), seed, index)
            if learned is not None and learned.all_seconds is not None:  # the same search at equal wall time
                at = at_learned_seconds(folder, result.sampler, learned.all_seconds, result.budget.per_trial)
                record = dataclasses.replace(record, at_seconds=at)
            print(f"{record.label}: best point {result.best} (train-split validation accuracy {result.best_value:.4f})")
            records.append(record)
            labels[record.label] = result.best
    write_opponents(run_dir, records)
    return labels


def seeded_opponent(record: Opponent, seed: int, index: int) -> Opponent:
    """The first sampler seed's record as it is (``search``); another seed's named ``search_seed<s>``."""
    if index == 0:
        return record
    label = record.label.replace(f"{record.name} (", f"{record.name} seed {seed} (", 1)
    return dataclasses.replace(record, name=f"{record.name}_seed{seed}", label=label, policy=label)


def base_name(name: str) -> str:
    """The opponent a record plays without its seed: ``search_seed2`` -> ``search``."""
    return name.partition("_seed")[0]


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
        if cost.name == "distilled":  # agents.reports.distill
            notes.append(
                f"`{label}`: the static schedule `{best}`, fitted to the learned policy's schedules on the train "
                "split (its best periodic evaluation against the untrained policy's; run_dir/evaluated_schedules.json)."
            )
            continue
        if base_name(cost.name) not in SAMPLER_OF:  # the prior's incumbent: its own note (agents.reports.prior_search)
            notes.append(
                f"`{label}`: the static schedule `{best}`, the TPE incumbent the learned policy started from "
                f"({cost.episodes} episodes, {cost.seconds} s; run_dir/prior_search/search_tpe.db)."
            )
            continue
        folder = "" if cost.name == base_name(cost.name) else f"sampler_seed_{cost.name.partition('_seed')[2]}/"
        how = "Optuna's TPE" if base_name(cost.name) == "search" else "random search"
        notes.append(
            f"`{label}`: the static schedule `{best}`, the best mean validation accuracy on the train split among "
            f"the points {how} tried over the static schedule's knobs, {cost.episodes} episodes of a budget of "
            f"{cost.budget} ({cost.seconds} s; run_dir/{folder}search_{SAMPLER_OF[base_name(cost.name)]}.db, "
            "opponents.json)"
            + (f"; at equal wall time, {cost.at_seconds.text(cost.best)}." if cost.at_seconds is not None else ".")
        )
    return notes
