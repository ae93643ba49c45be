"""deepcopy, pickle and cloudpickle of envs and fixed policies: a copy plays what the original would, or refuses."""

import copy
import pickle

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
import torch

import sparsity_gym  # noqa: F401  (registers the ids)
from baselines import available_policies, env_kwargs, make_policy
from sparsity_gym.datasets import load_dataset
from sparsity_gym.env.sparsity_env import SparsityEnv

ACTIONS = [np.array(a, np.float32) for a in ([0.2, -0.5, 0.9], [-0.8, -0.9, 0.1], [0.0, 0.3, -1.0], [1.0, 1.0, 1.0])]
ROUND_TRIPS = {
    "deepcopy": copy.deepcopy,
    "pickle": lambda env: pickle.loads(pickle.dumps(env)),
    "cloudpickle": lambda env: cloudpickle.loads(cloudpickle.dumps(env)),
}


def play(env, seed=None):
    """One episode of fixed actions; the observations, rewards and the infos' densities."""
    obs, _ = env.reset(seed=seed)
    trace, rewards, densities = [obs], [], []
    for action in ACTIONS:
        obs, reward, terminated, truncated, info = env.step(action)
        trace.append(obs)
        rewards.append(reward)
        densities.append(info["layer_densities"])
        assert_masks_enforced(env.unwrapped, info)
    assert truncated
    return np.stack(trace), rewards, np.stack(densities)


def assert_masks_enforced(base, info):
    """Count the non-zero weights by hand: never more than the reported density (regrown weights start at
    zero, so fewer is possible), and every weight outside the mask is exactly zero."""
    for layer, reported in zip(base.masks.layers, info["layer_densities"], strict=True):
        weight = layer.info.module.weight.detach()
        assert torch.count_nonzero(weight).item() <= round(reported * weight.numel())
        assert layer.active_weight_mask.float().mean().item() == pytest.approx(reported, abs=1e-6)
        assert torch.all(weight[~layer.active_weight_mask] == 0)


@pytest.mark.parametrize("how", sorted(ROUND_TRIPS))
def test_a_copy_plays_the_same_episodes_with_its_masks_enforced(how, tiny):
    env = SparsityEnv(**tiny, selector="random")
    fresh = ROUND_TRIPS[how](env)  # before the first reset
    reference = play(env, seed=5)
    after_episode = ROUND_TRIPS[how](env)  # between episodes: the random stream continues from here
    for a, b in zip(play(fresh, seed=5), reference, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    next_original = play(env)  # no seed: drawn from the env's own random stream
    for a, b in zip(play(after_episode), next_original, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_wrapped_env_copies_and_the_pickle_is_small(tiny):
    env = gym.make("SparsityGym/Schedule-v0", **tiny)
    assert len(pickle.dumps(env)) < 10_000  # config and random state, not the network or the data
    clone = copy.deepcopy(env)
    assert clone.spec.max_episode_steps == 4
    for a, b in zip(play(clone, seed=2), play(env, seed=2), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_data_passed_in_travels_with_the_copy(tiny):
    data = load_dataset("synthetic", 0, None)
    env = SparsityEnv(**tiny, data=data)
    clone = pickle.loads(pickle.dumps(env))
    assert torch.equal(clone.data.train_x, data.train_x) and clone._data_given


@pytest.mark.parametrize("how", sorted(ROUND_TRIPS))
def test_mid_episode_copies_wait_for_a_reset_and_say_how_to_rebuild(how, tiny):
    env = SparsityEnv(**{**tiny, "observations": ("equilibrium", "rank")})
    env.reset(seed=0)
    env.step(ACTIONS[0])
    clone = ROUND_TRIPS[how](env)  # the episode's hooks do not travel: the copy cannot continue it
    with pytest.raises(TypeError, match=r"middle of an episode .*gym\.make\('SparsityGym/Schedule-v0', config="):
        clone.step(ACTIONS[1])
    rebuilt = gym.make("SparsityGym/Schedule-v0", config=env.config)  # what the message says to do
    assert rebuilt.unwrapped.config == env.config
    env.step(ACTIONS[1])
    env.step(ACTIONS[2])
    env.step(ACTIONS[3])
    assert set(clone.observers) == {"equilibrium", "rank"}
    for a, b in zip(play(clone), play(env), strict=True):  # its next episode is the original's next one
        assert np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("how", sorted(ROUND_TRIPS))
def test_copies_after_an_outside_time_limit_truncated_the_episode(how, tiny):
    env = gym.make("SparsityGym/Schedule-v0", max_episode_steps=2, **tiny)
    env.reset(seed=4)
    for action in ACTIONS[:2]:
        *_, truncated, info = env.step(action)
    assert truncated and info["decision"] == 2 < info["num_decisions"]  # cut short by the wrapper, not the env
    clone = ROUND_TRIPS[how](env)
    for seed in (None, 7):
        obs_a, _ = clone.reset(seed=seed)
        obs_b, _ = env.reset(seed=seed)
        assert np.array_equal(obs_a, obs_b)
        for action in ACTIONS[:2]:
            a, b = clone.step(action), env.step(action)
            assert np.array_equal(a[0], b[0]) and a[1:4] == b[1:4]


@pytest.mark.parametrize("name", available_policies())
def test_pickled_fixed_policies_are_small_and_act_the_same(name, tiny):
    kwargs = {**tiny, **env_kwargs(name)}
    if name == "dyno":
        kwargs.update(observations=("rank",), stats_window=2)
    env = SparsityEnv(**kwargs)
    policy = make_policy(name, env)
    obs, _ = env.reset(seed=0)
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        blob = dumps(policy)
        assert len(blob) < 4_000, f"{name}: {len(blob)} bytes"
        clone = loads(blob)
        assert np.array_equal(clone.predict(obs)[0], policy.predict(obs)[0])
    assert np.array_equal(copy.deepcopy(policy).predict(obs)[0], policy.predict(obs)[0])
