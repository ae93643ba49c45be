"""A shipped policy measured inside a run, on its own task: the second headline of the default run.

The default run trains on digits, where no schedule has room to win (the room table's gap is a third of a point),
so its own verdict is a tie. So that its report also shows what a learned schedule can do, ``--showcase NAME``
(the default preset names ``mnist1d_mlp@0.01``) plays each named shipped policy (:mod:`agents.policies`) against
the tuned handcrafted cell its card names, on its task's named held-out networks with the run's comparison seeds,
paired seed by seed, and :func:`showcase_lines` puts the verdict at the top of ``results.md``, labelled with what
it is. Its episodes are logged in ``run_dir/showcase/episodes.jsonl`` (a resumed run reuses them) and written to
``showcase.csv``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from agents.policies import card, load, model_path
from agents.ppo.agent import load_agent
from agents.reports.comparison import baseline_factory
from agents.settings.presets import TASK_PRESET
from agents.settings.train_config import TrainConfig
from baselines import env_kwargs
from sparsity_gym.env.tasks import get_task, task_config
from sparsity_gym.experiments.comparison_report import summarize, write_csv
from sparsity_gym.experiments.episode_log import EpisodeLog, file_digest, run_logged
from sparsity_gym.experiments.evaluation import EpisodeResult, seeds_from
from sparsity_gym.experiments.grid import GridJob
from sparsity_gym.experiments.paired_intervals import compare

SHOWCASE_LOG = "showcase/episodes.jsonl"


def showcase_jobs(name: str, seeds: Sequence[int]) -> list[GridJob]:
    """The shipped policy ``name`` and its card's reference cell on its task's named held-out networks."""
    shipped = card(name)
    task = get_task(shipped.task)
    settings = load(name, warn_outside=False).settings
    learned = functools.partial(load_agent, str(model_path(name)), warn_outside=False)
    jobs = []
    for network in task.heldout:
        base = task_config(task, network=network, target_density=shipped.target_density)
        jobs.append(GridJob(name, learned, base.replace(**settings), seeds, "heldout", network))
        reference = base.replace(**env_kwargs(shipped.reference))
        jobs.append(
            GridJob(shipped.reference, baseline_factory(shipped.reference), reference, seeds, "heldout", network)
        )
    return jobs


def showcase_seeds(cfg: TrainConfig) -> tuple[int, ...]:
    """The seeds a showcased policy plays: its task runs' comparison seeds (``eval_seed_start`` and the next ones,
    as many as a task run compares on), so the verdict is the one its card reports on these networks.
    """  # noqa: D205
    return tuple(seeds_from(cfg.eval_seed_start, TASK_PRESET["eval_seeds"]))


def run_showcase(cfg: TrainConfig, run_dir: Path) -> list[EpisodeResult]:
    """Every episode of every ``cfg.showcase`` policy and its reference (logged; a resumed run reuses them)."""
    seeds = showcase_seeds(cfg)
    jobs = [job for name in cfg.showcase for job in showcase_jobs(name, seeds)]
    if not jobs:
        return []
    versions = {name: file_digest(model_path(name)) for name in cfg.showcase}
    log = EpisodeLog(run_dir / SHOWCASE_LOG, fresh=not cfg.resume)
    workers = cfg.workers or None
    results = run_logged(jobs, log, versions, backend=cfg.backend, workers=workers, progress=cfg.progress_bar)
    write_csv(run_dir / "showcase.csv", summarize(results))
    return results


def showcase_lines(cfg: TrainConfig, results: Sequence[EpisodeResult]) -> list[str]:
    """Markdown: each showcased policy against its reference, pooled and per network, with intervals."""
    lines = []
    for name in cfg.showcase:
        shipped = card(name)
        comparison = compare(results, name, shipped.reference)
        if comparison.pooled is None:
            continue
        per_network = "; ".join(
            f"`{net}` {interval.scaled(100).text()} ({interval.verdict})"
            for net, interval in comparison.per_network.items()
        )
        pooled = comparison.pooled.scaled(100)
        lines.append(
            f"**Shipped policy `{name}` on its own task** (`{shipped.task}`, global density "
            f"{shipped.target_density:g}; trained there, not in this run; its card: `python -m agents.policies show "
            f"{name}`): learned − tuned handcrafted cell `{shipped.reference}` on the task's held-out networks, "
            f"{len(showcase_seeds(cfg))} seeds each, paired: "
            f"**{pooled.text()} points, {pooled.verdict}** ({per_network}); test accuracy in `showcase.csv`."
        )
    return lines
