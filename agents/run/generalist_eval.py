"""A generalist against its opponents in every (family, target) cell, at training and held-out targets.

``python -m agents.run.generalist_eval --run-dir runs/generalist --targets 0.01 0.02 0.03 0.05 0.1`` plays, on every
family's **held-out** networks at every target (``--heldout population``: each family's held-out population,
:func:`sparsity_gym.experiments.populations.comparison_family`), with the same comparison seeds (``--eval-seeds``
from ``--eval-seed-start``, the run's own unless given) for every policy:

* ``generalist``: the run's model (``best_model.zip``, else ``model.zip``) with the env settings its schema
  requires (its action map and allocation: :func:`agents.ppo.schema.required_settings`), zero-shot at a target it
  never trained at;
* ``per-setting search``: (a) the point the setting's own search found, at a training target; at a held-out
  target (c) the point found at the family's nearest training target (``search@0.03 at 0.02``);
* ``one search for all``: (b) the one point searched over every setting at once;
* ``tuned cell`` (with ``--tuned``): (d) the run's grid (``--tune-cells``) tuned on the cell's train split;
* ``single-target <name>``: (e) every shipped policy trained on the cell's task at the cell's target
  (``mnist1d_mlp@0.01`` in cell ``mnist1d_mlp@0.01``), with the settings its schema requires.

The opponents' points come from ``<run-dir>/generalist/opponents.json`` (:mod:`agents.run.generalist_opponents`,
run first); without it the generalist plays alone. Episodes are logged (``generalist/comparison/
episodes.jsonl``, keyed by each cell's own points and model files: a killed evaluation resumes, a population
reuses its named networks' episodes, and a cell whose point changed plays again), and
``generalist/results.md`` / ``results.csv`` (``results_population.*`` for the population) hold, per cell, each
policy's mean test accuracy and the generalist's paired difference with each opponent (percentage points, 95%
bootstrap interval over seeds within networks, or on a population hierarchical: networks drawn, then seeds; and
its verdict: wins, ties or loses).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3 import PPO

from agents import policies
from agents.ppo.agent import load_agent
from agents.ppo.schema import required_settings
from agents.reports.comparison import baseline_factory
from agents.reports.tuned import tuning_overrides
from agents.run.generalist_opponents import FOLDER, GENERALIST, cli_parser, load_run_config, run_cli
from agents.run.preflight import model_path
from agents.settings.generalist import family_configs, train_targets
from agents.settings.train_config import TrainConfig
from baselines import env_kwargs, policy_cell
from sparsity_gym.core.io import atomic_write_text
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.experiments.comparison_report import write_csv
from sparsity_gym.experiments.episode_log import EpisodeLog, file_digest, run_logged
from sparsity_gym.experiments.evaluation import EpisodeResult, seeds_from
from sparsity_gym.experiments.grid import GridJob
from sparsity_gym.experiments.paired_intervals import compare
from sparsity_gym.experiments.populations import HELDOUT, comparison_family
from sparsity_gym.experiments.seeds import seeds as seed_range
from sparsity_gym.experiments.settings_env import setting_label
from sparsity_gym.experiments.tuning import tune

PER_SETTING, JOINT, TUNED = "per-setting search", "one search for all", "tuned cell"
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


def results_path(run_dir: str | Path, heldout: str, suffix: str = ".md") -> Path:
    """``generalist/results.md`` (named held-out networks) or ``results_population.md``, or the ``.csv`` beside it."""
    stem = "results_population" if heldout == "population" else "results"
    return Path(run_dir) / FOLDER / f"{stem}{suffix}"


def cell_jobs(
    config: EnvConfig,
    networks: Sequence[Any],
    target: float,
    models: Mapping[str, tuple[Path, Mapping[str, Any]]],
    points: Mapping[str, str],
    seeds: Sequence[int],
) -> list[GridJob]:
    """Every learned policy and every opponent's point on ``networks`` at ``target``.

    ``models``: ``{label: (model file, the env settings it requires)}``, the generalist first; ``points``:
    ``{label: static point or cell}`` (played without the allocation tilt, with their own settings).
    """
    jobs = []
    for spec in networks:
        base = config.replace(**spec.env_kwargs(), target_density=target)
        plain = base.replace(allocation="policy", allocation_tilt=False)
        for label, (path, settings) in models.items():
            learned = functools.partial(load_agent, str(path), warn_outside=False)
            jobs.append(GridJob(label, learned, base.replace(**settings), seeds, "heldout", spec.name))
        jobs += [
            GridJob(label, baseline_factory(p), plain.replace(**env_kwargs(p)), seeds, "heldout", spec.name)
            for label, p in points.items()
        ]
    return jobs


def cell_rows(
    results: Sequence[EpisodeResult], cell: str, points: Mapping[str, str], hierarchical: bool = False
) -> list[dict[str, Any]]:
    """One row per policy of a cell: its mean test accuracy, and the generalist minus it (points, interval).

    ``hierarchical``: the interval resamples the networks too (a verdict about the population they came from).
    """
    rows = []
    for label in dict.fromkeys(r.policy for r in results):
        mine = [r.test_accuracy for r in results if r.policy == label]
        row: dict[str, Any] = {"cell": cell, "policy": label, "point": points.get(label, ""), "episodes": len(mine)}
        row["test_accuracy"] = float(np.mean(mine)) if mine else float("nan")
        if label != GENERALIST:
            pooled = compare(results, GENERALIST, label, hierarchical=hierarchical).pooled
            row["generalist_minus"] = "" if pooled is None else pooled.scaled(100).text()
            row["verdict"] = "" if pooled is None else pooled.verdict
        rows.append(row)
    return rows


def tuned_points(cfg: TrainConfig, targets: Sequence[float], run_dir: Path, **grid: Any) -> dict[str, dict[str, str]]:
    """(d) ``{family@target: {"tuned cell": the run's grid's best cell on that setting's train split}}``.

    Each family's grid is tuned as its task run would (:func:`agents.reports.tuned.tune_run`'s settings), at each target
    (cached in ``generalist/tuning/<family@target>/tuning.json``). No ``--tune-cells``: none.
    """
    out: dict[str, dict[str, str]] = {}
    if not cfg.tune_cells:
        return out
    cells = [policy_cell(name) for name in cfg.tune_cells]
    for family, config in family_configs(cfg).items():
        for target in targets:
            label = setting_label(family, target)
            folder = run_dir / FOLDER / "tuning" / label
            seeds = seed_range("tuning", cfg.tune_seeds)
            table = tune(family, cells, target, folder, seeds, tuning_overrides(config), progress=False, **grid)
            out[label] = {TUNED: table.best}
    return out


def single_target_policies(family: str, target: float) -> dict[str, tuple[Path, Mapping[str, Any]]]:
    """(e) The shipped policies trained on ``family``'s task at ``target``: ``{label: (model, its settings)}``."""
    out: dict[str, tuple[Path, Mapping[str, Any]]] = {}
    for name in policies.available():
        card = policies.card(name)
        if card.task == family and np.isclose(card.target_density, target) and not card.ranges:  # one setting
            out[f"single-target {name}"] = (policies.model_path(name), policies.load(name, warn_outside=False).settings)
    return out


def run_generalist_eval(
    run_dir: str | Path,
    targets: Sequence[float],
    eval_seeds: int = 0,
    eval_seed_start: int | None = None,
    with_tuned: bool = False,
    heldout: str = "named",
    **grid: Any,
) -> list[dict[str, Any]]:
    """Play every cell (module doc), write ``generalist/results.md`` and ``results.csv``; the rows.

    ``with_tuned``: (d) tune the run's grid (``--tune-cells``) on each cell's train split first. ``heldout``:
    ``named`` (each family's held-out split) or ``population`` (its held-out population, checked for every family
    before any episode; the results in ``results_population.md`` / ``.csv``).
    """
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    networks = {family: comparison_family(family, heldout).heldout for family in family_configs(cfg)}
    model = model_path(cfg)
    if model is None:
        raise ValueError(f"run_dir={str(run_dir)!r} is not allowed: no best_model.zip or model.zip to evaluate")
    generalist = {GENERALIST: (model, required_settings(PPO.load(model, device="cpu").policy.schema))}
    tuned = tuned_points(cfg, targets, run_dir, **grid) if with_tuned else {}
    record = run_dir / FOLDER / "opponents.json"
    summary = json.loads(record.read_text(encoding="utf-8")) if record.exists() else {}
    start = cfg.eval_seed_start if eval_seed_start is None else eval_seed_start
    seeds = tuple(seeds_from(start, eval_seeds or cfg.eval_seeds))
    cells: dict[str, tuple[list[GridJob], dict[str, str], dict]] = {}
    for family, config in family_configs(cfg).items():
        for target in targets:
            cell = setting_label(family, target)
            points = {**opponent_points(summary, family, target), **tuned.get(cell, {})}
            models = {**generalist, **single_target_policies(family, target)}
            jobs = cell_jobs(config, networks[family], target, models, points, seeds)
            cells[cell] = (jobs, points, models)
    log = EpisodeLog(run_dir / FOLDER / LOG, fresh=False)
    rows, population = [], heldout == "population"
    for cell, (cell_jobs_, points, models) in cells.items():
        # versioned per cell: one label ("per-setting search") plays another point in each cell, and a cell's
        # episodes are reused only while its own point (and each model file) is unchanged
        versions = {**{label: file_digest(m[0]) for label, m in models.items()}, **points}
        results = run_logged(cell_jobs_, log, versions, progress=cfg.progress_bar, **grid)
        rows += cell_rows(results, cell, points, hierarchical=population)
    write_csv(results_path(run_dir, heldout, ".csv"), rows)
    text = results_markdown(rows, train_targets(cfg), seeds, networks if population else None)
    atomic_write_text(results_path(run_dir, heldout), text)
    return rows


def results_markdown(
    rows: Sequence[dict[str, Any]],
    trained: Sequence[float],
    seeds: Sequence[int],
    population: Mapping[str, Sequence[Any]] | None = None,
) -> str:
    """The cells' table: training targets marked, held-out ones zero-shot.

    ``population``: ``{family: its held-out population}`` when the cells were played on populations (named in the
    text, with the hierarchical interval's words).
    """
    where, interval = "Held-out networks of each family", "95% bootstrap interval over seeds within networks"
    if population is not None:
        named = [
            f"{family}: {len(specs)} networks ({', '.join(s.name for s in specs)})"
            for family, specs in population.items()
        ]
        where = "Held-out populations: " + "; ".join(named)
        interval = "95% hierarchical bootstrap interval (networks drawn, then seeds within each)"
    lines = [
        "# A generalist against its opponents, every (family, target) cell",
        "",
        f"{where}; seeds {', '.join(map(str, seeds))}; training targets "
        f"{', '.join(f'{t:g}' for t in trained)} (other targets: zero-shot). Test accuracy; the generalist minus "
        f"each opponent in points, {interval}.",
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
    parser = cli_parser("agents.run.generalist_eval", __doc__.split("\n")[0])
    parser.add_argument("--targets", nargs="+", type=float, required=True, help="targets of the cells")
    parser.add_argument("--eval-seeds", type=int, default=0, help="seeds per network (0: the run's --eval-seeds)")
    parser.add_argument("--eval-seed-start", type=int, default=None, help="first seed (default: the run's)")
    parser.add_argument("--tuned", action="store_true", help="(d) tune the run's grid on every cell first")
    parser.add_argument(
        "--heldout",
        choices=HELDOUT,
        default="named",
        help="each family's held-out split (named) or its held-out population (population)",
    )
    args = parser.parse_args(argv)

    def call(grid: dict[str, Any]) -> str:
        rows = run_generalist_eval(
            args.run_dir, args.targets, args.eval_seeds, args.eval_seed_start, args.tuned, args.heldout, **grid
        )
        return f"{len(rows)} rows: {results_path(args.run_dir, args.heldout)}"

    return run_cli("generalist_eval", call, args)


if __name__ == "__main__":
    sys.exit(main())
