"""A generalist's search opponents at its budget, and the cost to catch up with it at held-out targets.

``python -m agents.run.generalist_opponents --run-dir runs/generalist --heldout-targets 0.02 0.05`` reads a run across
settings (``train_agent.py --task mnist1d_mlp --also-task mnist1d_cnn --train-targets 0.01 0.03 0.1``) from its
folder and runs, on the train splits only (validation accuracy, the search seeds ``seeds("tuning",
--search-seeds)``), with the PPO run's episodes as the budget (:func:`agents.reports.opponent_runs.search_budget`: its
training plus the paired reward reference's, or its ``--search-budget``):

* (a) one TPE search per setting (family × training target), the budget split equally
  (:func:`sparsity_gym.experiments.settings_search.run_setting_searches`);
* (b) one TPE search of one point for every setting, scored on the mean over settings, with the whole budget;
* (c) at each held-out target, the per-setting point found at the nearest training target of the same family;
* the catch-up: at each held-out target and family, the generalist's zero-shot validation accuracy on the
  family's train networks (same seeds), then a fresh TPE study on that setting (``--catch-up-budget`` episodes,
  default the generalist's budget), the episodes before its incumbent reaches that accuracy, and the break-even
  count of settings (:mod:`sparsity_gym.experiments.catch_up`).

Everything goes to ``<run-dir>/generalist/``: ``opponents.json`` (the points, values and costs),
``catch_up.png``, and the studies (``per_setting/``, ``joint/``, ``catch_up/``), which resume when killed.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agents.ppo.agent import load_agent
from agents.reports.opponent_runs import search_budget
from agents.reports.tuned import prior_from_cell, tune_run
from agents.run.preflight import model_path
from agents.settings.generalist import family_configs, train_targets
from agents.settings.train_config import TrainConfig
from baselines import SEARCH_SPACE, policy_cell, searched_name
from sparsity_gym.core.io import atomic_write_text
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.experiments.catch_up import break_even, catch_up, incumbent_curve, plot_catch_up, study_values
from sparsity_gym.experiments.families import get_family
from sparsity_gym.experiments.search import run_search, study_path
from sparsity_gym.experiments.seeds import seeds as seed_range
from sparsity_gym.experiments.settings_env import expand_settings, setting_label
from sparsity_gym.experiments.settings_search import (
    run_joint_search,
    run_setting_searches,
    setting_networks,
    transfer_plan,
)
from sparsity_gym.experiments.tuning import Cell, score_policies

GENERALIST = "generalist"
FOLDER = "generalist"


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` a training run wrote to ``run_dir/config.json`` (JSON lists back as tuples).

    Raises:
        ValueError: No ``config.json`` there.

    """
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise ValueError(f"run_dir={str(run_dir)!r} is not allowed: no config.json; expected a training run's folder")
    recorded = json.loads(path.read_text(encoding="utf-8"))

    def plain(values: Mapping[str, Any]) -> dict[str, Any]:
        return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}

    env = EnvConfig(**plain(recorded.pop("env")))
    return TrainConfig(env=env, **{**plain(recorded), "run_dir": str(run_dir), "mode": "evaluate", "resume": True})


def played_config(cfg: TrainConfig, run_dir: Path) -> TrainConfig:
    """``cfg`` with the env the policy trained on: under ``--prior tuned``, the tuned cell's allocation."""
    table = tune_run(cfg, run_dir)  # read back from the run's tuning.json
    if cfg.prior == "tuned" and table is not None:
        return dataclasses.replace(cfg, env=prior_from_cell(table.best, cfg.env)[1])
    return cfg


def setting_cells(cfg: TrainConfig, targets: Sequence[float], **overrides: Any) -> dict[str, dict[str, EnvConfig]]:
    """``{family@target: {family@target/network: config}}`` of every family's train split at ``targets``."""
    groups = {name: (get_family(name).train, config) for name, config in family_configs(cfg).items()}
    return setting_networks(expand_settings(groups, targets), **overrides)


def zero_shot(path: Path, cells: Mapping[str, Mapping[str, EnvConfig]], seeds: Sequence[int], **grid: Any) -> dict:
    """``{setting: the model's mean validation accuracy}`` on each setting's networks and seeds (train split)."""
    cell = Cell(GENERALIST, functools.partial(load_agent, str(path), warn_outside=False))
    return {
        name: score_policies([cell], nets, seeds, "train", None, **grid).mean_val(GENERALIST)
        for name, nets in cells.items()
    }


def run_generalist_opponents(
    run_dir: str | Path,
    heldout_targets: Sequence[float],
    catch_up_budget: int = 0,
    sampler: str = "tpe",
    **grid: Any,
) -> dict[str, Any]:
    """Run (a), (b), (c) and the catch-up of the module doc for the run in ``run_dir``; the summary it writes."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    out = run_dir / FOLDER
    budget = search_budget(cfg, run_dir)
    seeds = seed_range("tuning", cfg.search_seeds)
    search = {"seed": cfg.seed, "progress": cfg.progress_bar, **grid}
    cells = setting_cells(cfg, train_targets(cfg), observations=())
    args = (sampler, SEARCH_SPACE, searched_name, policy_cell, cells, seeds, budget)
    per_setting = run_setting_searches(*args, out / "per_setting", **search)
    joint = run_joint_search(*args, out, **search)
    summary: dict[str, Any] = {
        "budget": budget,
        "seeds": list(seeds),
        "per_setting": {k: _result(r) for k, r in per_setting.items()},
        "joint": _result(joint),
        "transfer": {},
        "catch_up": {},
    }
    for family in family_configs(cfg) if heldout_targets else ():
        found = {t: per_setting[setting_label(family, t)].best for t in train_targets(cfg)}
        for move in transfer_plan(found, heldout_targets):
            label = setting_label(family, move.target)
            summary["transfer"][label] = {"label": move.label, "source": move.source, "policy": move.policy}
    if heldout_targets:
        summary["catch_up"] = catch_up_summary(
            cfg, run_dir, heldout_targets, catch_up_budget or budget, sampler, search
        )
    atomic_write_text(out / "opponents.json", json.dumps(summary, indent=2))
    return summary


def catch_up_summary(
    cfg: TrainConfig, run_dir: Path, targets: Sequence[float], budget: int, sampler: str, search: dict
) -> dict[str, Any]:
    """The generalist's zero-shot accuracy, each fresh study's catch-up cost and the break-even count; the plot."""
    path = model_path(cfg)
    if path is None:
        raise ValueError(f"run_dir={str(run_dir)!r} is not allowed: no best_model.zip or model.zip to catch up with")
    seeds = seed_range("tuning", cfg.search_seeds)
    grid = {k: v for k, v in search.items() if k in ("backend", "workers")}
    zero = zero_shot(path, setting_cells(played_config(cfg, run_dir), targets), seeds, progress=False, **grid)
    folder = run_dir / FOLDER / "catch_up"
    costs, curves = [], {}
    for name, nets in setting_cells(cfg, targets, observations=()).items():
        study = folder / name
        run_search(sampler, SEARCH_SPACE, searched_name, policy_cell, nets, seeds, budget, study, **search)
        values, per_trial = study_values(study_path(study, sampler), f"search_{sampler}")
        costs.append(catch_up(values, per_trial, zero[name], name))
        curves[name] = incumbent_curve(values, per_trial)
    agent = search_budget(dataclasses.replace(cfg, search_budget=0), run_dir)
    even = break_even(agent, costs)
    plot_catch_up(run_dir / FOLDER / "catch_up.png", curves, zero, agent, "fresh TPE search vs the generalist")
    return {
        "generalist_episodes": agent,
        "zero_shot_val": zero,
        "settings": {c.setting: {**dataclasses.asdict(c), "text": c.text} for c in costs},
        "break_even": {**dataclasses.asdict(even), "text": even.text},
    }


def _result(result: Any) -> dict[str, Any]:
    return {
        "best": result.best,
        "value": result.best_value,
        "trials": result.trials,
        "episodes": result.episodes,
        "budget": result.budget.episodes,
        "seconds": round(result.seconds, 1),
    }


def cli_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The generalist commands' shared flags: ``--run-dir``, the grid's ``--backend`` and ``--workers``."""
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=description)
    parser.add_argument("--run-dir", required=True, help="the folder of a run across settings (train_agent.py)")
    parser.add_argument("--backend", default="process", help="sequential, process or ray")
    parser.add_argument("--workers", type=int, default=0, help="parallel workers (0: one per usable core)")
    return parser


def run_cli(name: str, call: Callable[[dict[str, Any]], str], args: argparse.Namespace) -> int:
    """``call(grid)`` with the grid's backend and workers from ``args``, its text printed (exit status 0).

    A ``ValueError`` is one line on stderr and exit status 2.
    """
    try:
        text = call({"backend": args.backend, "workers": args.workers or None})
    except ValueError as exc:
        print(f"{name}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (module doc); a bad value is one line and exit status 2."""
    parser = cli_parser("agents.run.generalist_opponents", __doc__.split("\n")[0])
    parser.add_argument("--heldout-targets", nargs="*", type=float, default=[], help="targets never trained at")
    parser.add_argument("--catch-up-budget", type=int, default=0, help="episodes of each fresh study (0: the run's)")
    parser.add_argument("--sampler", default="tpe", choices=("tpe", "random"), help="the searches' sampler")
    args = parser.parse_args(argv)

    def call(grid: dict[str, Any]) -> str:
        summary = run_generalist_opponents(
            args.run_dir, args.heldout_targets, args.catch_up_budget, args.sampler, **grid
        )
        return json.dumps(summary.get("catch_up", {}).get("break_even", {}), indent=1)

    return run_cli("generalist_opponents", call, args)


if __name__ == "__main__":
    sys.exit(main())
