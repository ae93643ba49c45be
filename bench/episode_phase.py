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
from agents.ppo.layerwise_policy import LayerwisePolicy
from agents.ppo.schema import model_schema
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


def policy_kwargs(cfg: TrainConfig, names: list[str], prior: str) -> dict[str, Any]:
    """The task run's policy settings (``agents.run.train.train_ppo``'s)."""
    family = get_family(cfg.family)
    return {
        "hidden": cfg.policy_hidden,
        "feature_names": names,
        "prior": prior,
        "density_range": (cfg.env.min_density, cfg.env.max_density),
        "action_scale": cfg.env.action_scale,
        "log_std_init": cfg.log_std_init,
        "pooling": cfg.policy_pooling,
        "schema": model_schema(names[:-1], cfg.env, prior, cfg.task, [s.name for s in family.train]),
    }


class EpisodePhase:
    """The PPO training phase on whole episodes, continued round by round (see the module docstring)."""

    def __init__(self, cfg: TrainConfig, prior: str, prior_cell: str, folder: Path, updates: int, env_fn: Any) -> None:
        family = get_family(cfg.family)
        cache = str(folder / "reference_cache_episodes.json")
        paired = (prior_cell, cache, cfg.seed_pool) if cfg.reward == "paired" else None
        factory = functools.partial(env_fn, tuple(family.train), cfg.env, paired)
        self.collector = EpisodeCollector(factory, cfg.n_envs, episode_length=cfg.env.num_decisions, seed=cfg.seed)
        names = self.collector.get_attr("feature_names")[0]
        self.model = TimedEpisodePPO(
            LayerwisePolicy, self.collector, n_steps=cfg.n_steps, batch_size=cfg.batch_size, n_epochs=cfg.n_epochs,
            seed=cfg.seed, device="cpu", policy_kwargs=policy_kwargs(cfg, names, prior),
        )  # fmt: skip
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
