"""stable-baselines3 callbacks: training episodes to TensorBoard and CSV, checkpoints, the periodic evaluation.

The periodic evaluation is made of parts: an evaluator (:class:`agents.reports.heldout.HeldoutEvaluator`, in this
process or on the worker pool), a best-model keeper (:class:`BestModelKeeper`, the ``callback_on_new_best``),
TensorBoard logging (:class:`agents.reports.heldout.HeldoutTensorBoard`), and the callback that runs them on schedule
(:class:`PeriodicEvalCallback`; :class:`HeldoutEvalCallback` is the training run's composition).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, EventCallback
from stable_baselines3.common.logger import Figure, HParam, Logger

from agents.reports.costs import COST_KEYS
from agents.reports.heldout import NOT_TEXT, HeldoutEvaluation, HeldoutEvaluator, HeldoutTensorBoard
from agents.settings.run_folder import save_model_atomic
from baselines import SCHEDULES
from sparsity_gym.core.io import atomic_write_text
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.experiments.families import NetworkSpec


class EpisodeStatsCallback(BaseCallback):
    """Log each finished training episode through ``self.logger.record``.

    Scalars: ``episode/val_accuracy``, ``episode/test_accuracy``, ``episode/final_density``,
    ``episode/flops_fraction``, ``episode/training_gflops``, ``episode/invalid_actions`` (the actions clipped over
    the whole episode: the sum of the env's per-step ``info["invalid_actions"]``), and for every layer
    ``density/<network>/<layer>`` (its density averaged over the episode's decisions: the area under its
    schedule; the network and layer names come from ``info["network"]`` / ``info["layer_names"]`` when the env
    gives them, as :class:`sparsity_gym.env.wrappers.FamilyEnv` does). Once per rollout, the last finished
    episode's per-layer schedule as a figure (``schedule/last_episode``).
    """

    def __init__(self, layer_names: tuple[str, ...] = (), verbose: int = 0) -> None:
        super().__init__(verbose)
        self.layer_names = tuple(layer_names)
        self._schedules: dict[int, list[np.ndarray]] = {}
        self._invalid: dict[int, int] = {}
        self._last: tuple[np.ndarray, tuple[str, ...]] | None = None

    def _on_step(self) -> bool:
        infos: list[dict[str, Any]] = self.locals["infos"]
        dones = self.locals["dones"]
        for i, (info, done) in enumerate(zip(infos, dones, strict=True)):
            self._schedules.setdefault(i, []).append(np.asarray(info["layer_densities"]))
            self._invalid[i] = self._invalid.get(i, 0) + int(info["invalid_actions"])
            if not done:
                continue
            schedule = np.stack(self._schedules.pop(i))
            invalid = self._invalid.pop(i)
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
            self.logger.record_mean("episode/invalid_actions", invalid)
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
        self.logger.record("schedule/last_episode", Figure(fig, close=True), exclude=NOT_TEXT)
        self._last = None


class EpisodeLogCallback(BaseCallback):
    """Append one CSV row per finished training episode to ``path`` (the run's learning curve, kept on resume).

    Columns: :data:`EPISODE_LOG_COLUMNS`: the timestep it ended at, its network, the final reward (under paired
    rewards the difference to the reference), the reference's validation accuracy (paired rewards only), and
    the episode's validation and test accuracy and final density. Rows are flushed at the end of each rollout.

    When training starts (a resumed run: from its checkpoint's timestep), rows beyond that timestep are dropped:
    a killed session's episodes after its last checkpoint belong to no model that goes on, and the resumed
    session plays those timesteps again.
    """

    def __init__(self, path: str | Path, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.path = Path(path)
        self._rows: list[dict[str, Any]] = []

    def _on_training_start(self) -> None:
        if not self.path.exists():
            return
        with self.path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        kept = [row for row in rows if int(row["timestep"]) <= self.num_timesteps]
        if len(kept) < len(rows):
            out = io.StringIO()
            writer = csv.DictWriter(out, fieldnames=EPISODE_LOG_COLUMNS)
            writer.writeheader()
            writer.writerows(kept)
            atomic_write_text(self.path, out.getvalue())

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
    """Record the run's hyperparameters (TensorBoard's HPARAMS tab) when training starts.

    Numbers, strings and booleans are recorded as they are, other values as their ``str``; a setting that is
    ``None`` (not set, e.g. ``task`` without a task) is left out rather than recorded as the string ``"None"``.
    """

    def __init__(self, hparams: dict[str, Any], verbose: int = 0) -> None:
        super().__init__(verbose)
        self.hparams = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items() if v is not None
        }

    def _on_training_start(self) -> None:
        metrics = {"eval/val_accuracy": 0.0, "eval/test_accuracy": 0.0, "rollout/ep_rew_mean": 0.0}
        self.logger.record("hparams", HParam(self.hparams, metrics), exclude=NOT_TEXT)

    def _on_step(self) -> bool:
        return True


class AtomicCheckpointCallback(BaseCallback):
    """Every ``every`` timesteps, save the model to ``folder/last.zip`` and ``folder/state.json`` atomically.

    ``episodes`` counts the training episodes finished so far (start it from ``state.json`` when resuming);
    ``seconds`` the training seconds of earlier sessions, to which ``state.json``'s ``train_seconds`` adds this
    session's since training started, so a killed session's seconds up to its last checkpoint stay counted.
    ``evaluation`` (the run's periodic evaluation) and ``earlier`` (the :data:`COST_KEYS` of earlier sessions)
    split those seconds into the training phase's and the periodic evaluations' (:meth:`state`).

    A run killed at any moment leaves the previous complete checkpoint (never a truncated file); ``--resume``
    loads ``last.zip`` and continues the timestep count.
    """

    def __init__(
        self,
        folder: str | Path,
        every: int,
        episodes: int = 0,
        seconds: float = 0.0,
        verbose: int = 0,
        evaluation: PeriodicEvalCallback | None = None,
        earlier: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(verbose)
        self.folder = Path(folder)
        self.every = every
        self.episodes = episodes
        self.seconds = float(seconds)
        self.evaluation = evaluation
        self.earlier = {k: float((earlier or {}).get(k) or 0.0) for k in COST_KEYS}
        self._last_saved = 0
        self._started = time.perf_counter()

    def _on_training_start(self) -> None:
        self._last_saved = self.num_timesteps  # the model's count (a resumed run's), set by on_training_start
        self._started = time.perf_counter()

    def _on_step(self) -> bool:
        self.episodes += int(np.sum(self.locals["dones"]))
        if self.num_timesteps - self._last_saved >= self.every:
            self.save()
        return True

    def save(self) -> Path:
        """Write the checkpoint now; ``state.json``: the timestep count, the finished episodes, the training seconds."""
        path = save_model_atomic(self.model, self.folder / "last.zip")
        atomic_write_text(self.folder / "state.json", json.dumps(self.state()))
        self._last_saved = self.num_timesteps
        return path

    def state(self) -> dict[str, Any]:
        """``state.json``: the timestep count, the finished episodes, and the seconds, all counted over sessions.

        ``train_seconds``: the earlier sessions' plus this one's since training started (the periodic
        evaluations included); ``training_seconds``: the same without the periodic evaluations (the PPO
        training phase alone; the paired reward's reference episodes ran inside it); ``evaluation_seconds``,
        ``evaluation_episodes`` and ``evaluations``: the periodic evaluations' (of ``evaluation``).
        """
        wall = time.perf_counter() - self._started
        ev = self.evaluation
        now = {
            "evaluation_seconds": ev.seconds if ev else 0.0,
            "evaluation_episodes": ev.episodes if ev else 0,
            "evaluations": ev.count if ev else 0,
        }
        total = {k: self.earlier[k] + now.get(k, 0.0) for k in COST_KEYS}
        total["training_seconds"] = self.earlier["training_seconds"] + wall - now["evaluation_seconds"]
        return {
            "num_timesteps": int(self.num_timesteps),
            "episodes": int(self.episodes),
            "train_seconds": round(self.seconds + wall, 1),
            "training_seconds": round(total["training_seconds"], 1),
            "evaluation_seconds": round(total["evaluation_seconds"], 1),
            "evaluation_episodes": int(total["evaluation_episodes"]),
            "evaluations": int(total["evaluations"]),
        }


class BestModelKeeper(BaseCallback):
    """Keep the best model: the child an evaluation callback calls on a new best (SB3's ``callback_on_new_best``).

    Each call (from a :class:`PeriodicEvalCallback`, its ``parent``) saves the model to ``best_path`` atomically and
    writes ``best.json`` beside it (``best_model.json`` for ``best_model.zip``): the timestep and the parent's last
    evaluation's mean validation and test accuracy. :meth:`recorded_best` reads the score back, so a resumed run
    keeps its best.
    """

    def __init__(self, best_path: str | Path, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.best_path = Path(best_path)
        self.best_json = self.best_path.with_suffix(".json")

    def recorded_best(self) -> float:
        """The validation accuracy of the model kept so far (``-inf`` when none is)."""
        return float(json.loads(self.best_json.read_text())["val_accuracy"]) if self.best_json.exists() else -np.inf

    def _on_step(self) -> bool:
        parent = self.parent
        if not isinstance(parent, PeriodicEvalCallback) or parent.last_evaluation is None:
            raise RuntimeError("BestModelKeeper runs as the callback_on_new_best of a PeriodicEvalCallback")
        evaluation = parent.last_evaluation
        save_model_atomic(self.model, self.best_path)
        best = {
            "num_timesteps": int(self.num_timesteps),
            "val_accuracy": evaluation.val_accuracy,
            "test_accuracy": evaluation.test_accuracy,
        }
        atomic_write_text(self.best_json, json.dumps(best))
        return True


Evaluator = Callable[[Any], HeldoutEvaluation]
"""``model -> evaluation``: run by :class:`PeriodicEvalCallback` (:class:`~agents.reports.heldout.HeldoutEvaluator`)."""

EvaluationLog = Callable[[Logger, HeldoutEvaluation, int], None]
"""``(logger, evaluation, timesteps) -> None``: records one (:class:`~agents.reports.heldout.HeldoutTensorBoard`)."""


class PeriodicEvalCallback(EventCallback):
    """Before training, every ``every`` timesteps and at its end, evaluate the model; hand a new best on.

    Each evaluation calls ``evaluator(model)``, then every ``logs`` entry with the logger, the evaluation and the
    timestep, and, when its mean validation accuracy beats ``best`` (strictly), sets ``best`` and calls
    ``callback_on_new_best`` (its ``parent`` is this callback: it reads :attr:`last_evaluation` and :attr:`best`),
    as stable-baselines3's ``EvalCallback`` does; a ``False`` from it stops training. Then it records
    ``eval/best_val_accuracy``. ``every=0`` never evaluates.

    The untrained policy is a candidate too (with a prior it is that handcrafted schedule): when training starts
    at timestep 0 it is evaluated and the logger dumped at step 0, so training must beat it to replace it.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        every: int,
        callback_on_new_best: BaseCallback | None = None,
        logs: Sequence[EvaluationLog] = (),
        best: float = -np.inf,
        verbose: int = 0,
    ) -> None:
        super().__init__(callback_on_new_best, verbose)
        self.evaluator = evaluator
        self.every = every
        self.logs = tuple(logs)
        self.best = float(best)
        self.last_evaluation: HeldoutEvaluation | None = None
        self._last = 0
        self._continue = True
        self.seconds = 0.0  # wall seconds of this session's evaluations
        self.episodes = 0  # their episodes
        self.count = 0  # and their number

    def _init_callback(self) -> None:
        self._last = self.num_timesteps

    def _on_training_start(self) -> None:
        super()._on_training_start()
        if self.every and self.num_timesteps == 0:
            self.evaluate_now()
            self.logger.dump(self.num_timesteps)

    def _on_step(self) -> bool:
        if self.every and self.num_timesteps - self._last >= self.every:
            self.evaluate_now()
        return self._continue

    def _on_training_end(self) -> None:
        if self.every and self.num_timesteps != self._last:
            self.evaluate_now()
            self.logger.dump(self.num_timesteps)  # after the last rollout's dump: write (and close) its figures

    def evaluate_now(self) -> list[Any]:
        """Run the evaluation, log it, hand on a new best; return the episode results."""
        self._last = self.num_timesteps
        start = time.perf_counter()
        evaluation = self.last_evaluation = self.evaluator(self.model)
        self.seconds += time.perf_counter() - start
        self.episodes += len(evaluation.results)
        self.count += 1
        for log in self.logs:
            log(self.logger, evaluation, self.num_timesteps)
        score = evaluation.val_accuracy
        if score > self.best:
            self.best = score
            self._continue = self._on_event()
        self.logger.record("eval/best_val_accuracy", float(self.best))
        return evaluation.results


class HeldoutEvalCallback(PeriodicEvalCallback):
    """The run's periodic evaluation on held-out networks, composed of the parts above; keeps ``best_path``.

    Each evaluation plays ``seeds`` deterministic episodes on every network of ``networks`` (the held-out split,
    or the train split under ``--select-on train``) with :class:`agents.reports.heldout.HeldoutEvaluator` (``workers`` >
    1: on the persistent process pool, from a copy of the model saved as ``.heldout_eval_model.zip`` beside
    ``best_path``), records it with :class:`agents.reports.heldout.HeldoutTensorBoard` (every handcrafted schedule as
    the figure's reference) and keeps the model with the best mean validation accuracy with :class:`BestModelKeeper`
    (``best_path``, and ``best.json`` beside it, read back on ``--resume``). Selection uses validation accuracy
    and seeds of its own, apart from the comparison's.
    """

    def __init__(
        self,
        networks: Sequence[NetworkSpec],
        config: EnvConfig | Mapping[str, Any],
        seeds: Sequence[int],
        every: int,
        best_path: str | Path,
        verbose: int = 0,
        workers: int = 1,
    ) -> None:
        snapshot = Path(best_path).with_name(".heldout_eval_model.zip")
        evaluator = HeldoutEvaluator(networks, config, seeds, workers=workers, snapshot=snapshot)
        keeper = BestModelKeeper(best_path)
        log = HeldoutTensorBoard(evaluator.config.total_iterations, SCHEDULES)
        super().__init__(evaluator, every, keeper, (log,), best=keeper.recorded_best(), verbose=verbose)
