"""What a PPO run cost, read from its run folder: the search opponents' budget and the report's cost column.

* The PPO run's records (:func:`read_agent_cost`, the one reader of them), each part with its own episodes and
  seconds, summed over resumed sessions (a killed session's up to its last checkpoint): the training episodes
  (``checkpoints/state.json``, the latest checkpoint, over ``timing.json``) and the training phase's seconds
  without the periodic evaluations (``training_seconds``); the paired reward's reference episodes (the entries
  of ``reference_cache.json``: every one of the run, resumed sessions included; else the count ``timing.json``
  holds) and their seconds (``reference_seconds``, summed over the env workers: they ran inside the training
  phase); the tuning before training (``tuning_episodes``, ``tuning_seconds``: the grid and the prior's
  choice); the periodic evaluations (``evaluation_episodes``, ``evaluation_seconds``, ``evaluations``). And
  the whole ``train_seconds`` (all of these and the saving). The equal-budget search gets the training plus
  reference episodes (:mod:`agents.reports.opponent_runs`); the cost column sums those episodes and the training phase's
  seconds (:class:`~sparsity_gym.experiments.opponents.AgentCost`).
* The opponents: the run folder's ``opponents.json``
  (:func:`sparsity_gym.experiments.opponents.read_opponents`).
* The first win: the periodic evaluations' ``eval/val_accuracy`` scalars in the run's TensorBoard events (their
  timesteps and wall times), against the reference's validation accuracy on the same networks and seeds
  (the tuned cell played there once, cached in ``reference_selection.json``). Episodes are timesteps over the
  decisions of an episode; seconds count from the first evaluation (the untrained policy, at the start of
  training), pauses between resumed sessions included.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.policies import model_path
from agents.settings.train_config import TrainConfig
from baselines import env_kwargs, make_policy
from sparsity_gym.core.io import atomic_write_text
from sparsity_gym.experiments.evaluation import env_settings
from sparsity_gym.experiments.families import Family, NetworkSpec
from sparsity_gym.experiments.grid import GridJob, run_grid
from sparsity_gym.experiments.opponents import AgentCost, Opponent, read_opponents
from sparsity_gym.experiments.seeds import seeds as selection_seeds

REFERENCE_SELECTION = "reference_selection.json"
TIMING = "timing.json"
CHECKPOINT_STATE = "checkpoints/state.json"
REFERENCE_CACHE = "reference_cache.json"
EVAL_TAG = "eval/val_accuracy"

COST_KEYS = ("training_seconds", "evaluation_seconds", "evaluation_episodes", "evaluations")
"""What ``checkpoints/state.json`` counts over sessions besides the episodes and ``train_seconds`` (written by
:meth:`agents.run.callbacks.AtomicCheckpointCallback.state`, read here)."""


def evaluation_curve(run_dir: Path) -> list[tuple[int, float, float]]:
    """``(timestep, wall time, validation accuracy)`` of every periodic evaluation logged in ``run_dir/tb``.

    Read from the TensorBoard event files of the run's PPO folders (``tb/PPO_*``), in timestep order; a timestep
    logged twice (a resumed session) keeps its first value.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points: dict[int, tuple[int, float, float]] = {}
    for events in sorted(Path(run_dir).glob("tb/*/events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        if EVAL_TAG in accumulator.Tags().get("scalars", []):
            for e in accumulator.Scalars(EVAL_TAG):
                points.setdefault(int(e.step), (int(e.step), float(e.wall_time), float(e.value)))
    return [points[step] for step in sorted(points)]


def first_win(curve: Sequence[tuple[int, float, float]], reference: float, decisions: int) -> tuple[int, float] | None:
    """``(episodes, seconds)`` of the first evaluation whose validation accuracy is above ``reference``, or ``None``.

    ``decisions`` per episode turn timesteps into episodes; seconds count from the curve's first point.
    """
    for step, wall, value in curve:
        if value > reference:
            return math.floor(step / decisions), wall - curve[0][1]
    return None


def reference_selection_accuracy(
    cfg: TrainConfig, networks: Sequence[NetworkSpec], reference: str, run_dir: Path
) -> float:
    """Mean validation accuracy of ``reference`` on the periodic evaluation's networks and seeds, cached.

    The cell plays as in the comparison (its own allocation rule, no tilt), without the observation statistics
    (a schedule does not read them; the training is the same), with the selection seeds (2000 + i,
    ``cfg.eval_episodes`` of them). ``run_dir/reference_selection.json`` keeps the result for these settings.
    """
    seeds = tuple(selection_seeds("selection", cfg.eval_episodes))
    plain = cfg.env.replace(allocation="policy", allocation_tilt=False, observations=())
    configs = [plain.replace(**spec.env_kwargs(), **env_kwargs(reference)) for spec in networks]
    payload = json.dumps([reference, seeds, [env_settings(c) for c in configs]], sort_keys=True, default=str)
    key = hashlib.sha256(payload.encode()).hexdigest()[:16]
    path = Path(run_dir) / REFERENCE_SELECTION
    if path.exists():
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("key") == key:
            return float(cached["val_accuracy"])
    factory = functools.partial(make_policy, reference)
    jobs = [GridJob(reference, factory, c, seeds, "selection", s.name) for c, s in zip(configs, networks, strict=True)]
    results = run_grid(jobs, backend=cfg.backend, workers=cfg.workers or None, progress=cfg.progress_bar)
    value = sum(r.val_accuracy for r in results) / len(results)
    record = {
        "key": key,
        "reference": reference,
        "networks": [s.name for s in networks],
        "seeds": list(seeds),
        "val_accuracy": value,
        "episodes": len(results),
        "seconds": round(sum(r.wall_time_s for r in results), 1),
    }
    atomic_write_text(path, json.dumps(record, indent=1))
    return value


def ppo_run_dir(cfg: TrainConfig) -> Path:
    """The folder of the PPO run a run reports on: ``--model``'s folder in ``evaluate`` mode, else ``--run-dir``.

    A shipped policy's folder (``agents/shipped``) holds no run records: its card has them.
    """
    return model_path(cfg.model).parent if cfg.mode == "evaluate" and cfg.model else Path(cfg.run_dir)


def read_agent_cost(training_dir: str | Path) -> AgentCost | None:
    """What the PPO run in ``training_dir`` recorded of its cost (see the module); ``None``: no training record.

    ``checkpoints/state.json`` (the latest checkpoint) wins over ``timing.json`` (written when the training
    ended) for the episodes; every count over sessions (the seconds, the periodic evaluations) is the larger of
    the two (a killed session's checkpoint counts beyond the last ``timing.json``; a finished session's
    ``timing.json`` also counts the tuning before training). The cost's parts: ``training_seconds`` (the
    training phase without the periodic evaluations), ``evaluation_*``, ``tuning_*`` (``timing.json``) and the
    reference's; ``seconds`` is the training phase's when recorded, else the whole ``train_seconds`` of an
    older record. The reference's episodes are the entries of ``reference_cache.json`` when there is one. No
    first win is read here (:func:`agent_cost` adds it).
    """
    folder = Path(training_dir)
    state: dict[str, Any] = {}
    largest: dict[str, float] = {}
    for path in (folder / TIMING, folder / CHECKPOINT_STATE):
        if path.exists():
            record = json.loads(path.read_text(encoding="utf-8"))
            state.update(record)
            for key in ("train_seconds", *COST_KEYS):
                if record.get(key) is not None:
                    largest[key] = max(float(record[key]), largest.get(key, 0.0))
    cache = folder / REFERENCE_CACHE
    if cache.exists():  # every reference episode of the run, resumed sessions included
        state["reference_episodes"] = len(json.loads(cache.read_text(encoding="utf-8")))
    if "episodes" not in state:
        return None
    training = largest.get("training_seconds")
    return AgentCost(
        episodes=int(state["episodes"]),
        seconds=training if training is not None else largest.get("train_seconds"),
        reference_episodes=int(state.get("reference_episodes", 0)),
        reference_seconds=float(state.get("reference_seconds", 0.0)),
        search_episodes=prior_search_episodes(folder),
        search_seconds=prior_search_seconds(folder),
        training_seconds=training,
        tuning_episodes=None if state.get("tuning_episodes") is None else int(state["tuning_episodes"]),
        tuning_seconds=None if state.get("tuning_seconds") is None else float(state["tuning_seconds"]),
        evaluation_episodes=int(largest.get("evaluation_episodes", 0)),
        evaluation_seconds=float(largest.get("evaluation_seconds", 0.0)),
        evaluations_run=int(largest.get("evaluations", 0)),
        run_seconds=largest.get("train_seconds"),
    )


def prior_search_episodes(folder: Path) -> int:
    """Episodes of the search that chose the run's prior (``opponents.json``'s ``prior`` record; 0: none)."""
    record = read_opponents(folder).get("prior")
    return int(record.episodes or 0) if record is not None else 0


def prior_search_seconds(folder: Path) -> float:
    """Seconds of the search that chose the run's prior (``opponents.json``'s ``prior`` record; 0: none)."""
    record = read_opponents(folder).get("prior")
    return float(record.seconds or 0.0) if record is not None else 0.0


def agent_cost(
    cfg: TrainConfig,
    run_dir: Path,
    networks: Sequence[NetworkSpec],
    reference: str | None,
    training_dir: Path | None = None,
) -> AgentCost | None:
    """The agent's cost (:func:`read_agent_cost` of ``training_dir``, default ``run_dir``) and its first win.

    ``networks`` are the periodic evaluation's (``--select-on``); the reference's accuracy on them is cached in
    ``run_dir``. ``None`` when no training record is found.
    """
    training_dir = Path(run_dir if training_dir is None else training_dir)
    cost = read_agent_cost(training_dir)
    if cost is None:
        return None
    curve = evaluation_curve(training_dir) if reference is not None else []
    win = None
    if curve:
        assert reference is not None
        target = reference_selection_accuracy(cfg, networks, reference, run_dir)
        win = first_win(curve, target, cfg.env.num_decisions)
    return dataclasses.replace(cost, first_win=win, evaluations=len(curve))


def cumulative_train_seconds(run_dir: Path, resume: bool, seconds: float) -> float:
    """``seconds`` plus the whole training run's seconds (``train_seconds``) the run folder records when it resumes."""
    earlier = read_agent_cost(run_dir) if resume else None
    if earlier is None or earlier.run_seconds is None:
        return seconds
    return earlier.run_seconds + seconds


def earlier_counts(earlier: AgentCost | None) -> dict[str, float]:
    """The counts over sessions a resumed run's checkpoint continues (``COST_KEYS``).

    A record from before the parts were split holds only the whole ``train_seconds``: they count as the
    training phase's (the tuning and evaluations in them cannot be told apart any more).
    """
    if earlier is None:
        return {}
    training = earlier.training_seconds if earlier.training_seconds is not None else earlier.run_seconds
    return {
        "training_seconds": training or 0.0,
        "evaluation_seconds": earlier.evaluation_seconds,
        "evaluation_episodes": earlier.evaluation_episodes,
        "evaluations": earlier.evaluations_run,
    }


def write_timing(run_dir: Path, timing: dict[str, Any]) -> Path:
    """Write ``run_dir/timing.json`` (atomically): the training's seconds and state, the run's total seconds."""
    path = Path(run_dir) / TIMING
    atomic_write_text(path, json.dumps(timing, indent=2))
    return path


def report_costs(
    cfg: TrainConfig, run_dir: Path, family: Family, reference: str | None, training_dir: Path | None = None
) -> tuple[list[Opponent], AgentCost | None]:
    """The recorded opponents and the agent's cost for the report of a run on ``family``.

    Opponents: ``opponents.json`` of ``run_dir`` (else of ``training_dir``). The agent: :func:`agent_cost` with
    the tuned cell ``reference`` and the periodic evaluation's networks (``cfg.select_on``).
    """
    training_dir = Path(run_dir if training_dir is None else training_dir)
    recorded = read_opponents(run_dir) or read_opponents(training_dir)
    training = periodic_evaluation(cfg, training_dir)
    networks = family.heldout if training.select_on == "heldout" else family.train
    return list(recorded.values()), agent_cost(training, run_dir, networks, reference, training_dir)


def periodic_evaluation(cfg: TrainConfig, training_dir: Path) -> TrainConfig:
    """``cfg`` with the periodic evaluation's settings of the PPO run in ``training_dir`` (its ``config.json``).

    Its first win is told on the networks and seeds it was evaluated on during training (``select_on``,
    ``eval_episodes``), which an evaluation run's own flags do not set. Without a ``config.json`` (a shipped
    policy's folder): ``cfg`` as given.
    """
    path = Path(training_dir) / "config.json"
    if not path.exists():
        return cfg
    recorded = json.loads(path.read_text(encoding="utf-8"))
    fields = {k: recorded[k] for k in ("select_on", "eval_episodes") if k in recorded}
    return dataclasses.replace(cfg, **fields)


def tuning_record(cfg: TrainConfig, run_dir: Path, seconds: float) -> dict[str, Any]:
    """``timing.json``'s tuning part: ``tuning_seconds`` and ``tuning_episodes`` (the ``tuned`` grid's, if any).

    The seconds are this session's ``seconds`` before training (the grid and the prior's choice), plus a resumed
    run's earlier ones.
    """
    earlier = read_agent_cost(run_dir) if cfg.resume else None
    before = earlier.tuning_seconds if earlier is not None and earlier.tuning_seconds is not None else 0.0
    tuned = read_opponents(run_dir).get("tuned") if cfg.tune_cells else None
    episodes = tuned.episodes if tuned is not None else None
    return {"tuning_seconds": round(before + seconds, 1), "tuning_episodes": episodes}
