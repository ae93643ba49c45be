"""Whole episodes as trajectories: run in a pool worker with a copy of the policy, packed into PPO's buffer.

The worker side of ``--collect episodes`` (:mod:`agents.ppo.episode_ppo`): :func:`run_episode` runs one whole
episode in a pool worker (CPU inference there, the policy's weights loaded once per rollout) and returns its
:class:`Trajectory` (observations, actions, log-probabilities, values, rewards, infos). An episode is a function
of the policy's weights and its two seeds (the env's reset seed and the action noise's seed), never of which
worker ran it or what that worker ran before, so the same seeds give the same trajectories for any worker count.

The main process side: :func:`pack` lays the trajectories into a stable-baselines3 ``RolloutBuffer`` of
``n_steps x n_envs`` (each trajectory, in order, into the column with the fewest filled rows), and SB3's own
``compute_returns_and_advantage`` computes GAE from it. Two ends, as SB3 treats them (``OnPolicyAlgorithm
.collect_rollouts``): an episode *truncated* by a time limit gets ``gamma * V(terminal observation)`` added to
its last reward (the worker adds it, with the same weights); an episode *cut* by the buffer's end bootstraps
from ``V`` of the observation after the cut (``last_values``, ``dones`` false) and its remaining steps are
dropped (they would be off-policy in the next rollout), so ``n_steps`` a multiple of the episode length wastes
nothing.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.monitor import Monitor


@dataclass(frozen=True)
class EpisodeJob:
    """What a worker needs for one episode: env factory, policy (class, constructor data, weights), seeds."""

    key: str  # the collector's id: a worker keeps one env and one policy per key
    env_fn: Callable[[], gym.Env]
    policy_class: type
    policy_data: dict[str, Any]
    weights: bytes  # ``torch.save`` of the policy's state dict
    version: int  # the rollout's number: the weights are loaded when it changes
    env_seed: int
    action_seed: int
    gamma: float


@dataclass
class Trajectory:
    """One whole episode: per step the observation, action, log-prob, value, reward and info.

    ``rewards`` are what PPO stores (the last one with the truncation bootstrap, if any), ``raw_rewards`` what
    the env gave; ``next_value`` is ``V`` of the observation after each step (0 after the last), the bootstrap
    of a cut; ``reference`` the paired reward's reference ``(episodes, seconds)`` run during the episode.
    """

    observations: np.ndarray
    actions: np.ndarray
    log_probs: np.ndarray
    values: np.ndarray
    rewards: np.ndarray
    raw_rewards: np.ndarray
    next_values: np.ndarray
    infos: list[dict[str, Any]]
    reference: tuple[int, float] = (0, 0.0)
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.rewards)


def no_learning_rate(_: float) -> float:
    """The worker's copy never trains: a picklable learning-rate schedule in place of the model's."""
    return 0.0


def policy_payload(policy: Any) -> tuple[dict[str, Any], bytes]:
    """The policy's constructor data (learning-rate schedule replaced) and its weights as bytes."""
    data = dict(policy._get_constructor_parameters())
    data["lr_schedule"] = no_learning_rate
    buffer = io.BytesIO()
    torch.save(policy.state_dict(), buffer)
    return data, buffer.getvalue()


_CACHE: dict[str, Any] = {}


def _worker_state(job: EpisodeJob) -> tuple[gym.Env, Any]:
    """The worker's env and policy for ``job.key`` (built on the key's first job; one key kept)."""
    if _CACHE.get("key") != job.key:
        _CACHE.clear()
        _CACHE.update(key=job.key, env=Monitor(job.env_fn()), version=None)
        _CACHE["policy"] = job.policy_class(**job.policy_data)
    if _CACHE["version"] != job.version:
        _CACHE["policy"].load_state_dict(torch.load(io.BytesIO(job.weights), weights_only=True))
        _CACHE["policy"].set_training_mode(False)
        _CACHE["version"] = job.version
    return _CACHE["env"], _CACHE["policy"]


def _reference(env: gym.Env) -> tuple[int, float]:
    try:
        cache = env.get_wrapper_attr("cache")  # the paired reward's reference cache
    except AttributeError:
        return 0, 0.0
    return (int(cache.episodes), float(cache.seconds)) if cache is not None else (0, 0.0)


def _act(policy: Any, obs: Any, noise: torch.Generator) -> tuple[np.ndarray, float, float]:
    """A sampled action (the distribution's mean plus seeded noise), its log-prob and the state's value."""
    with torch.no_grad():
        tensor = policy.obs_to_tensor(obs)[0]
        dist = policy.get_distribution(tensor)
        mean, std = dist.distribution.mean, dist.distribution.stddev
        action = mean + std * torch.randn(mean.shape, generator=noise, dtype=mean.dtype)
        return action[0].numpy(), float(dist.log_prob(action)[0]), float(policy.predict_values(tensor)[0, 0])


def _value(policy: Any, obs: Any) -> float:
    with torch.no_grad():
        return float(policy.predict_values(policy.obs_to_tensor(obs)[0])[0, 0])


def run_episode(job: EpisodeJob) -> Trajectory:
    """Run one whole episode in this (worker) process with the job's policy and seeds (module docstring)."""
    import time

    start = time.perf_counter()
    env, policy = _worker_state(job)
    noise = torch.Generator().manual_seed(job.action_seed)
    before = _reference(env)
    obs, _ = env.reset(seed=job.env_seed)
    space = env.action_space
    rows: dict[str, list[Any]] = {k: [] for k in ("obs", "act", "logp", "value", "reward", "info")}
    while True:
        action, log_prob, value = _act(policy, obs, noise)
        clipped = np.clip(action, space.low, space.high) if isinstance(space, gym.spaces.Box) else action
        next_obs, reward, terminated, truncated, info = env.step(clipped)
        for k, v in zip(rows, (obs, action, log_prob, value, float(reward), info), strict=True):
            rows[k].append(v)
        if terminated or truncated:
            info["terminal_observation"] = next_obs
            info["TimeLimit.truncated"] = bool(truncated and not terminated)
            break
        obs = next_obs
    values = np.asarray(rows["value"], np.float32)
    raw = np.asarray(rows["reward"], np.float32)
    rewards = raw.copy()
    if rows["info"][-1]["TimeLimit.truncated"]:  # SB3's timeout bootstrap, with the same weights
        rewards[-1] += job.gamma * _value(policy, rows["info"][-1]["terminal_observation"])
    after = _reference(env)
    return Trajectory(
        observations=np.stack(rows["obs"]),
        actions=np.stack(rows["act"]).astype(np.float32),
        log_probs=np.asarray(rows["logp"], np.float32),
        values=values,
        rewards=rewards,
        raw_rewards=raw,
        next_values=np.append(values[1:], np.float32(0.0)),
        infos=rows["info"],
        reference=(after[0] - before[0], after[1] - before[1]),
        seconds=time.perf_counter() - start,
    )


@dataclass
class Packed:
    """Where :func:`pack` put the trajectories: per row the callbacks' view, per column the rollout's end."""

    infos: list[list[dict[str, Any]]]  # [row][column]
    dones: np.ndarray  # (n_steps, n_envs): the step ended its episode (a whole one, not a cut)
    raw_rewards: np.ndarray  # (n_steps, n_envs)
    last_values: np.ndarray  # (n_envs,): V after each column's last row (0 where an episode ended there)
    last_dones: np.ndarray  # (n_envs,)
    used: int  # trajectories used (whole or cut), from the first


def columns_filled(lengths: list[int], n_steps: int, n_envs: int) -> bool:
    """Whether trajectories of these lengths, packed in order, fill every column of ``n_steps`` rows."""
    fill = [0] * n_envs
    for length in lengths:
        c = int(np.argmin(fill))
        if fill[c] >= n_steps:
            return True
        fill[c] = min(n_steps, fill[c] + length)
    return min(fill) >= n_steps


def pack(trajectories: list[Trajectory], buffer: RolloutBuffer) -> Packed:
    """Fill ``buffer`` (reset, ``n_steps x n_envs``) from ``trajectories`` in order (module docstring).

    Raises:
        ValueError: The trajectories do not fill every column.

    """
    n_steps, n_envs = buffer.buffer_size, buffer.n_envs
    fill = [0] * n_envs
    dones = np.zeros((n_steps, n_envs), dtype=bool)
    raw = np.zeros((n_steps, n_envs), dtype=np.float32)
    infos: list[list[dict[str, Any]]] = [[{} for _ in range(n_envs)] for _ in range(n_steps)]
    last_values = np.zeros(n_envs, dtype=np.float32)
    last_dones = np.zeros(n_envs, dtype=np.float32)
    used = 0
    for traj in trajectories:
        c = int(np.argmin(fill))
        if fill[c] >= n_steps:
            break
        t, m = fill[c], min(len(traj), n_steps - fill[c])
        rows = slice(t, t + m)
        buffer.observations[rows, c] = traj.observations[:m].reshape(buffer.observations[rows, c].shape)
        buffer.actions[rows, c] = traj.actions[:m].reshape(buffer.actions[rows, c].shape)
        buffer.rewards[rows, c] = traj.rewards[:m]
        buffer.values[rows, c] = traj.values[:m]
        buffer.log_probs[rows, c] = traj.log_probs[:m]
        buffer.episode_starts[rows, c] = 0.0
        buffer.episode_starts[t, c] = 1.0
        raw[rows, c] = traj.raw_rewards[:m]
        for i in range(m):
            infos[t + i][c] = traj.infos[i]
        whole = m == len(traj)
        dones[t + m - 1, c] = whole
        last_dones[c] = float(whole)
        last_values[c] = 0.0 if whole else traj.next_values[m - 1]
        fill[c] += m
        used += 1
    if min(fill) < n_steps:
        raise ValueError(f"trajectories fill {min(fill)} of {n_steps} rows of a column; expected all of them")
    buffer.pos, buffer.full = n_steps, True
    return Packed(infos, dones, raw, last_values, last_dones, used)
