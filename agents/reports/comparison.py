"""The comparison on held-out networks: every baseline and the learned policy on the same networks and seeds.

Schedules and the learned policy run at every (selector, target) of the comparison; a criterion method runs once
per network with the env settings it needs. Episodes go through :func:`sparsity_gym.experiments.grid.run_grid`
(and, with a run folder, the resumable episode log); the report is written by :func:`write_reports`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.ppo.agent import load_agent
from agents.settings.train_config import TrainConfig
from baselines import available_policies, env_kwargs, make_policy
from sparsity_gym.core.io import atomic_write_text
from sparsity_gym.experiments.comparison_report import (
    add_paired_columns,
    episode_table,
    headline,
    headline_results,
    plot_accuracy_vs_cost,
    plot_schedules,
    reference_for,
    summarize,
    write_csv,
    write_markdown,
)
from sparsity_gym.experiments.episode_log import EpisodeLog, file_digest, run_logged
from sparsity_gym.experiments.evaluation import EpisodeResult, seeds_from
from sparsity_gym.experiments.families import NetworkSpec
from sparsity_gym.experiments.grid import GridJob, run_grid
from sparsity_gym.experiments.opponents import (
    AgentCost,
    Opponent,
    opponent_columns,
    opponent_rows,
    opponents_section,
    report_opponents,
)
from sparsity_gym.experiments.paired_intervals import compare as compare_policies
from sparsity_gym.experiments.paired_intervals import oracle, setting_of

LEARNED = "ppo"
COMPARISON_LOG = "comparison/episodes.jsonl"


def baseline_factory(name: str) -> Callable[[Any], Any]:
    """``env -> policy`` of the registered baseline ``name`` (picklable: a worker process can build it)."""
    return functools.partial(make_policy, name)


def comparison_jobs(
    cfg: TrainConfig,
    specs: Sequence[NetworkSpec],
    split_of: Callable[[NetworkSpec], str],
    model_path: Path | None,
    opponents: Mapping[str, str] | None = None,
) -> list[GridJob]:
    """Every chosen baseline, every tuned grid cell and the learned policy on every network, with the same seeds.

    Schedules, cells (``cfg.tune_cells``), the search opponents' best points (``opponents``: ``{label in the
    results: policy name}``, e.g. ``{"search (1014 episodes)": "poly[...]+erk"}``) and the learned policy run at
    every (selector, target) of the comparison; a criterion method runs once per network with the env settings
    it needs (``baselines.env_kwargs(name)``). The learned policy runs on ``cfg.env`` as it trained (its
    allocation rule and tilt included); a baseline runs without them (``allocation="policy"``), plus its own
    settings (a cell's ``+rule``).
    """
    seeds = seeds_from(cfg.eval_seed_start, cfg.eval_seeds)
    chosen = cfg.baseline_names()
    schedules = [n for n in available_policies("schedule") if n in chosen]
    schedules += [n for n in chosen if n not in available_policies()]  # cells and static points by name
    handcrafted = [*schedules, *(c for c in cfg.tune_cells if c not in schedules)]
    criteria = [n for n in available_policies("criterion") if n in chosen]
    fixed = {**{n: n for n in handcrafted}, **dict(opponents or {})}  # label -> policy name
    jobs = []
    for spec in specs:
        base = cfg.env.replace(**spec.env_kwargs())
        plain = base.replace(allocation="policy", allocation_tilt=False)
        split, network = split_of(spec), spec.name
        for target in cfg.eval_targets:
            for selector in cfg.eval_selectors:
                setting = {"selector": selector, "target_density": target}
                jobs += [
                    GridJob(
                        label,
                        baseline_factory(name),
                        plain.replace(**setting, **env_kwargs(name)),
                        seeds,
                        split,
                        network,
                    )
                    for label, name in fixed.items()
                ]
                if model_path is not None:
                    learned = functools.partial(load_agent, str(model_path), warn_outside=False)
                    jobs.append(GridJob(LEARNED, learned, base.replace(**setting), seeds, split, network))
        jobs += [
            GridJob(n, baseline_factory(n), plain.replace(**env_kwargs(n)), seeds, split, network) for n in criteria
        ]
    return jobs


def compare(
    cfg: TrainConfig,
    specs: Sequence[NetworkSpec],
    split_of: Callable[[NetworkSpec], str],
    model_path: Path | None,
    run_dir: Path | None = None,
    opponents: Mapping[str, str] | None = None,
) -> list[EpisodeResult]:
    """Run :func:`comparison_jobs` with ``sparsity_gym.experiments.grid.run_grid`` on ``cfg.backend``.

    With ``run_dir``, every finished episode is appended to ``run_dir/comparison/episodes.jsonl``
    (:mod:`sparsity_gym.experiments.episode_log`); ``cfg.resume`` runs only the episodes missing there, a fresh
    run starts the file anew. The learned policy's episodes are keyed by the model file's digest too, an
    opponent's by its point's name.
    """
    jobs = comparison_jobs(cfg, specs, split_of, model_path, opponents)
    workers = cfg.workers or None
    if run_dir is None:
        return run_grid(jobs, backend=cfg.backend, workers=workers, progress=cfg.progress_bar)
    versions = {LEARNED: file_digest(model_path)} if model_path is not None else {}  # a new model: new episodes
    versions.update(opponents or {})  # another best point under the same label: new episodes
    log = EpisodeLog(run_dir / COMPARISON_LOG, fresh=not cfg.resume)
    return run_logged(jobs, log, versions, backend=cfg.backend, workers=workers, progress=cfg.progress_bar)


def write_reports(
    cfg: TrainConfig,
    results: list[EpisodeResult],
    run_dir: Path,
    title: str,
    notes: Sequence[str] = (),
    reference: str | None = None,
    opponents: Sequence[Opponent] = (),
    agent: AgentCost | None = None,
    showcase: Sequence[str] = (),
) -> list[dict]:
    """``results.csv``, ``episodes.csv`` + ``configs.json``, ``results.md``, ``opponents.csv`` and the plots.

    Every policy is compared with ``reference`` (the tuned handcrafted schedule when given; else the best
    handcrafted schedule by validation accuracy on the comparison, labelled so), paired by seed
    (``sparsity_gym.experiments.paired_intervals``). The handcrafted policies (the oracle's choices) are the registered
    schedules and ``cfg.tune_cells``. ``opponents`` are the ``opponents.json`` records
    (:func:`agents.reports.costs.report_costs`): with the tuned cell and the oracle they are the learned policy's
    opponents (:func:`sparsity_gym.experiments.opponents.report_opponents`), side by side in ``results.md`` with
    their costs and ``agent``'s, per network in ``results.csv``'s ``vs_<opponent>_*`` columns and in
    ``opponents.csv``. ``results.md`` opens with the
    verdicts at a glance: this run's (:func:`run_verdict`) and the ``showcase`` lines (:mod:`agents.run.showcase`).
    """
    schedules = (*available_policies("schedule"), *cfg.tune_cells)
    env = cfg.env
    headline_setting = (env.selector, env.regrowth, env.granularity, env.target_density)
    if not any(setting_of(r) == headline_setting and r.policy in schedules for r in results):  # not compared: the first
        headline_setting = next((setting_of(r) for r in results if r.policy in schedules), headline_setting)
    selector, target = headline_setting[0], headline_setting[3]
    chosen, setting = headline_results(results, selector, target, LEARNED, schedules)
    rivals = report_opponents(opponents, reference, oracle(chosen, schedules, setting))
    rows = add_paired_columns(summarize(results), results, schedules, headline_setting, reference)
    rows = opponent_columns(rows, results, rivals)
    write_csv(run_dir / "results.csv", rows)
    episodes, configs = episode_table(results)
    write_csv(run_dir / "episodes.csv", episodes)
    atomic_write_text(run_dir / "configs.json", json.dumps(configs, indent=2, sort_keys=True, default=str))
    population = cfg.heldout == "population"  # named networks: the seeds resampled, the networks held fixed
    section = opponents_section(results, selector, target, rivals, agent, population=population)
    if section:
        write_csv(run_dir / "opponents.csv", opponent_rows(results, selector, target, rivals, population=population))
    summary = headline(results, selector, target, LEARNED, schedules, reference=reference)
    glance = [line for line in (run_verdict(chosen, setting, schedules, reference), *showcase) if line]
    top = ["## At a glance", "", *[f"- {line}" for line in glance], ""] if glance else []
    write_markdown(run_dir / "results.md", rows, title=title, preamble=[*top, *notes, "", *section, "", summary])
    # Schedules of the setting PPO trained on (or of the first one compared), one plot per network.
    plot_setting = (cfg.env.selector, cfg.env.target_density)
    if not any((r.selector, r.target_density) == plot_setting for r in results):
        plot_setting = (results[0].selector, results[0].target_density)
    for i, network in enumerate(dict.fromkeys(r.network for r in results)):
        here = [r for r in results if (r.selector, r.target_density) == plot_setting and r.network == network]
        if not here:
            continue
        label = f"{network} ({here[0].split}), selector {plot_setting[0]}, target density {plot_setting[1]}"
        roles = highlights(rivals, network)
        plot_schedules(run_dir / f"schedules_{network}.png", here, title=label, highlight=roles)
        if i == 0:
            plot_schedules(run_dir / "schedules.png", here, title=label, highlight=roles)
    plot_accuracy_vs_cost(
        run_dir / "accuracy_vs_density.png",
        rows,
        title=f"{cfg.env.dataset}: every method",
        highlight=highlights(rivals),
    )
    return rows


def run_verdict(
    chosen: Sequence[EpisodeResult], setting: tuple, schedules: Sequence[str], reference: str | None
) -> str | None:
    """One line: this run's learned policy against its reference, pooled over the compared networks (or ``None``)."""
    ref = reference_for(chosen, setting, schedules, reference)
    networks = sorted({r.network for r in chosen if r.policy == LEARNED})
    if ref is None or not networks:
        return None
    pooled = compare_policies(chosen, LEARNED, ref, setting).pooled
    if pooled is None:
        return None
    pooled = pooled.scaled(100)
    return (
        f"**This run's learned policy** (`{LEARNED}`, trained in this run): learned − `{ref}` on "
        f"{', '.join(networks)} (split {chosen[0].split}), paired by seed: **{pooled.text()} points, "
        f"{pooled.verdict}** (details in the headline below)."
    )


def highlights(rivals: Sequence[Opponent], network: str | None = None) -> dict[str, str]:
    """``{policy: role}`` drawn in colour: the learned policy and each opponent's policy (the oracle's on ``network``).

    Without a ``network`` the oracle's cells are left out (they differ by network).
    """
    roles = {LEARNED: "learned"}
    for o in rivals:
        policy = o.policy_on(network)
        if policy is not None:
            role = "reference" if o.name == "tuned" else "random search" if o.name == "random" else o.name
            roles[policy] = f"{roles[policy]}, {role}" if policy in roles else role
    return roles


def prior_note(prior: str, results: Sequence[EpisodeResult], setting: tuple[str, float | None]) -> str:
    """One line: the prior, and how far the learned schedules are from it (mean absolute density difference).

    Compares the learned policy's and the prior schedule's episodes of the same network and seed at
    ``setting`` (selector, target), decision by decision and layer by layer.
    """
    if prior == "none":
        return "Prior: none (the actor alone sets every density)."
    by_key = {(r.policy, r.network, r.seed): r for r in results if (r.selector, r.target_density) == tuple(setting)}
    gaps = [
        np.abs(np.asarray(r.schedule) - np.asarray(by_key[(prior, r.network, r.seed)].schedule)).mean()
        for (policy, network, seed), r in by_key.items()
        if policy == LEARNED and (prior, network, seed) in by_key
    ]
    gap = f"{np.mean(gaps):.3f}" if gaps else "n/a (the prior schedule was not in the comparison)"
    return (
        f"Prior: the learned actor is a residual on the `{prior}` schedule; mean absolute difference between the "
        f"learned and the `{prior}` densities (every decision and layer, selector {setting[0]}, target "
        f"{setting[1]}): {gap}."
    )
