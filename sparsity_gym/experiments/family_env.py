"""An env that trains a different network of a family every episode, padded to the deepest one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from sparsity_gym.datasets import load_dataset
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.env.wrappers import VALID_COLUMN, PadLayers
from sparsity_gym.experiments.families import NetworkSpec, parse_network


class FamilyEnv(gym.Env[np.ndarray, np.ndarray]):
    """Every episode a network sampled from ``networks`` (its own ``np_random``), padded to ``max_layers``.

    The observation and action spaces are those of :class:`PadLayers`; ``info["network"]`` is the name of the
    episode's network and ``info["layer_names"]`` its layers. ``reset(seed=s)`` draws the network and the inner
    episode's seed from ``np_random``, so the same ``s`` gives the same network, initialisation and data order.
    ``config`` (the shared settings) and ``layout`` (the rows' columns, the same for every network) are what a
    policy checks before acting (``agents.ppo.agent.LayerwiseAgent.bind``). Copies and pickles follow the inner
    envs': they work at any time, exact between episodes; a copy taken in the middle of an episode cannot
    continue it, and its ``step()`` before a ``reset()`` raises ``TypeError`` saying so and how to build a new
    one (``FamilyEnv(env.specs, env.config, env.max_layers)``).

    Args:
        networks: The split to sample from: specs, sized names (``mlp_256x128``), zoo names or factories.
        config: The env config shared by every network (an :class:`EnvConfig` or its keyword arguments;
            ``network`` and ``network_kwargs`` come from the spec).
        max_layers: Rows of the padded observation; at least the deepest network's layer count (the default).

    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (Gymnasium's convention)

    def __init__(
        self,
        networks: Sequence[NetworkSpec | str | Any],
        config: EnvConfig | Mapping[str, Any] | None = None,
        max_layers: int | None = None,
    ) -> None:
        self.specs = tuple(parse_network(n) for n in networks)
        if not self.specs:
            raise ValueError("networks=() is not allowed; expected at least one network")
        if not isinstance(config, EnvConfig):
            config = EnvConfig(
                **{k: v for k, v in dict(config or {}).items() if k not in ("network", "network_kwargs")}
            )
        base = config
        self.config = base
        data = load_dataset(base.dataset, base.data_seed, base.data_root)  # loaded once, shared by every network
        self.envs: list[SparsityEnv] = [
            SparsityEnv(config=base.replace(**spec.env_kwargs()), data=data) for spec in self.specs
        ]
        depths = [len(e.layer_names) for e in self.envs]
        self.max_layers = max(depths) if max_layers is None else int(max_layers)
        self.padded = [PadLayers(e, self.max_layers) for e in self.envs]
        self.observation_space = self.padded[0].observation_space
        self.action_space = self.padded[0].action_space
        self.feature_names = (*self.envs[0].layout.columns, VALID_COLUMN)
        self.index = 0
        self.in_episode = False  # between a reset and the episode's end
        self.copied_mid_episode = False  # a copy of an env that was in the middle of an episode

    @property
    def current(self) -> SparsityEnv:
        """The :class:`SparsityEnv` of the current episode's network."""
        return self.envs[self.index]

    @property
    def layout(self) -> Any:
        """The observation layout of the rows (every network's: the columns depend on the config alone)."""
        return self.envs[0].layout

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
        self.in_episode, self.copied_mid_episode = True, False
        return obs, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Step the current network's env (the first ``L`` action entries)."""
        if self.copied_mid_episode:
            raise TypeError(
                "this FamilyEnv is a copy taken in the middle of an episode: its network's training state lives in "
                "hooks a copy does not carry, so it cannot continue it. Call reset(), or build a new one: "
                "FamilyEnv(env.specs, env.config, env.max_layers)"
            )
        obs, reward, terminated, truncated, info = self.padded[self.index].step(action)
        info.update(network=self.network_name, layer_names=self.layer_names)
        self.in_episode = not (terminated or truncated)
        return obs, reward, terminated, truncated, info

    def __getstate__(self) -> dict[str, Any]:
        """The env's state for a copy (the inner envs copy themselves); a mid-episode copy must reset first."""
        return {**self.__dict__, "copied_mid_episode": self.in_episode or self.copied_mid_episode}

    def close(self) -> None:
        """Close every inner env."""
        for env in self.envs:
            env.close()
