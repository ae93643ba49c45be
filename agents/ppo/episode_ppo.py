"""PPO without lockstep: rollouts gathered as whole episodes on the process pool (``--collect episodes``).

A vector env's step waits for its slowest env, and a task's networks differ in cost by 2x or more. Here no
worker waits for another inside a rollout: :class:`EpisodeCollector` (a ``VecEnv`` in name, for SB3's
bookkeeping: spaces, ``n_envs``, seeding) hands whole episodes to whichever worker of the shared process pool
(:func:`sparsity_gym.experiments.pool.shared_pool`) is free; each worker runs its episode with a copy of the
current policy (weights shipped once per rollout) and returns the trajectory
(:func:`agents.ppo.episode_rollouts.run_episode`). :class:`EpisodePPO` fills its ``RolloutBuffer`` from them
(:func:`agents.ppo.episode_rollouts.pack`), computes GAE as SB3 does, and replays the steps to the callbacks row
by row (``infos``, ``dones``, ``rewards`` and ``num_timesteps`` as SB3's collection gives them), so the
checkpoints, the episode log and the TensorBoard records work unchanged.

Seeding: episode ``k`` after ``seed(s)`` gets its env seed and action-noise seed from
``numpy.random.SeedSequence([s, k])``, so the same seed gives the same trajectories for any worker count.
Not supported here: ``VecNormalize`` (``--norm-reward``), gSDE, ``set_attr`` / ``env_method`` on the envs.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices

from agents.ppo.episode_rollouts import EpisodeJob, Trajectory, columns_filled, pack, policy_payload, run_episode
from sparsity_gym.core.checks import check_number
from sparsity_gym.experiments.pool import shared_pool


def _attr(env_fn: Callable[[], gym.Env], name: str) -> Any:
    """An attribute of a fresh env (through its wrappers); runs in a pool worker."""
    env = env_fn()
    try:
        return env.get_wrapper_attr(name)
    finally:
        env.close()


class EpisodeCollector(VecEnv):
    """``n_envs`` buffer columns filled by whole episodes run on the pool (see the module docstring).

    Args:
        env_fn: The env factory (picklable), as for ``SubprocVecEnv``.
        n_envs: The rollout buffer's columns (PPO's ``n_envs``).
        workers: The pool's processes (default ``n_envs``).
        threads: Torch threads per worker.
        episode_length: Decisions an episode usually takes (how many episodes a rollout asks for first).
        seed: The episodes' base seed (see :meth:`seed`).

    """

    def __init__(
        self,
        env_fn: Callable[[], gym.Env],
        n_envs: int,
        workers: int = 0,
        threads: int = 1,
        episode_length: int = 1,
        seed: int = 0,
    ) -> None:
        check_number("n_envs", n_envs, low=1, integer=True)
        check_number("workers", workers, low=0, integer=True)
        check_number("episode_length", episode_length, low=1, integer=True)
        self.env_fn = env_fn
        self.workers, self.threads = int(workers or n_envs), int(threads)
        self.episode_length = int(episode_length)
        self.key = uuid.uuid4().hex
        self.version = 0
        self.base_seed, self.next_episode = int(seed), 0
        self.reference_episodes, self.reference_seconds = 0, 0.0
        self.episode_seconds = 0.0  # the workers' own seconds on the episodes (a bench's breakdown)
        self.episodes_run = 0  # whole episodes run (a cut one's dropped steps included)
        pool = shared_pool(self.workers, self.threads)
        observation_space = pool.submit(_attr, env_fn, "observation_space").result()
        action_space = pool.submit(_attr, env_fn, "action_space").result()
        super().__init__(n_envs, observation_space, action_space)

    # --- the episodes ---------------------------------------------------------------------------------------
    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Start the episodes' seed stream again at ``seed`` (episode ``k``: ``SeedSequence([seed, k])``)."""
        self.base_seed, self.next_episode = int(seed or 0), 0
        return [None] * self.num_envs

    def _job(self, data: dict[str, Any], weights: bytes, gamma: float, policy_class: type) -> EpisodeJob:
        env_seed, action_seed = np.random.SeedSequence([self.base_seed, self.next_episode]).generate_state(2)
        self.next_episode += 1
        return EpisodeJob(
            self.key, self.env_fn, policy_class, data, weights, self.version, int(env_seed), int(action_seed), gamma
        )

    def collect(self, policy: Any, n_steps: int, gamma: float) -> list[Trajectory]:
        """Whole episodes with ``policy``'s current weights, enough to fill ``n_steps`` rows of every column.

        First ``n_envs * ceil(n_steps / episode_length)`` episodes go to the pool together; where shorter
        episodes leave a column unfilled, more follow. The order is the submission order (seeds in sequence).
        """
        self.version += 1
        data, weights = policy_payload(policy)
        pool = shared_pool(self.workers, self.threads)
        count = self.num_envs * math.ceil(n_steps / self.episode_length)
        trajectories: list[Trajectory] = []
        while True:
            futures = [pool.submit(run_episode, self._job(data, weights, gamma, type(policy))) for _ in range(count)]
            trajectories += [f.result() for f in futures]
            if columns_filled([len(t) for t in trajectories], n_steps, self.num_envs):
                break
            count = self.num_envs
        self.episodes_run += len(trajectories)
        for t in trajectories:
            self.reference_episodes += t.reference[0]
            self.reference_seconds += t.reference[1]
            self.episode_seconds += t.seconds
        return trajectories

    # --- what SB3 asks of a VecEnv ----------------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        """Placeholder observations (zeros): every rollout starts fresh episodes in the workers."""
        shape = tuple(self.observation_space.shape or ())
        return np.zeros((self.num_envs, *shape), dtype=self.observation_space.dtype)

    def step_async(self, actions: np.ndarray) -> None:
        """Not available: the episodes run whole in the workers."""
        raise NotImplementedError("collect='episodes' runs whole episodes in the workers; there is no step()")

    def step_wait(self) -> Any:
        """Not available (see :meth:`step_async`)."""
        raise NotImplementedError("collect='episodes' runs whole episodes in the workers; there is no step()")

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """An attribute of a fresh env, once per chosen column (built in a worker)."""
        value = shared_pool(self.workers, self.threads).submit(_attr, self.env_fn, attr_name).result()
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Not available: the workers' envs live in the pool."""
        raise NotImplementedError(f"collect='episodes': set_attr({attr_name!r}) is not available")

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Not available: the workers' envs live in the pool."""
        raise NotImplementedError(f"collect='episodes': env_method({method_name!r}) is not available")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """The workers wrap every env in ``Monitor`` (as ``make_vec_env`` does), nothing else."""
        from stable_baselines3.common.monitor import Monitor

        return [wrapper_class is Monitor for _ in self._get_indices(indices)]

    def close(self) -> None:
        """Nothing to close: the pool is shared (and shut down at exit)."""


def reference_cost(vec_env: VecEnv) -> tuple[int, float]:
    """The paired reward's reference episodes run so far and their seconds, summed over the envs.

    An :class:`EpisodeCollector`'s come with its trajectories; a vector env's from each env's ``cache``.
    """
    collector = vec_env.unwrapped
    if isinstance(collector, EpisodeCollector):
        return collector.reference_episodes, collector.reference_seconds
    caches = vec_env.get_attr("cache")
    return sum(c.episodes for c in caches), sum(c.seconds for c in caches)


class EpisodePPO(PPO):
    """PPO whose rollouts are whole episodes from an :class:`EpisodeCollector` (see the module docstring)."""

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """Fill ``rollout_buffer`` from whole episodes, replay the steps to ``callback``, compute GAE."""
        collector = env.unwrapped
        if not isinstance(collector, EpisodeCollector):
            raise ValueError(f"env={type(collector).__name__!r} is not allowed; expected an EpisodeCollector")
        if self.use_sde:
            raise ValueError("use_sde=True is not allowed with collect='episodes'")
        self.policy.set_training_mode(False)
        rollout_buffer.reset()
        callback.on_rollout_start()
        trajectories = collector.collect(self.policy, n_rollout_steps, self.gamma)
        packed = pack(trajectories, rollout_buffer)
        for t in range(n_rollout_steps):
            self.num_timesteps += env.num_envs
            infos, dones = packed.infos[t], packed.dones[t]
            callback.update_locals({"infos": infos, "dones": dones, "rewards": packed.raw_rewards[t]})
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
        self._last_episode_starts = np.ones(env.num_envs, dtype=bool)
        rollout_buffer.compute_returns_and_advantage(
            last_values=torch.as_tensor(packed.last_values)[:, None], dones=packed.last_dones
        )
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True
