"""Paired rewards: the final validation accuracy minus a reference policy's on the same network and seed.

Why: an episode's final accuracy varies by 0.2–0.6 points from seed to seed, as much as anything a schedule
changes. Two schedules run on the same seed (same initialisation and data order) differ with a std 0.27–0.93 of
the unpaired one, so subtracting the reference's accuracy on the same seed removes most of the seed's luck from
the reward (a control variate; the baseline-subtraction idea of Williams 1992, §4, here per episode and outside
the learner).

:class:`PairedReward` wraps a :class:`~sparsity_gym.experiments.family_env.FamilyEnv` on the agents' side (the
env never imports a baseline). Training seeds come from a finite pool per training network (``seed_pool``
seeds each), so the reference costs **one episode per (network, seed)** for the whole run: its results are
cached in memory and in a JSON file of the run folder, keyed by network, inner seed and the env config's hash
(``sparsity_gym.experiments.evaluation.config_hash``). Vector-env workers share the file (each merges what
the others wrote before it replaces the file atomically); two workers that meet a new pair at the same time
both run it, so the cost is at most one episode per (network, seed) per worker. Only the last step's reward
changes (the env's ``final_accuracy`` reward; a diverged episode keeps the env's defined
``divergence_reward``); ``info["reference_val_accuracy"]`` says what was subtracted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from sparsity_gym.core.io import atomic_write_text
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.experiments.evaluation import config_hash, env_settings, run_episode
from sparsity_gym.experiments.family_env import FamilyEnv
from sparsity_gym.experiments.seeds import seed_start

POOL_SEED_START = seed_start("pool")
"""Outer seeds of the pool are searched from here (``sparsity_gym.experiments.seeds``: apart from all others)."""


def family_draw(seed: int, n_networks: int) -> tuple[int, int]:
    """``(network index, inner seed)`` that ``FamilyEnv.reset(seed=seed)`` draws (checked at every reset)."""
    rng, _ = gym.utils.seeding.np_random(int(seed))
    return int(rng.integers(n_networks)), int(rng.integers(0, 2**31 - 1))


def seed_pool(n_networks: int, per_network: int, start: int = POOL_SEED_START) -> list[list[int]]:
    """For each network, the first ``per_network`` outer seeds from ``start`` on whose draw picks that network."""
    pool: list[list[int]] = [[] for _ in range(n_networks)]
    seed = start
    while min(len(p) for p in pool) < per_network:
        index, _ = family_draw(seed, n_networks)
        if len(pool[index]) < per_network:
            pool[index].append(seed)
        seed += 1
    return pool


class ReferenceCache:
    """Reference validation accuracies by ``network|inner seed|config hash``, in memory and in ``path``."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        self.values: dict[str, float] = {}
        self.episodes = 0  # reference episodes this process ran (cache misses)
        self.seconds = 0.0
        self._read()

    def _read(self) -> None:
        if self.path is not None and self.path.exists():
            self.values.update(json.loads(self.path.read_text()))

    @staticmethod
    def key(network: str, seed: int, settings_hash: str) -> str:
        """The cache key of one reference episode."""
        return f"{network}|{seed}|{settings_hash}"

    def get(self, key: str, compute: Callable[[], float]) -> float:
        """The cached value of ``key``, else ``compute()`` (timed, counted, stored and written)."""
        if key not in self.values:
            self._read()  # another worker may have run it meanwhile
        if key not in self.values:
            start = time.perf_counter()
            self.values[key] = float(compute())
            self.seconds += time.perf_counter() - start
            self.episodes += 1
            if self.path is not None:
                self._read()  # merge what other workers wrote, then replace the file atomically
                atomic_write_text(self.path, json.dumps(self.values, indent=1, sort_keys=True))
        return self.values[key]


class PairedReward(gym.Wrapper):
    """The last reward minus the reference's final validation accuracy on the same network and seed.

    Args:
        env: A :class:`FamilyEnv` whose config has ``reward="final_accuracy"``.
        reference: ``env -> policy`` (SB3 ``predict``), e.g. ``functools.partial(baselines.make_policy, name)``.
        cache: Where reference results live (shared by the wrappers of one process, or one file per run).
        per_network: Training seeds per network in the pool (0: no pool, every episode a new seed, and the
            reference runs once per episode).

    """

    def __init__(
        self, env: FamilyEnv, reference: Callable[[Any], Any], cache: ReferenceCache, per_network: int = 0
    ) -> None:
        super().__init__(env)
        if not isinstance(env, FamilyEnv):
            raise ValueError(f"env={type(env).__name__!r} is not allowed; expected a FamilyEnv")
        rewards = {e.config.reward for e in env.envs}
        if rewards != {"final_accuracy"}:
            raise ValueError(
                f"reward={sorted(rewards)!r} is not allowed under paired rewards; expected 'final_accuracy'"
            )
        self.family = env
        self.reference = reference
        self.cache = cache
        self.pool = seed_pool(len(env.specs), per_network) if per_network else None
        self._hashes = [config_hash(env_settings(e.config)) for e in env.envs]
        self._ref_envs: dict[int, SparsityEnv] = {}
        self._pool_rng = np.random.default_rng(0)
        self._key = ""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        """Start an episode: with a pool, on a (network, seed) drawn from it (the first ``seed`` seeds the draw)."""
        if seed is not None:
            self._pool_rng = np.random.default_rng(seed)
        if self.pool is not None:
            index = int(self._pool_rng.integers(len(self.pool)))
            seed = int(self.pool[index][int(self._pool_rng.integers(len(self.pool[index])))])
        if seed is None:
            seed = int(self._pool_rng.integers(0, 2**31 - 1))
        index, inner = family_draw(seed, len(self.family.specs))
        obs, info = self.env.reset(seed=seed, options=options)
        if self.family.index != index:
            raise RuntimeError("FamilyEnv drew another network than family_draw predicts; update family_draw")
        self._inner = inner
        self._key = ReferenceCache.key(self.family.network_name, inner, self._hashes[index])
        return obs, info

    def _reference_accuracy(self) -> float:
        index = self.family.index
        if index not in self._ref_envs:
            inner = self.family.envs[index]
            self._ref_envs[index] = SparsityEnv(config=inner.config, data=inner.data)
        env = self._ref_envs[index]
        info, _, _ = run_episode(env, self.reference(env), self._inner)
        return float(info["val_accuracy"])

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict]:
        """Step; on the episode's last step subtract the reference's final validation accuracy."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        if (terminated or truncated) and not info.get("diverged", False):
            ref = self.cache.get(self._key, self._reference_accuracy)
            info.update(reference_val_accuracy=ref, unpaired_reward=float(reward))
            reward = float(reward) - ref
        return obs, float(reward), terminated, truncated, info

    def close(self) -> None:
        """Close the reference envs and the wrapped env."""
        for env in self._ref_envs.values():
            env.close()
        super().close()
