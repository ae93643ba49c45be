"""A generalist against its opponents in every (family, target) cell, at training and held-out targets.

``python -m agents.generalist_eval --run-dir runs/generalist --targets 0.01 0.02 0.03 0.05 0.1`` plays, on every
family's **held-out** networks at every target, with the same comparison seeds (``--eval-seeds`` from
``--eval-seed-start``, the run's own unless given) for every policy:

* ``generalist``: the run's model (``best_model.zip``, else ``model.zip``) with the env settings its schema
  requires (its action map and allocation: :func:`agents.schema.required_settings`), zero-shot at a target it
  never trained at;
* ``per-setting search``: (a) the point the setting's own search found, at a training target; at a held-out
  target (c) the point found at the family's nearest training target (``search@0.03 at 0.02``);
* ``one search for all``: (b) the one point searched over every setting at once.

The opponents' points come from ``<run-dir>/generalist/opponents.json`` (:mod:`agents.generalist_opponents`,
run first); without it the generalist plays alone. Episodes are logged (``generalist/comparison/
episodes.jsonl``: a killed evaluation resumes), and ``generalist/results.md`` / ``results.csv`` hold, per cell,
each policy's mean test accuracy and the generalist's paired difference with each opponent (percentage points,
95% bootstrap interval over seeds within networks, and its verdict: wins, ties or loses).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3 import PPO

from agents.agent import load_agent
from agents.comparison import baseline_factory
from agents.generalist import family_configs, train_targets
from agents.generalist_opponents import FOLDER, GENERALIST, load_run_config
from agents.preflight import model_path
from agents.schema import required_settings
from baselines import env_kwargs
from sparsity_gym.core.io import atomic_write_text
from sparsity_gym.env.config import EnvConfig
from sparsity_gym.experiments.episode_log import EpisodeLog, file_digest, run_logged
from sparsity_gym.experiments.evaluation import EpisodeResult, seeds_from
from sparsity_gym.experiments.families import get_family
from sparsity_gym.experiments.grid import GridJob
from sparsity_gym.experiments.report import write_csv
from sparsity_gym.experiments.settings_env import setting_label
from sparsity_gym.experiments.statistics import compare

PER_SETTING, JOINT = "per-setting search", "one search for all"
LOG = "comparison/episodes.jsonl"


def opponent_points(summary: Mapping[str, Any], family: str, target: float) -> dict[str, str]:
    """``{label: point}`` of the opponents in cell ``family@target`` from ``opponents.json`` (empty without)."""
    cell = setting_label(family, target)
    points = {}
    if cell in summary.get("per_setting", {}):
        points[PER_SETTING] = summary["per_setting"][cell]["best"]
    elif cell in summary.get("transfer", {}):
        points[PER_SETTING] = summary["transfer"][cell]["policy"]
    if "joint" in summary:
        points[JOINT] = summary["joint"]["best"]
    return points


def cell_jobs(
    config: EnvConfig,
    networks: Sequence[Any],
    target: float,
    model: Path,
    settings: Mapping[str, Any],
    points: Mapping[str, str],
    seeds: Sequence[int],
) -> list[GridJob]:
    """The generalist (with its required ``settings``) and every opponent's point on ``networks`` at ``target``."""
    learned = functools.partial(load_agent, str(model), warn_outside=False)
    jobs = []
    for spec in networks:
        base = config.replace(**spec.env_kwargs(), target_density=target)
        plain = base.replace(allocation="policy", allocation_tilt=False)
        jobs.append(GridJob(GENERALIST, learned, base.replace(**settings), seeds, "heldout", spec.name))
        jobs += [
            GridJob(label, baseline_factory(p), plain.replace(**env_kwargs(p)), seeds, "heldout", spec.name)
            for label, p in points.items()
        ]
    return jobs


def cell_rows(results: Sequence[EpisodeResult], cell: str, points: Mapping[str, str]) -> list[dict[str, Any]]:
    """One row per policy of a cell: its mean test accuracy, and the generalist minus it (points, interval)."""
    rows = []
    for label in (GENERALIST, *points):
        mine = [r.test_accuracy for r in results if r.policy == label]
        row: dict[str, Any] = {"cell": cell, "policy": label, "point": points.get(label, ""), "episodes": len(mine)}
        row["test_accuracy"] = float(np.mean(mine)) if mine else float("nan")
        if label != GENERALIST:
            pooled = compare(results, GENERALIST, label).pooled
            row["generalist_minus"] = "" if pooled is None else pooled.scaled(100).text()
            row["verdict"] = "" if pooled is None else pooled.verdict
        rows.append(row)
    return rows


def run_generalist_eval(
    run_dir: str | Path,
    targets: Sequence[float],
    eval_seeds: int = 0,
    eval_seed_start: int | None = None,
    **grid: Any,
) -> list[dict[str, Any]]:
    """Play every cell (module doc), write ``generalist/results.md`` and ``results.csv``; the rows."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    model = model_path(cfg)
    if model is None:
        raise ValueError(f"run_dir={str(run_dir)!r} is not allowed: no best_model.zip or model.zip to evaluate")
    settings = required_settings(PPO.load(model, device="cpu").policy.schema)
    record = run_dir / FOLDER / "opponents.json"
    summary = json.loads(record.read_text(encoding="utf-8")) if record.exists() else {}
    start = cfg.eval_seed_start if eval_seed_start is None else eval_seed_start
    seeds = tuple(seeds_from(start, eval_seeds or cfg.eval_seeds))
    cells: dict[str, tuple[list[GridJob], dict[str, str]]] = {}
    for family, config in family_configs(cfg).items():
        for target in targets:
            points = opponent_points(summary, family, target)
            jobs = cell_jobs(config, get_family(family).heldout, target, model, settings, points, seeds)
            cells[setting_label(family, target)] = (jobs, points)
    versions = {GENERALIST: file_digest(model)}
    for _, points in cells.values():
        versions.update(points)  # another point under the same label: new episodes
    log = EpisodeLog(run_dir / FOLDER / LOG, fresh=False)
    jobs = [job for cell_jobs_, _ in cells.values() for job in cell_jobs_]
    results = run_logged(jobs, log, versions, progress=cfg.progress_bar, **grid)
    rows, done = [], 0
    for cell, (cell_jobs_, points) in cells.items():
        count = sum(len(j.seeds) for j in cell_jobs_)
        rows += cell_rows(results[done : done + count], cell, points)
        done += count
    write_csv(run_dir / FOLDER / "results.csv", rows)
    atomic_write_text(run_dir / FOLDER / "results.md", results_markdown(rows, train_targets(cfg), seeds))
    return rows


def results_markdown(rows: Sequence[dict[str, Any]], trained: Sequence[float], seeds: Sequence[int]) -> str:
    """The cells' table: training targets marked, held-out ones zero-shot."""
    lines = [
        "# A generalist against its opponents, every (family, target) cell",
        "",
        f"Held-out networks of each family, seeds {', '.join(map(str, seeds))}; training targets "
        f"{', '.join(f'{t:g}' for t in trained)} (other targets: zero-shot). Test accuracy; the generalist minus "
        "each opponent in points, 95% bootstrap interval over seeds within networks.",
        "",
        "| Cell | Policy | Point | Test accuracy (%) | Generalist minus it | Verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = float(r["cell"].rsplit("@", 1)[1])
        cell = r["cell"] + ("" if any(np.isclose(target, t) for t in trained) else " (held out)")
        lines.append(
            f"| {cell} | {r['policy']} | {r['point'] and '`' + r['point'] + '`'} | {100 * r['test_accuracy']:.2f} "
            f"| {r.get('generalist_minus', '')} | {r.get('verdict', '')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (module doc); a bad value is one line and exit status 2."""
    parser = argparse.ArgumentParser(prog="python -m agents.generalist_eval", description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", required=True, help="the folder of a run across settings (train_agent.py)")
    parser.add_argument("--targets", nargs="+", type=float, required=True, help="targets of the cells")
    parser.add_argument("--eval-seeds", type=int, default=0, help="seeds per network (0: the run's --eval-seeds)")
    parser.add_argument("--eval-seed-start", type=int, default=None, help="first seed (default: the run's)")
    parser.add_argument("--backend", default="process", help="sequential, process or ray")
    parser.add_argument("--workers", type=int, default=0, help="parallel workers (0: one per usable core)")
    args = parser.parse_args(argv)
    try:
        rows = run_generalist_eval(
            args.run_dir,
            args.targets,
            args.eval_seeds,
            args.eval_seed_start,
            backend=args.backend,
            workers=args.workers or None,
        )
    except ValueError as exc:
        print(f"generalist_eval: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(f"{len(rows)} rows: {Path(args.run_dir) / FOLDER / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
