"""A toy env for the whole-episode collection tests: episode lengths and ends vary with the reset seed."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class ToyEnv(gym.Env):
    """Obs (3,), action (2,) in [-1, 1]; 2-6 steps; odd lengths end truncated, even ones terminated."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-10.0, 10.0, (3,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.length, self.t, self.state = 0, 0, np.zeros(3, np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.length = int(self.np_random.integers(2, 7))
        self.t = 0
        self.state = self.np_random.normal(size=3).astype(np.float32)
        return self.state.copy(), {}

    def step(self, action):
        self.t += 1
        self.state = (0.5 * self.state + np.array([action[0], action[1], 0.1], np.float32)).astype(np.float32)
        reward = float(self.state[0] - abs(action[1]))
        end = self.t >= self.length
        return self.state.copy(), reward, end and self.length % 2 == 0, end and self.length % 2 == 1, {"t": self.t}
