"""Search, then learn: the best static point as the actor's prior, and the budget counted whole.

DESIGN.md, "Learning against searching": a learner that starts where a search ended can add what no static point
expresses. ``--prior search`` runs a TPE search over the static schedule's knobs first
(:data:`baselines.static.SEARCH_SPACE`, the task's **train** networks at the run's target, the tuned grid's seeds,
``--prior-search-budget`` episodes, the first ``--sampler-seeds`` seed) and its incumbent becomes the actor's prior
(:mod:`agents.ppo.prior_map`: the untrained policy plays it exactly). A static point can also be named
(``--prior 'poly[...]+rule[first=..,last=..]'``).

**Resume.** The prior's study lives in ``run_dir/prior_search/search_tpe.db`` (Optuna's SQLite storage,
:mod:`sparsity_gym.experiments.search`); a resumed run reopens it with every trial done and gets the same
incumbent without a new trial (a search killed part-way finishes its budget first).

**The budget.** The hybrid's cost is the search's episodes plus PPO's (and the paired reward reference's): the
``prior`` record of ``opponents.json`` holds the search's, and :func:`agents.reports.costs.read_agent_cost` adds them to
the learned policy's. The opponents (:mod:`agents.reports.opponent_runs`) then get that whole total: the TPE study of
the first sampler seed *continues* the prior's study (:func:`continue_prior_study` copies it before the search
resumes it, so the prior's own record is never touched), random search and every other sampler seed run to the
same total, and the incumbent itself (``prior: search (N episodes)``, at the search's budget) joins the comparison.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from agents.ppo.prior_map import prior_env
from agents.reports.tuned import tuning_overrides
from agents.settings.train_config import TrainConfig
from baselines import SEARCH_SPACE, policy_cell, searched_name
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.tasks import get_task
from sparsity_gym.experiments.opponents import Opponent, read_opponents, write_opponents
from sparsity_gym.experiments.search import SearchResult, run_search, study_path
from sparsity_gym.experiments.seeds import seeds
from sparsity_gym.experiments.tuning import train_configs

PRIOR_SEARCH_DIR = "prior_search"
PRIOR = "prior"
"""The incumbent's record in ``opponents.json``: its name."""


def search_configs(cfg: TrainConfig) -> dict[str, EnvConfig]:
    """``{network: EnvConfig}`` the search plays: the task's train split with the tuned grid's settings."""
    assert cfg.task is not None and cfg.env.target_density is not None  # a task run always has both
    return train_configs(get_task(cfg.task), cfg.env.target_density, tuning_overrides(cfg.env))


def sampler_seeds(cfg: TrainConfig) -> tuple[int, ...]:
    """The searches' sampler seeds: ``--sampler-seeds``, else ``--seed`` alone."""
    return cfg.sampler_seeds or (cfg.seed,)


def search_prior(cfg: TrainConfig, run_dir: Path) -> SearchResult:
    """Run (or reopen) the prior's TPE search and record it as the ``prior`` opponent; its result."""
    result = run_search(
        "tpe",
        SEARCH_SPACE,
        searched_name,
        policy_cell,
        search_configs(cfg),
        seeds("tuning", cfg.search_seeds),
        cfg.prior_search_budget,
        run_dir / PRIOR_SEARCH_DIR,
        seed=sampler_seeds(cfg)[0],
        progress=cfg.progress_bar,
        backend=cfg.backend,
        workers=cfg.workers or None,
    )
    label = f"prior: search ({result.episodes} episodes)"
    record = Opponent(PRIOR, label, result.episodes, round(result.seconds, 1), result.best, cfg.prior_search_budget)
    write_opponents(run_dir, [record])
    return result


def static_prior(cfg: TrainConfig, run_dir: Path) -> tuple[str, EnvConfig]:
    """``(prior point, env)`` of ``--prior search`` or ``--prior poly[...]``: the point and the env it plays on."""
    if cfg.prior == "search":
        point = search_prior(cfg, run_dir).best
    else:  # a named point costs nothing and plays in the comparison under its own name
        point = cfg.prior
        write_opponents(run_dir, [Opponent(PRIOR, point, 0, 0.0, point)])
    return point, prior_env(point, cfg.env)


def uses_static_prior(cfg: TrainConfig) -> bool:
    """Whether the run's prior is a static point (``search`` or a ``poly[...]`` name)."""
    return cfg.prior == "search" or cfg.prior.startswith("poly[")


def recorded_prior(cfg: TrainConfig, training_dir: Path) -> tuple[str, EnvConfig]:
    """The prior a trained run used and its env (evaluate mode): the ``prior`` record, or the named point."""
    if cfg.prior != "search":
        return cfg.prior, prior_env(cfg.prior, cfg.env)
    record = read_opponents(training_dir).get(PRIOR)
    if record is None or record.best is None:
        raise ValueError(
            f"prior='search' is not allowed for {str(training_dir)!r}: its opponents.json has no prior record; "
            "expected the folder of a --prior search training run"
        )
    return record.best, prior_env(record.best, cfg.env)


def continue_prior_study(run_dir: Path, sampler: str, seed: int, cfg: TrainConfig) -> None:
    """Copy the prior's TPE study to the opponent's place when the opponent continues it (first seed, TPE)."""
    source = study_path(run_dir / PRIOR_SEARCH_DIR, "tpe")
    target = study_path(run_dir, sampler)
    first = cfg.prior == "search" and sampler == "tpe" and seed == sampler_seeds(cfg)[0]
    if first and source.exists() and not target.exists():
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)


def incumbent(run_dir: Path) -> dict[str, str]:
    """``{label: point}`` of the prior's incumbent, then ``distilled`` (:mod:`agents.reports.distill`), as recorded."""
    records = read_opponents(run_dir)
    chosen = [records.get(PRIOR), records.get("distilled")]
    return {r.label: r.best for r in chosen if r is not None and r.best is not None}
