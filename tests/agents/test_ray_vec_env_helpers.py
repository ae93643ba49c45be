"""RayVecEnv's copies of SB3's worker helpers agree with SB3's own (no Ray needed)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env.subproc_vec_env import _stack_obs

from agents.ppo.ray_vec_env import gymnasium_env, stack_observations


def _assert_same(ours, theirs):
    if isinstance(theirs, dict):
        assert ours.keys() == theirs.keys()
        for key in theirs:
            np.testing.assert_array_equal(ours[key], theirs[key])
    elif isinstance(theirs, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.Box(-1.0, 1.0, (3, 2), np.float32),
        gym.spaces.Dict({"a": gym.spaces.Box(0.0, 1.0, (2,)), "b": gym.spaces.Discrete(4)}),
        gym.spaces.Tuple((gym.spaces.Box(0.0, 1.0, (2,)), gym.spaces.Discrete(3))),
    ],
    ids=["box", "dict", "tuple"],
)
def test_stack_observations_is_sb3s_stacking(space):
    space.seed(0)
    observations = [space.sample() for _ in range(3)]
    stacked = stack_observations(observations, space)
    _assert_same(stacked, _stack_obs(observations, space))
    leaves = stacked.values() if isinstance(stacked, dict) else stacked if isinstance(stacked, tuple) else [stacked]
    assert all(np.asarray(leaf).shape[0] == len(observations) for leaf in leaves)


def test_only_gymnasium_envs_are_stepped():
    env = gym.make("CartPole-v1")
    assert gymnasium_env(env) is env
    with pytest.raises(ValueError, match=r"^env='object' is not allowed; expected a gymnasium.Env"):
        gymnasium_env(object())
