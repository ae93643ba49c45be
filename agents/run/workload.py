"""The work a run will do, counted and timed before it starts (the plan :func:`agents.run.preflight.preflight` prints).

Phases, in the order a training run meets them: the tuning of the grid, the prior choice, the training, the
paired reward's reference, the periodic evaluation, the search opponents (``--opponent``) and the comparison,
each as episodes on its parallel workers (upper bounds where a cache in the run folder may hold some):

* a **search**'s episodes are its trials' (:class:`sparsity_gym.experiments.search.Budget`: as many trials of
  ``train networks × --search-seeds`` episodes as its budget buys); the budget is ``--search-budget``, else the
  PPO run's training plus reference episodes: in ``evaluate`` mode as its folder records them
  (:func:`agents.reports.opponent_runs.search_budget`, refused when it records none), in ``train`` mode as this plan
  counts them (the run's own count sets the real budget once it has trained);
* the **comparison**'s are every policy (the searches' best points included) × its networks (the held-out
  population's with ``--heldout population``) × settings × seeds.

The time is estimated from a **probe**: one short real episode (:data:`PROBE_DECISIONS` decisions) of the first
train network at the run's settings. Its reset, first decision and later decisions are timed; a full episode is
estimated as reset + first decision + (decisions - 1) × the mean later decision, and a phase as its episodes ×
that time / its parallel workers. Every network is taken to cost what the probe's does; PPO's updates, process
start-up and the baselines' lighter observations are not counted: a rough guide.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from agents.ppo.prior import RECORD_NAME as PRIOR_RECORD
from agents.reports.costs import ppo_run_dir
from agents.reports.opponent_runs import SAMPLER_OF, search_budget, searching, seed_folder
from agents.reports.prior_search import sampler_seeds
from agents.run.showcase import showcase_jobs, showcase_seeds
from agents.settings.generalist import training_entries
from agents.settings.train_config import TrainConfig
from baselines import SEARCH_SPACE, available_policies, searched_name
from sparsity_gym.core.threads import usable_cores
from sparsity_gym.datasets import DatasetSplits
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.env.tasks import get_task
from sparsity_gym.experiments.families import Family, NetworkSpec
from sparsity_gym.experiments.grid import GridJob
from sparsity_gym.experiments.search import Budget, opponent_name, study_path
from sparsity_gym.experiments.seeds import seed_start
from sparsity_gym.experiments.tuning import CACHE_NAME

PROBE_DECISIONS = 2
"""Decisions of the probe episode (fewer when the run's episodes are shorter)."""


@dataclass(frozen=True)
class Work:
    """One phase of the run: ``episodes`` episodes on ``parallel`` workers (``what``: how they are counted)."""

    phase: str
    episodes: int
    parallel: int
    what: str


@dataclass(frozen=True)
class Probe:
    """The probe episode: ``network``, ``decisions`` of the run's ``full`` per episode, timed."""

    network: str
    decisions: int
    full: int
    seconds: float
    episode_s: float


@dataclass(frozen=True)
class Plan:
    """What a run will do, as :func:`preflight` found it (:meth:`render` prints it)."""

    mode: str
    checks: tuple[str, ...]
    work: tuple[Work, ...]
    probe: Probe
    seconds: float

    @property
    def episodes(self) -> int:
        """Episodes of every phase."""
        return sum(w.episodes for w in self.work)

    @property
    def estimate_s(self) -> float:
        """Estimated seconds: each phase's episodes × the probe's episode time / its parallel workers."""
        return sum(w.episodes * self.probe.episode_s / max(1, w.parallel) for w in self.work)

    def render(self) -> str:
        """The plan as lines of text."""
        p = self.probe
        lines = [f"preflight ({self.mode}): every check passed in {self.seconds:.1f} s"]
        lines += [f"  {line}" for line in self.checks]
        lines.append("  work (episodes):")
        for w in self.work:
            on = f", {w.parallel} in parallel" if w.parallel > 1 else ""
            lines.append(f"    {w.phase}: {w.episodes} ({w.what}{on})")
        lines.append(f"    total: {self.episodes} episodes")
        lines.append(
            f"  probe: {p.decisions} of {p.full} decisions of {p.network} took {p.seconds:.2f} s -> about "
            f"{p.episode_s:.2f} s per episode (reset + first decision + later decisions scaled to {p.full})"
        )
        lines.append(
            f"  estimate: about {_duration(self.estimate_s)} (episodes x {p.episode_s:.2f} s / parallel workers; "
            "PPO updates and process start-up not counted)"
        )
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def probe_episode(config: EnvConfig, spec: NetworkSpec, data: DatasetSplits) -> Probe:
    """One short real episode of ``spec`` at ``config`` (zero actions), timed (see the module doc).

    It runs on one torch thread, as every worker of the run does (several threads of a tiny network on a shared
    machine spin-wait, and the probe then times the waiting), after one untimed reset that pays the first call's
    costs (tracing the layers, the first kernels).
    """
    full = config.num_decisions
    short = min(full, PROBE_DECISIONS)
    env = SparsityEnv(
        config=config.replace(**spec.env_kwargs(), total_iterations=short * config.decision_interval), data=data
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        env.reset(seed=seed_start("benchmark"))
        start = time.perf_counter()
        env.reset(seed=seed_start("benchmark"))
        reset_s = time.perf_counter() - start
        steps = []
        action = np.zeros(len(env.layer_names), np.float32)  # one value per prunable layer
        for _ in range(short):
            tick = time.perf_counter()
            env.step(action)
            steps.append(time.perf_counter() - tick)
    finally:
        env.close()
        torch.set_num_threads(threads)
    later = steps[1:] or steps
    episode_s = reset_s + steps[0] + (full - 1) * float(np.mean(later))
    return Probe(spec.name, short, full, time.perf_counter() - start, episode_s)


def _parallel(cfg: TrainConfig) -> tuple[int, int]:
    """Workers of the pooled phases (tuning, prior, comparison) and of training."""
    cores = usable_cores()
    pooled = 1 if cfg.backend == "sequential" else min(cfg.workers or cores, cores)
    kind = cfg.vec_env if cfg.vec_env != "auto" else ("subproc" if cfg.n_envs > 1 else "dummy")
    training = 1 if kind == "dummy" else min(cfg.n_envs, cores)
    return pooled, training


def _training_work(cfg: TrainConfig, family: Family, pooled: int, training: int) -> list[Work]:
    """Prior choice, training, reward reference and periodic evaluation episodes of a training run."""
    run_dir = Path(cfg.run_dir)
    work = []
    if cfg.prior == "auto" and not (cfg.resume and (run_dir / PRIOR_RECORD).exists()):
        schedules = available_policies("schedule")
        what = f"{len(schedules)} schedules x {len(family.train)} train networks x {cfg.prior_seeds} seeds"
        work.append(Work("prior choice", len(schedules) * len(family.train) * cfg.prior_seeds, pooled, what))
    rollout = cfg.n_steps * cfg.n_envs
    steps = math.ceil(cfg.total_timesteps / rollout) * rollout
    decisions = cfg.env.num_decisions
    episodes = math.ceil(steps / decisions)
    what = f"{steps} timesteps in rollouts of {rollout} / {decisions} decisions per episode"
    work.append(Work("training", episodes, training, what))
    if cfg.reward == "paired":
        pool = training_entries(cfg, family) * cfg.seed_pool  # a run across settings: per setting
        reference = min(episodes, pool) if cfg.seed_pool else episodes
        what = f"at most one per training network and pool seed ({pool})" if cfg.seed_pool else "one per episode"
        work.append(Work("reward reference", reference, training, what))
    if cfg.eval_every:
        evaluations = 1 + steps // cfg.eval_every + (1 if steps % cfg.eval_every else 0)
        networks = family.heldout if cfg.select_on == "heldout" else family.train
        workers = pooled if cfg.backend == "process" else 1
        what = f"about {evaluations} evaluations x {len(networks)} networks x {cfg.eval_episodes} seeds"
        work.append(Work("periodic evaluation", evaluations * len(networks) * cfg.eval_episodes, workers, what))
    return work


def planned_work(cfg: TrainConfig, family: Family) -> list[Work]:
    """The phases before the searches: the tuning, and a training run's prior choice, training and evaluations."""
    run_dir = Path(cfg.run_dir)
    pooled, training = _parallel(cfg)
    work = []
    if cfg.tune_cells and cfg.task is not None:
        train = get_task(cfg.task).train
        cached = f"; fewer if run_dir/{CACHE_NAME} holds it" if (run_dir / CACHE_NAME).exists() else ""
        what = f"{len(cfg.tune_cells)} cells x {len(train)} train networks x {cfg.tune_seeds} seeds{cached}"
        work.append(Work("tuning", len(cfg.tune_cells) * len(train) * cfg.tune_seeds, pooled, what))
    if cfg.mode == "train" and cfg.prior == "search" and cfg.task is not None:
        work.append(prior_search_work(cfg, pooled))
    if cfg.mode == "train":
        work += _training_work(cfg, family, pooled, training)
    return work


def prior_search_work(cfg: TrainConfig, pooled: int) -> Work:
    """``--prior search``: the TPE study that picks the prior, its trials' episodes (search, then learn)."""
    assert cfg.task is not None  # TrainConfig refuses --prior search without a task
    budget = Budget(cfg.prior_search_budget, len(get_task(cfg.task).train) * cfg.search_seeds)
    held = "; fewer if run_dir/prior_search holds its study" if (Path(cfg.run_dir) / "prior_search").exists() else ""
    what = f"{budget.trials} trials x {budget.per_trial} episodes of --prior-search-budget {budget.episodes}{held}"
    return Work("prior search (Optuna TPE)", budget.trials * budget.per_trial, min(pooled, budget.per_trial), what)


def search_plan(cfg: TrainConfig, work: Sequence[Work]) -> Budget | None:
    """The budget of ``cfg``'s searches (``None``: no search), as the module describes.

    Raises:
        ValueError: A budget below one trial's episodes, or (``evaluate`` mode, no ``--search-budget``) a folder
            that records no PPO run.

    """
    if not searching(cfg):
        return None
    assert cfg.task is not None  # TrainConfig refuses a search without a task
    per_trial = len(get_task(cfg.task).train) * cfg.search_seeds
    if cfg.mode == "train" and not cfg.search_budget:
        counted = ("training", "reward reference", "prior search (Optuna TPE)")  # the learned policy's whole cost
        return Budget(sum(w.episodes for w in work if w.phase in counted), per_trial)
    return Budget(search_budget(cfg, ppo_run_dir(cfg)), per_trial)


def search_points(cfg: TrainConfig, budget: Budget | None) -> dict[str, str]:
    """``{label in the results: a point}`` standing for each search's best point (a point of its space) in the plan."""
    if budget is None:
        return {}
    point = searched_name({k: knob.choices[0] if knob.choices else knob.low for k, knob in SEARCH_SPACE.items()})
    spent = budget.trials * budget.per_trial
    return {f"{opponent_name(SAMPLER_OF[o])} ({spent} episodes)": point for o in searching(cfg)}


def search_work(cfg: TrainConfig, budget: Budget | None) -> list[Work]:
    """One phase per search: its trials' episodes on the pool."""
    if budget is None:
        return []
    pooled, _ = _parallel(cfg)
    given = "--search-budget" if cfg.search_budget else "the PPO run's training + reference episodes"
    if not cfg.search_budget and cfg.prior == "search":
        given += " + its prior search's"
    networks, seeds = budget.per_trial // cfg.search_seeds, cfg.search_seeds
    work = []
    for index, seed in enumerate(sampler_seeds(cfg)):
        for opponent in searching(cfg):
            sampler = SAMPLER_OF[opponent]
            folder = seed_folder(cfg.run_dir, index, seed)
            held = "; fewer if run_dir holds its study" if study_path(folder, sampler).exists() else ""
            episodes = budget.trials * budget.per_trial
            if index == 0 and sampler == "tpe" and cfg.prior == "search":  # the prior's trials are already spent
                held = "; it continues the prior's study"
                episodes -= prior_search_work(cfg, pooled).episodes
            what = (
                f"{budget.trials} trials x {networks} train networks x {seeds} seeds of a budget of "
                f"{budget.episodes} ({given}){held}"
            )
            phase = ("search (Optuna TPE)" if sampler == "tpe" else "random search") + (
                f", sampler seed {seed}" if index else ""
            )
            work.append(Work(phase, max(episodes, 0), min(pooled, budget.per_trial), what))
    return work


def comparison_work(cfg: TrainConfig, jobs: Sequence[GridJob], population: bool) -> Work:
    """The comparison's episodes: every job's (``population``: its networks are the held-out population's)."""
    pooled, _ = _parallel(cfg)
    settings = len(cfg.eval_targets) * len(cfg.eval_selectors)
    networks = f"{len({j.network for j in jobs})} networks" + (" of the held-out population" if population else "")
    what = (
        f"{len({j.policy_name for j in jobs})} policies x {networks} x {cfg.eval_seeds} seeds, schedules "
        f"and the learned policy at {settings} (target, selector) settings"
    )
    return Work("comparison", sum(j.episodes for j in jobs), pooled, what)


def showcase_work(cfg: TrainConfig) -> list[Work]:
    """The showcase's episodes (``train`` mode with ``--showcase``): each shipped policy and its card's cell."""
    if cfg.mode != "train" or not cfg.showcase:
        return []
    pooled, _ = _parallel(cfg)
    shown = [job for name in cfg.showcase for job in showcase_jobs(name, showcase_seeds(cfg))]
    what = f"{', '.join(cfg.showcase)} and the cells of their cards on their tasks' held-out networks"
    return [Work("showcase", sum(j.episodes for j in shown), pooled, what)]
