"""The PPO training phase with whole-episode collection (``--collect episodes``), for ``bench/learning_cost.py``.

:class:`EpisodePhase` is ``learning_cost.PPOPhase``'s counterpart on :class:`agents.ppo.episode_ppo.EpisodePPO`:
the same task, envs (timed the same way), policy, prior and paired reward (with its own reference cache, so
neither phase reads the other's reference episodes), continued round by round on one model; its envs run on
the shared process pool that the search and the plain loop use.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from agents.ppo.episode_ppo import EpisodeCollector, EpisodePPO
from agents.run.model import new_model
from agents.settings.train_config import TrainConfig
from sparsity_gym.experiments.families import get_family


class TimedEpisodePPO(EpisodePPO):
    """:class:`EpisodePPO` whose updates are timed into ``updates_seconds``."""

    updates_seconds = 0.0

    def train(self) -> None:
        """One PPO update, timed."""
        start = time.perf_counter()
        super().train()
        self.updates_seconds += time.perf_counter() - start


class Networks(BaseCallback):
    """The networks of the finished training episodes, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def _on_step(self) -> bool:
        self.names += [i["network"] for i, d in zip(self.locals["infos"], self.locals["dones"], strict=True) if d]
        return True


class EpisodePhase:
    """The PPO training phase on whole episodes, continued round by round (see the module docstring)."""

    def __init__(self, cfg: TrainConfig, prior: str, prior_cell: str, folder: Path, updates: int, env_fn: Any) -> None:
        family = get_family(cfg.family)
        cache = str(folder / "reference_cache_episodes.json")
        paired = (prior_cell, cache, cfg.seed_pool) if cfg.reward == "paired" else None
        factory = functools.partial(env_fn, tuple(family.train), cfg.env, paired)
        self.collector = EpisodeCollector(factory, cfg.n_envs, episode_length=cfg.env.num_decisions, seed=cfg.seed)
        self.model = new_model(cfg, self.collector, prior, family, cls=TimedEpisodePPO)  # type: ignore[arg-type]
        self.steps = updates * cfg.n_steps * cfg.n_envs
        self.networks = Networks()

    def run(self) -> tuple[float, float, dict[str, float], list[str]]:
        """One round: ``(seconds, episodes, parts as fractions of the round, networks of the finished episodes)``.

        The episodes are the whole episodes run plus the paired reward's reference episodes; the parts: the
        workers busy on episodes (their seconds over the workers) and the PPO updates.
        """
        c = self.collector
        before = (c.episodes_run, c.reference_episodes, c.episode_seconds, self.model.updates_seconds)
        seen = len(self.networks.names)
        start = time.perf_counter()
        self.model.learn(self.steps, callback=self.networks, reset_num_timesteps=False)
        seconds = time.perf_counter() - start
        episodes = c.episodes_run - before[0] + c.reference_episodes - before[1]
        parts = {
            "workers busy on episodes": (c.episode_seconds - before[2]) / c.workers / seconds,
            "PPO updates (this process)": (self.model.updates_seconds - before[3]) / seconds,
        }
        return seconds, episodes, parts, self.networks.names[seen:]
