"""The periodic evaluation's episodes (a PPO model on networks × seeds, here or on a pool) and their TensorBoard log.

:class:`HeldoutEvaluator` is the evaluator :class:`agents.run.callbacks.HeldoutEvalCallback` calls: given the model
being trained it returns a :class:`HeldoutEvaluation` (every episode's result, the observations the policy saw,
each network's layer names and the observation's columns), which the callback's other parts read: the best-model
keeper (:class:`agents.run.callbacks.BestModelKeeper`) and the logging (:class:`HeldoutTensorBoard`). Two backends
give the same episodes (same weights, seeds and thread count):

* ``workers=1``: the episodes run here, one network after the other;
* ``workers > 1``: one job per network and seed on the persistent process pool
  (:func:`sparsity_gym.experiments.pool.shared_pool`, one torch thread each), from a copy of the model saved to
  ``snapshot``. The training envs wait for PPO meanwhile, so their cores are free, and the workers stay warm for
  the next evaluation and the comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.logger import Figure, Logger

from agents.ppo.agent import LayerwiseAgent
from agents.settings.run_folder import save_model_atomic
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.experiments.evaluation import EpisodeResult, evaluate
from sparsity_gym.experiments.families import NetworkSpec
from sparsity_gym.experiments.plots import schedule_figure
from sparsity_gym.experiments.pool import shared_pool

NOT_TEXT = ("stdout", "log", "json", "csv")
"""SB3 logger outputs a figure or the hparams skip (they go to TensorBoard only)."""


@dataclass
class HeldoutEvaluation:
    """One evaluation: episode results (network by network, seeds in order) and what the policy saw.

    Attributes:
        networks: The networks' names, in evaluation order.
        results: One result per network and seed.
        observations: Every observation the policy acted on, over all episodes.
        layers: Each network's prunable layer names.
        columns: The observation's feature columns (name -> column index).

    """

    networks: tuple[str, ...]
    results: list[EpisodeResult] = field(default_factory=list)
    observations: list[np.ndarray] = field(default_factory=list)
    layers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    columns: dict[str, int] = field(default_factory=dict)

    @property
    def val_accuracy(self) -> float:
        """Mean validation accuracy over networks and seeds (the selection score)."""
        return float(np.mean([r.val_accuracy for r in self.results]))

    @property
    def test_accuracy(self) -> float:
        """Mean test accuracy over networks and seeds."""
        return float(np.mean([r.test_accuracy for r in self.results]))

    def first(self, network: str) -> EpisodeResult:
        """``network``'s episode of the first seed."""
        return next(r for r in self.results if r.network == network)


class Recorder:
    """Wrap an agent's ``predict`` to keep the observations it saw and the env's layer names and columns."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.observations: list[np.ndarray] = []
        self.layer_names: tuple[str, ...] = ()
        self.columns: dict[str, int] = {}

    def bind(self, env: Any) -> Recorder:
        """Bind the agent to ``env`` and start a new record (a policy factory for ``evaluate``)."""
        self.agent.bind(env)
        self.layer_names = tuple(env.unwrapped.layer_names)
        self.columns = dict(env.unwrapped.layout.columns)
        self.observations = []
        return self

    def predict(
        self, observation: np.ndarray, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        """The agent's action; the observation is kept."""
        self.observations.append(np.asarray(observation))
        return self.agent.predict(observation, state, episode_start, deterministic)


class HeldoutEvaluator:
    """Plays ``seeds`` deterministic episodes of a model on every network of ``networks`` (see the module docstring).

    Args:
        networks: Network specs (the held-out split, or the train split under ``--select-on train``).
        config: The env settings; each network's own settings replace its network fields.
        seeds: Episode seeds, the same on every network.
        workers: 1: in this process; more: on the shared pool of that many workers.
        snapshot: Where the pool's copy of the model is saved (needed when ``workers > 1``).

    """

    def __init__(
        self,
        networks: Sequence[NetworkSpec],
        config: EnvConfig | Mapping[str, Any],
        seeds: Sequence[int],
        workers: int = 1,
        snapshot: str | Path | None = None,
    ) -> None:
        self.networks = tuple(networks)
        self.config = config if isinstance(config, EnvConfig) else EnvConfig(**config)
        self.seeds = list(seeds)
        self.workers = int(workers)
        if self.workers > 1 and snapshot is None:
            raise ValueError(f"snapshot=None is not allowed with workers={self.workers}; expected a model path")
        self.snapshot = None if snapshot is None else Path(snapshot)

    def __call__(self, model: Any) -> HeldoutEvaluation:
        """Evaluate ``model`` (SB3 PPO, :class:`~agents.ppo.layerwise_policy.LayerwisePolicy`) on the chosen backend."""
        return self.on_pool(model) if self.workers > 1 else self.in_process(model)

    def in_process(self, model: Any) -> HeldoutEvaluation:
        """The episodes in this process, network by network."""
        recorder = Recorder(LayerwiseAgent(model, warn_outside=False))
        out = HeldoutEvaluation(tuple(spec.name for spec in self.networks))
        for spec in self.networks:
            config = self.config.replace(**spec.env_kwargs())
            out.results += evaluate(recorder.bind, config, self.seeds, "ppo", split="heldout", network_name=spec.name)
            out.observations += recorder.observations
            out.layers[spec.name] = recorder.layer_names
        out.columns = recorder.columns
        return out

    def on_pool(self, model: Any) -> HeldoutEvaluation:
        """The episodes on the shared pool, one job per network and seed, from a snapshot of ``model``."""
        if self.snapshot is None:
            raise ValueError("snapshot=None is not allowed on the pool; expected a model path")
        saved = save_model_atomic(model, self.snapshot)
        pool = shared_pool(self.workers, 1)
        jobs = [(spec, seed) for spec in self.networks for seed in self.seeds]
        futures = [
            pool.submit(heldout_episode, str(saved), self.config.replace(**spec.env_kwargs()), seed, spec.name)
            for spec, seed in jobs
        ]
        out = HeldoutEvaluation(tuple(spec.name for spec in self.networks))
        for (spec, _), future in zip(jobs, futures, strict=True):
            result, seen, names, out.columns = future.result()
            out.results.append(result)
            out.observations += seen
            out.layers[spec.name] = names
        return out


def heldout_episode(
    model_path: str, config: EnvConfig, seed: int, network: str
) -> tuple[EpisodeResult, list[np.ndarray], tuple[str, ...], dict[str, int]]:
    """One evaluation episode of a saved model (a pool worker's job, :meth:`HeldoutEvaluator.on_pool`).

    Returns the episode's result, the observations the policy saw, the env's layer names and its columns.
    """
    recorder = Recorder(LayerwiseAgent.load(model_path, warn_outside=False))
    [result] = evaluate(recorder.bind, config, [seed], "ppo", split="heldout", network_name=network)
    return result, recorder.observations, recorder.layer_names, recorder.columns


class HeldoutTensorBoard:
    """Write one held-out evaluation to TensorBoard through an SB3 logger (the scalars and figures below).

    * ``eval/val_accuracy``, ``eval/test_accuracy``, ``eval/final_density``, ``eval/flops_fraction``,
      ``eval/training_gflops`` (means over networks and seeds) and ``eval/<network>/test_accuracy``;
    * ``eval_stats/<column>``: the observed statistic families (snr, rank, contribution, equilibrium columns),
      averaged over layers, decisions, networks and seeds;
    * ``eval_density/<network>/<layer>``: each layer's density averaged over the episode (first seed);
    * ``eval_schedule/<network>``: a figure, one panel per layer, the first seed's schedule (as ``learned``)
      against every schedule of ``references`` at the same target: the report's schedule plot
      (:func:`sparsity_gym.experiments.plots.schedule_figure`);
    * and, as its own TensorBoard run ``eval_schedules/t<timesteps>`` beside SB3's (only when the logger writes
      TensorBoard), one scalar tag per layer ``schedule/<network>/<layer>`` whose x-axis is the pruned network's
      optimizer step (``total_iterations`` in an episode): the per-layer density over training time of that
      evaluation episode.
    """

    def __init__(self, total_iterations: int, references: Mapping[str, Callable[[float, float], float]]) -> None:
        self.total_iterations = int(total_iterations)
        self.references = dict(references)

    def __call__(self, logger: Logger, evaluation: HeldoutEvaluation, num_timesteps: int) -> None:
        """Record ``evaluation`` (taken at ``num_timesteps``)."""
        self.record_scores(logger, evaluation)
        self.record_statistics(logger, evaluation)
        for network in evaluation.networks:
            first, layers = evaluation.first(network), evaluation.layers[network]
            for name, density in zip(layers, np.mean(first.schedule, axis=0), strict=True):
                logger.record(f"eval_density/{network}/{name}", float(density))
            logger.record(
                f"eval_schedule/{network}",
                Figure(
                    schedule_figure([first], network, {first.policy: "learned"}, layers, self.references), close=True
                ),
                exclude=NOT_TEXT,
            )
        self.write_schedule_scalars(logger, evaluation, num_timesteps)

    @staticmethod
    def record_scores(logger: Logger, evaluation: HeldoutEvaluation) -> None:
        """The ``eval/`` scalars."""
        results = evaluation.results

        def mean(values: Any) -> float:
            return float(np.mean(list(values)))

        logger.record("eval/val_accuracy", mean(r.val_accuracy for r in results))
        logger.record("eval/test_accuracy", mean(r.test_accuracy for r in results))
        logger.record("eval/final_density", mean(r.final_density for r in results))
        logger.record("eval/flops_fraction", mean(r.inference_flops / r.dense_flops for r in results))
        logger.record("eval/training_gflops", mean(r.training_flops / 1e9 for r in results))
        for network in evaluation.networks:
            logger.record(
                f"eval/{network}/test_accuracy", mean(r.test_accuracy for r in results if r.network == network)
            )

    @staticmethod
    def record_statistics(logger: Logger, evaluation: HeldoutEvaluation) -> None:
        """The ``eval_stats/`` scalars: every observation column that is not a plain (static, state, global) one."""
        from sparsity_gym.observation.features import GLOBAL, STATE, STATIC

        plain = {f.name for fam in (STATIC, STATE, GLOBAL) for f in fam.features}
        if not evaluation.observations:
            return
        for name, col in evaluation.columns.items():
            if name not in plain:
                values = np.concatenate([np.asarray(o)[..., col].ravel() for o in evaluation.observations])
                logger.record(f"eval_stats/{name}", float(values.mean()))

    def write_schedule_scalars(self, logger: Logger, evaluation: HeldoutEvaluation, num_timesteps: int) -> None:
        """The ``eval_schedules/t<timesteps>`` run: each layer's density against the pruned network's step."""
        folder = logger.get_dir()
        if folder is None or not any("tensorboard" in type(f).__name__.lower() for f in logger.output_formats):
            return
        from torch.utils.tensorboard import SummaryWriter

        total = self.total_iterations
        writer = SummaryWriter(str(Path(folder) / "eval_schedules" / f"t{num_timesteps:09d}"))
        try:
            for network in evaluation.networks:
                first = evaluation.first(network)
                steps = [round(p * total) for p in first.progress] + [total]
                sched = [*first.schedule, first.schedule[-1]]
                for j, name in enumerate(evaluation.layers[network]):
                    for step, row in zip(steps, sched, strict=True):
                        writer.add_scalar(f"schedule/{network}/{name}", row[j], global_step=step)
        finally:
            writer.close()
