"""stable-baselines3 callbacks: episode statistics and schedules to TensorBoard, atomic checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Figure

from sparsity_gym.io import atomic_write, atomic_write_text


class EpisodeStatsCallback(BaseCallback):
    """Log each finished training episode through ``self.logger.record``.

    Scalars: ``episode/val_accuracy``, ``episode/test_accuracy``, ``episode/final_density``,
    ``episode/flops_fraction``, ``episode/training_gflops``, ``episode/invalid_actions``, and for every layer
    ``density/<layer>`` (its density averaged over the episode's decisions: the area under its schedule).
    Once per rollout, the last finished episode's per-layer schedule as a figure (``schedule/last_episode``).
    """

    def __init__(self, layer_names: tuple[str, ...], verbose: int = 0) -> None:
        super().__init__(verbose)
        self.layer_names = layer_names
        self._schedules: dict[int, list[np.ndarray]] = {}
        self._last_schedule: np.ndarray | None = None

    def _on_step(self) -> bool:
        infos: list[dict[str, Any]] = self.locals["infos"]
        dones = self.locals["dones"]
        for i, (info, done) in enumerate(zip(infos, dones, strict=True)):
            self._schedules.setdefault(i, []).append(np.asarray(info["layer_densities"]))
            if not done:
                continue
            schedule = np.stack(self._schedules.pop(i))
            self._last_schedule = schedule
            self.logger.record_mean("episode/val_accuracy", info["val_accuracy"])
            if "test_accuracy" in info:
                self.logger.record_mean("episode/test_accuracy", info["test_accuracy"])
            self.logger.record_mean("episode/final_density", info["density"])
            self.logger.record_mean("episode/flops_fraction", info["flops"] / info["dense_flops"])
            self.logger.record_mean("episode/training_gflops", info["training_flops"] / 1e9)
            self.logger.record_mean("episode/invalid_actions", info["invalid_actions"])
            for name, mean_density in zip(self.layer_names, schedule.mean(axis=0), strict=True):
                self.logger.record_mean(f"density/{name}", float(mean_density))
        return True

    def _on_rollout_end(self) -> None:
        if self._last_schedule is None:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4, 3))
        steps = np.arange(len(self._last_schedule))
        for name, column in zip(self.layer_names, self._last_schedule.T, strict=True):
            ax.step(steps, column, where="post", label=name)
        ax.set_xlabel("decision")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
        fig.tight_layout()
        self.logger.record("schedule/last_episode", Figure(fig, close=True), exclude=("stdout", "log", "json", "csv"))
        self._last_schedule = None


class AtomicCheckpointCallback(BaseCallback):
    """Every ``every`` timesteps, save the model to ``folder/last.zip`` and ``folder/state.json`` atomically.

    A run killed at any moment leaves the previous complete checkpoint (never a truncated file); ``--resume``
    loads ``last.zip`` and continues the timestep count.
    """

    def __init__(self, folder: str | Path, every: int, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.folder = Path(folder)
        self.every = every
        self._last_saved = 0

    def _init_callback(self) -> None:
        self._last_saved = self.num_timesteps

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last_saved >= self.every:
            self.save()
        return True

    def save(self) -> Path:
        """Write the checkpoint now."""
        path = save_model_atomic(self.model, self.folder / "last.zip")
        atomic_write_text(self.folder / "state.json", json.dumps({"num_timesteps": int(self.num_timesteps)}))
        self._last_saved = self.num_timesteps
        return path


def save_model_atomic(model: Any, path: str | Path) -> Path:
    """``model.save`` through a temporary file renamed onto ``path``."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            model.save(fh)

    return atomic_write(path, write)
