"""Fixed spaces over networks of different depth: padding to ``max_layers`` rows.

stable-baselines3 needs one observation and action space for a whole run, while a :class:`SparsityEnv`'s
spaces have one row (and one action) per prunable layer of *its* network. Two pieces make a family of networks
look like one environment (the second is :class:`sparsity_gym.experiments.family_env.FamilyEnv`):

* :class:`PadLayers` pads the ``(L, F)`` observation to ``(max_layers, F + 1)``: the last column is the row's
  validity (1 for a real layer, 0 for padding; padded rows are all zeros), and only the first ``L`` entries of
  the ``(max_layers,)`` action reach the network. A policy must ignore padded rows (the row-wise policy in
  ``agents.ppo.layerwise_policy`` masks them out of its log-probabilities, entropy and value).
* :class:`FamilyEnv` holds one padded :class:`SparsityEnv` per network of a split and, at every ``reset``,
  samples the network with its own ``np_random`` and resets that env with a seed drawn from the same
  generator, so an episode is reproducible from the seed of the family env alone. Envs are built once and
  reused (they share one copy of the dataset); ``info["network"]`` names the episode's network.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

VALID_COLUMN = "valid"


def padded_space(space: gym.spaces.Box, max_layers: int) -> gym.spaces.Box:
    """The ``(max_layers, F + 1)`` Box of :class:`PadLayers` for an ``(L, F)`` observation Box."""
    layers, _ = space.shape
    if layers > max_layers:
        raise ValueError(
            f"max_layers={max_layers} is not allowed for a network of {layers} layers; expected >= {layers}"
        )
    low = np.concatenate([space.low[:1], np.zeros((1, 1), np.float32)], axis=1)
    high = np.concatenate([space.high[:1], np.ones((1, 1), np.float32)], axis=1)
    return gym.spaces.Box(
        np.repeat(np.minimum(low, 0.0), max_layers, axis=0).astype(np.float32),
        np.repeat(np.maximum(high, 0.0), max_layers, axis=0).astype(np.float32),
        dtype=np.float32,
    )


def pad_observation(observation: np.ndarray, max_layers: int) -> np.ndarray:
    """``(L, F)`` → ``(max_layers, F + 1)``: a validity column of ones, then zero rows (validity 0)."""
    obs = np.asarray(observation, dtype=np.float32)
    out = np.zeros((max_layers, obs.shape[1] + 1), dtype=np.float32)
    out[: obs.shape[0], :-1] = obs
    out[: obs.shape[0], -1] = 1.0
    return out


class PadLayers(gym.Wrapper):
    """Pad a :class:`SparsityEnv`'s observation to ``max_layers`` rows plus a validity column; slice actions.

    Observation: ``Box((max_layers, F + 1), float32)``; column ``F`` is 1 on the network's ``L`` rows and 0
    on padding rows (which are all zeros). Action: ``Box(-1, 1, (max_layers,), float32)``; entries past ``L``
    are ignored. ``info`` passes through unchanged.
    """

    def __init__(self, env: gym.Env, max_layers: int) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 2:
            raise ValueError(f"env has observation space {space}; expected an (L, F) Box (a SparsityEnv)")
        self.num_layers = int(space.shape[0])
        self.max_layers = int(max_layers)
        self.observation_space = padded_space(space, self.max_layers)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(self.max_layers,), dtype=np.float32)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        """Reset the inner env and pad its observation."""
        obs, info = self.env.reset(**kwargs)
        return pad_observation(obs, self.max_layers), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Step the inner env with the first ``L`` action entries; pad the observation."""
        arr = np.asarray(action)
        if arr.shape != self.action_space.shape:
            raise ValueError(f"action has shape {arr.shape}; expected {self.action_space.shape} (max_layers values)")
        obs, reward, terminated, truncated, info = self.env.step(arr[: self.num_layers])
        return pad_observation(obs, self.max_layers), float(reward), terminated, truncated, info
