"""stable-baselines3 callbacks: episode statistics and schedules to TensorBoard, atomic checkpoints."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Figure, HParam

from sparsity_gym.core.io import atomic_write, atomic_write_text
from sparsity_gym.env.config import EnvConfig


class EpisodeStatsCallback(BaseCallback):
    """Log each finished training episode through ``self.logger.record``.

    Scalars: ``episode/val_accuracy``, ``episode/test_accuracy``, ``episode/final_density``,
    ``episode/flops_fraction``, ``episode/training_gflops``, ``episode/invalid_actions``, and for every layer
    ``density/<network>/<layer>`` (its density averaged over the episode's decisions: the area under its
    schedule; the network and layer names come from ``info["network"]`` / ``info["layer_names"]`` when the env
    gives them, as :class:`sparsity_gym.env.wrappers.FamilyEnv` does). Once per rollout, the last finished
    episode's per-layer schedule as a figure (``schedule/last_episode``).
    """

    def __init__(self, layer_names: tuple[str, ...] = (), verbose: int = 0) -> None:
        super().__init__(verbose)
        self.layer_names = tuple(layer_names)
        self._schedules: dict[int, list[np.ndarray]] = {}
        self._last: tuple[np.ndarray, tuple[str, ...]] | None = None

    def _on_step(self) -> bool:
        infos: list[dict[str, Any]] = self.locals["infos"]
        dones = self.locals["dones"]
        for i, (info, done) in enumerate(zip(infos, dones, strict=True)):
            self._schedules.setdefault(i, []).append(np.asarray(info["layer_densities"]))
            if not done:
                continue
            schedule = np.stack(self._schedules.pop(i))
            names = tuple(info.get("layer_names", self.layer_names)) or tuple(
                f"layer{j}" for j in range(schedule.shape[1])
            )
            prefix = f"{info['network']}/" if "network" in info else ""
            self._last = (schedule, names)
            self.logger.record_mean("episode/val_accuracy", info["val_accuracy"])
            if "test_accuracy" in info:
                self.logger.record_mean("episode/test_accuracy", info["test_accuracy"])
            self.logger.record_mean("episode/final_density", info["density"])
            self.logger.record_mean("episode/flops_fraction", info["flops"] / info["dense_flops"])
            self.logger.record_mean("episode/training_gflops", info["training_flops"] / 1e9)
            self.logger.record_mean("episode/invalid_actions", info["invalid_actions"])
            for name, mean_density in zip(names, schedule.mean(axis=0), strict=True):
                self.logger.record_mean(f"density/{prefix}{name}", float(mean_density))
        return True

    def _on_rollout_end(self) -> None:
        if self._last is None:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        schedule, names = self._last
        fig, ax = plt.subplots(figsize=(4, 3))
        steps = np.arange(len(schedule))
        for name, column in zip(names, schedule.T, strict=True):
            ax.step(steps, column, where="post", label=name)
        ax.set_xlabel("decision")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
        fig.tight_layout()
        self.logger.record("schedule/last_episode", Figure(fig, close=True), exclude=("stdout", "log", "json", "csv"))
        self._last = None


class EpisodeLogCallback(BaseCallback):
    """Append one CSV row per finished training episode to ``path`` (the run's learning curve, kept on resume).

    Columns: :data:`EPISODE_LOG_COLUMNS`: the timestep it ended at, its network, the final reward (under paired
    rewards the difference to the reference), the reference's validation accuracy (paired rewards only), and
    the episode's validation and test accuracy and final density. Rows are flushed at the end of each rollout.
    """

    def __init__(self, path: str | Path, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.path = Path(path)
        self._rows: list[dict[str, Any]] = []

    def _on_step(self) -> bool:
        for info, done, reward in zip(self.locals["infos"], self.locals["dones"], self.locals["rewards"], strict=True):
            if done:
                self._rows.append(
                    {
                        "timestep": int(self.num_timesteps),
                        "network": info.get("network", ""),
                        "reward": float(reward),
                        "reference_val_accuracy": info.get("reference_val_accuracy", ""),
                        "val_accuracy": info["val_accuracy"],
                        "test_accuracy": info.get("test_accuracy", ""),
                        "final_density": info["density"],
                    }
                )
        return True

    def _on_rollout_end(self) -> None:
        self.flush()

    def _on_training_end(self) -> None:
        self.flush()

    def flush(self) -> None:
        """Append the rows gathered since the last flush."""
        if not self._rows:
            return
        new = not self.path.exists()
        with self.path.open("a", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=EPISODE_LOG_COLUMNS)
            if new:
                writer.writeheader()
            writer.writerows(self._rows)
        self._rows = []


EPISODE_LOG_COLUMNS = (
    "timestep",
    "network",
    "reward",
    "reference_val_accuracy",
    "val_accuracy",
    "test_accuracy",
    "final_density",
)


class HParamsCallback(BaseCallback):
    """Record the run's hyperparameters (TensorBoard's HPARAMS tab) when training starts."""

    def __init__(self, hparams: dict[str, Any], verbose: int = 0) -> None:
        super().__init__(verbose)
        self.hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}

    def _on_training_start(self) -> None:
        metrics = {"eval/val_accuracy": 0.0, "eval/test_accuracy": 0.0, "rollout/ep_rew_mean": 0.0}
        self.logger.record("hparams", HParam(self.hparams, metrics), exclude=("stdout", "log", "json", "csv"))

    def _on_step(self) -> bool:
        return True


class AtomicCheckpointCallback(BaseCallback):
    """Every ``every`` timesteps, save the model to ``folder/last.zip`` and ``folder/state.json`` atomically.

    ``episodes`` counts the training episodes finished so far (start it from ``state.json`` when resuming).

    A run killed at any moment leaves the previous complete checkpoint (never a truncated file); ``--resume``
    loads ``last.zip`` and continues the timestep count.
    """

    def __init__(self, folder: str | Path, every: int, episodes: int = 0, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.folder = Path(folder)
        self.every = every
        self.episodes = episodes
        self._last_saved = 0

    def _init_callback(self) -> None:
        self._last_saved = self.num_timesteps

    def _on_step(self) -> bool:
        self.episodes += int(np.sum(self.locals["dones"]))
        if self.num_timesteps - self._last_saved >= self.every:
            self.save()
        return True

    def save(self) -> Path:
        """Write the checkpoint now; ``state.json`` holds the timestep count and the finished training episodes."""
        path = save_model_atomic(self.model, self.folder / "last.zip")
        state = {"num_timesteps": int(self.num_timesteps), "episodes": int(self.episodes)}
        atomic_write_text(self.folder / "state.json", json.dumps(state))
        self._last_saved = self.num_timesteps
        return path


def save_model_atomic(model: Any, path: str | Path) -> Path:
    """``model.save`` through a temporary file renamed onto ``path``."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            model.save(fh)

    return atomic_write(path, write)


class _Recorder:
    """Wrap an agent's ``predict`` to keep the observations it saw and the env's layer names and columns."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.observations: list[np.ndarray] = []
        self.layer_names: tuple[str, ...] = ()
        self.columns: dict[str, int] = {}

    def bind(self, env: Any) -> _Recorder:
        self.agent.bind(env)
        self.layer_names = tuple(env.unwrapped.layer_names)
        self.columns = dict(env.unwrapped.layout.columns)
        self.observations = []
        return self

    def predict(
        self, observation: np.ndarray, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        self.observations.append(np.asarray(observation))
        return self.agent.predict(observation, state, episode_start, deterministic)


class HeldoutEvalCallback(BaseCallback):
    """Before training, every ``every`` timesteps and at its end, run the policy on held-out networks; keep the best.

    Each evaluation plays ``seeds`` deterministic episodes on every network of ``networks`` (the held-out split,
    or the train split under ``--select-on train``)
    and records through ``self.logger.record``:

    * ``eval/val_accuracy``, ``eval/test_accuracy``, ``eval/final_density``, ``eval/flops_fraction``,
      ``eval/training_gflops`` (means over networks and seeds) and ``eval/<network>/test_accuracy``;
    * ``eval_density/<network>/<layer>``: each layer's density averaged over the episode (first seed);
    * ``eval_stats/<column>``: the observed statistic families (snr, rank, contribution, equilibrium
      columns), averaged over layers, decisions, networks and seeds;
    * ``eval_schedule/<network>``: a figure, one panel per layer, the learned schedule against every
      handcrafted schedule at the same target;
    * and, as its own TensorBoard run ``eval_schedules/t<timesteps>`` beside SB3's, one scalar tag per layer
      ``schedule/<network>/<layer>`` whose x-axis is the pruned network's optimizer step: the per-layer density
      over training time of that evaluation episode.

    With ``workers`` > 1 the episodes run on the persistent process pool
    (:func:`sparsity_gym.experiments.pool.shared_pool`, one torch thread each), one job per network and seed, from
    a copy of the model saved beside ``best_path``: the training envs wait for PPO meanwhile, so their cores are
    free, and the workers stay warm for the next evaluation and the comparison. The episodes are the same as in
    this process (same weights, seeds and thread count).

    The model with the best mean validation accuracy is written to ``best_path`` (``best.json`` beside it holds
    its timestep and scores, and is read back on ``--resume``). Selection uses validation accuracy and seeds of
    its own, apart from the comparison's.
    """

    def __init__(
        self,
        networks: Sequence[Any],
        config: EnvConfig | Mapping[str, Any],
        seeds: Sequence[int],
        every: int,
        best_path: str | Path,
        verbose: int = 0,
        workers: int = 1,
    ) -> None:
        super().__init__(verbose)
        self.workers = int(workers)
        self.networks = tuple(networks)
        self.config = config if isinstance(config, EnvConfig) else EnvConfig(**config)
        self.seeds = list(seeds)
        self.every = every
        self.best_path = Path(best_path)
        self.best_json = self.best_path.with_suffix(".json")
        self.best = json.loads(self.best_json.read_text())["val_accuracy"] if self.best_json.exists() else -np.inf
        self._last = 0

    def _init_callback(self) -> None:
        self._last = self.num_timesteps

    def _on_training_start(self) -> None:
        # The untrained policy is a candidate too (with a prior it is that handcrafted schedule): training
        # must beat it on held-out validation accuracy to replace it as best_model.zip.
        if self.every and self.num_timesteps == 0:
            self.evaluate_now()
            self.logger.dump(self.num_timesteps)

    def _on_step(self) -> bool:
        if self.every and self.num_timesteps - self._last >= self.every:
            self.evaluate_now()
        return True

    def _on_training_end(self) -> None:
        if self.every and self.num_timesteps != self._last:
            self.evaluate_now()

    def evaluate_now(self) -> list[Any]:
        """Run the evaluation, log it, save the model if it is the best so far; return the episode results."""
        from agents.policy import LayerwiseAgent
        from sparsity_gym.experiments.evaluation import evaluate

        self._last = self.num_timesteps
        if self.workers > 1:
            results, observations, layers, columns = self._evaluate_on_pool()
        else:
            recorder = _Recorder(LayerwiseAgent(self.model))
            results, observations, layers = [], [], {}
            for spec in self.networks:
                config = self.config.replace(**spec.env_kwargs())
                results += evaluate(recorder.bind, config, self.seeds, "ppo", split="heldout", network_name=spec.name)
                observations += recorder.observations
                layers[spec.name] = recorder.layer_names
            columns = recorder.columns
        self._record_scores(results)
        self._record_statistics(observations, columns)
        for spec in self.networks:
            first = next(r for r in results if r.network == spec.name)
            for name, density in zip(layers[spec.name], np.mean(first.schedule, axis=0), strict=True):
                self.logger.record(f"eval_density/{spec.name}/{name}", float(density))
            self.logger.record(
                f"eval_schedule/{spec.name}",
                Figure(schedule_figure(first, layers[spec.name]), close=True),
                exclude=("stdout", "log", "json", "csv"),
            )
        self._write_schedule_scalars(results, layers)
        score = float(np.mean([r.val_accuracy for r in results]))
        if score > self.best:
            self.best = score
            save_model_atomic(self.model, self.best_path)
            best = {
                "num_timesteps": int(self.num_timesteps),
                "val_accuracy": score,
                "test_accuracy": float(np.mean([r.test_accuracy for r in results])),
            }
            atomic_write_text(self.best_json, json.dumps(best))
        self.logger.record("eval/best_val_accuracy", float(self.best))
        return results

    def _evaluate_on_pool(self) -> tuple[list[Any], list[np.ndarray], dict[str, tuple[str, ...]], dict[str, int]]:
        """The evaluation's episodes on the shared pool: results, observations, layer names, columns."""
        from sparsity_gym.experiments.pool import shared_pool

        snapshot = save_model_atomic(self.model, self.best_path.with_name(".heldout_eval_model.zip"))
        pool = shared_pool(self.workers, 1)
        futures = [
            pool.submit(heldout_episode, str(snapshot), self.config.replace(**spec.env_kwargs()), seed, spec.name)
            for spec in self.networks
            for seed in self.seeds
        ]
        results, observations, layers, columns = [], [], {}, {}
        for spec_seed, future in zip([(s.name, x) for s in self.networks for x in self.seeds], futures, strict=True):
            result, seen, names, columns = future.result()
            results.append(result)
            observations += seen
            layers[spec_seed[0]] = names
        return results, observations, layers, columns

    def _record_scores(self, results: Sequence[Any]) -> None:
        def mean(values: Any) -> float:
            return float(np.mean(list(values)))

        self.logger.record("eval/val_accuracy", mean(r.val_accuracy for r in results))
        self.logger.record("eval/test_accuracy", mean(r.test_accuracy for r in results))
        self.logger.record("eval/final_density", mean(r.final_density for r in results))
        self.logger.record("eval/flops_fraction", mean(r.inference_flops / r.dense_flops for r in results))
        self.logger.record("eval/training_gflops", mean(r.training_flops / 1e9 for r in results))
        for spec in self.networks:
            self.logger.record(
                f"eval/{spec.name}/test_accuracy", mean(r.test_accuracy for r in results if r.network == spec.name)
            )

    def _record_statistics(self, observations: Sequence[np.ndarray], columns: Mapping[str, int]) -> None:
        from sparsity_gym.observation.features import GLOBAL, STATE, STATIC

        plain = {f.name for fam in (STATIC, STATE, GLOBAL) for f in fam.features}
        if not observations:
            return
        for name, col in columns.items():
            if name not in plain:
                values = np.concatenate([np.asarray(o)[..., col].ravel() for o in observations])
                self.logger.record(f"eval_stats/{name}", float(values.mean()))

    def _write_schedule_scalars(self, results: Sequence[Any], layers: Mapping[str, tuple[str, ...]]) -> None:
        folder = self.logger.get_dir()
        if folder is None or not any("tensorboard" in type(f).__name__.lower() for f in self.logger.output_formats):
            return
        from torch.utils.tensorboard import SummaryWriter

        total = self.config.total_iterations
        writer = SummaryWriter(str(Path(folder) / "eval_schedules" / f"t{self.num_timesteps:09d}"))
        try:
            for spec in self.networks:
                first = next(r for r in results if r.network == spec.name)
                steps = [round(p * total) for p in first.progress] + [total]
                sched = [*first.schedule, first.schedule[-1]]
                for j, name in enumerate(layers[spec.name]):
                    for step, row in zip(steps, sched, strict=True):
                        writer.add_scalar(f"schedule/{spec.name}/{name}", row[j], global_step=step)
        finally:
            writer.close()


def heldout_episode(
    model_path: str, config: EnvConfig, seed: int, network: str
) -> tuple[Any, list[np.ndarray], tuple[str, ...], dict[str, int]]:
    """One held-out evaluation episode of a saved model (a pool worker's job, :class:`HeldoutEvalCallback`).

    Returns the episode's result, the observations the policy saw, the env's layer names and its columns.
    """
    from agents.policy import LayerwiseAgent
    from sparsity_gym.experiments.evaluation import evaluate

    recorder = _Recorder(LayerwiseAgent.load(model_path))
    [result] = evaluate(recorder.bind, config, [seed], "ppo", split="heldout", network_name=network)
    return result, recorder.observations, recorder.layer_names, recorder.columns


def schedule_figure(result: Any, layer_names: Sequence[str]) -> Any:
    """One panel per layer: ``result``'s schedule (density against progress) and every handcrafted schedule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from baselines import SCHEDULES

    target = result.target_density if result.target_density is not None else 1.0
    prog = np.append(np.asarray(result.progress), 1.0)
    sched = np.vstack([np.asarray(result.schedule), np.asarray(result.schedule)[-1:]])
    n = len(layer_names)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.6), squeeze=False, sharey=True)
    fine = np.linspace(0.0, 1.0, 101)
    for j, name in enumerate(layer_names):
        ax = axes[0, j]
        for sname, fn in SCHEDULES.items():
            ax.plot(fine, [fn(p, target) for p in fine], lw=0.8, alpha=0.7, label=sname)
        ax.step(prog, sched[:, j], where="post", color="black", lw=2.0, label="learned")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("progress")
    axes[0, 0].set_ylabel("density")
    axes[0, -1].legend(fontsize=6)
    fig.tight_layout()
    return fig
