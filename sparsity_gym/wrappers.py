"""Fixed spaces over networks of different depth: padding to ``max_layers`` rows, and a family-sampling env.

stable-baselines3 needs one observation and action space for a whole run, while a :class:`SparsityEnv`'s
spaces have one row (and one action) per prunable layer of *its* network. Two pieces make a family of networks
look like one environment:

* :class:`PadLayers` pads the ``(L, F)`` observation to ``(max_layers, F + 1)``: the last column is the row's
  validity (1 for a real layer, 0 for padding; padded rows are all zeros), and only the first ``L`` entries of
  the ``(max_layers,)`` action reach the network. A policy must ignore padded rows (the row-wise policy in
  ``agents.policy`` masks them out of its log-probabilities, entropy and value).
* :class:`FamilyEnv` holds one padded :class:`SparsityEnv` per network of a split and, at every ``reset``,
  samples the network with its own ``np_random`` and resets that env with a seed drawn from the same
  generator, so an episode is reproducible from the seed of the family env alone. Envs are built once and
  reused (they share one copy of the dataset); ``info["network"]`` names the episode's network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from sparsity_gym.config import EnvConfig
from sparsity_gym.env import SparsityEnv
from sparsity_gym.families import NetworkSpec, parse_network

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
        self.num_layers = int(env.observation_space.shape[0])
        self.max_layers = int(max_layers)
        self.observation_space = padded_space(env.observation_space, self.max_layers)
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
        return pad_observation(obs, self.max_layers), reward, terminated, truncated, info


class FamilyEnv(gym.Env[np.ndarray, np.ndarray]):
    """Every episode a network sampled from ``networks`` (its own ``np_random``), padded to ``max_layers``.

    The observation and action spaces are those of :class:`PadLayers`; ``info["network"]`` is the name of the
    episode's network and ``info["layer_names"]`` its layers. ``reset(seed=s)`` draws the network and the inner
    episode's seed from ``np_random``, so the same ``s`` gives the same network, initialisation and data order.

    Args:
        networks: The split to sample from: specs, sized names (``mlp_256x128``), zoo names or factories.
        env_kwargs: The other :class:`EnvConfig` fields, shared by every network (``network`` and
            ``network_kwargs`` come from the spec).
        max_layers: Rows of the padded observation; at least the deepest network's layer count (the default).

    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (Gymnasium's convention)

    def __init__(
        self,
        networks: Sequence[NetworkSpec | str | Any],
        env_kwargs: Mapping[str, Any] | None = None,
        max_layers: int | None = None,
    ) -> None:
        self.specs = tuple(parse_network(n) for n in networks)
        if not self.specs:
            raise ValueError("networks=() is not allowed; expected at least one network")
        base = EnvConfig(**{k: v for k, v in dict(env_kwargs or {}).items() if k not in ("network", "network_kwargs")})
        self.envs: list[SparsityEnv] = []
        for spec in self.specs:
            env = SparsityEnv(config=base.replace(**spec.env_kwargs()))
            if self.envs:
                env.data = self.envs[0].data  # the same dataset and split: keep one copy
            self.envs.append(env)
        depths = [e.action_space.shape[0] for e in self.envs]
        self.max_layers = max(depths) if max_layers is None else int(max_layers)
        self.padded = [PadLayers(e, self.max_layers) for e in self.envs]
        self.observation_space = self.padded[0].observation_space
        self.action_space = self.padded[0].action_space
        self.feature_names = (*self.envs[0].layout.columns, VALID_COLUMN)
        self.index = 0

    @property
    def current(self) -> SparsityEnv:
        """The :class:`SparsityEnv` of the current episode's network."""
        return self.envs[self.index]

    @property
    def network_name(self) -> str:
        """Name of the current episode's network."""
        return self.specs[self.index].name

    @property
    def layer_names(self) -> tuple[str, ...]:
        """Layer names of the current episode's network."""
        return self.current.layer_names

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Sample a network and start a training run of it (seeded from ``np_random``)."""
        super().reset(seed=seed)
        self.index = int(self.np_random.integers(len(self.specs)))
        inner_seed = int(self.np_random.integers(0, 2**31 - 1))
        obs, info = self.padded[self.index].reset(seed=inner_seed, options=options)
        info.update(network=self.network_name, layer_names=self.layer_names)
        return obs, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Step the current network's env (the first ``L`` action entries)."""
        obs, reward, terminated, truncated, info = self.padded[self.index].step(action)
        info.update(network=self.network_name, layer_names=self.layer_names)
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        """Close every inner env."""
        for env in self.envs:
            env.close()
