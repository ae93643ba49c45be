"""The environment contract of DESIGN.md: checkers, determinism, spaces, projection, info, failures."""

import gymnasium as gym
import numpy as np
import pytest
import torch.nn as nn
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import sparsity_gym  # noqa: F401  (registers the ids)
from sparsity_gym.env.sparsity_env import SparsityEnv


def user_factory(input_shape, num_classes):
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(int(np.prod(input_shape)), 12),
        nn.Tanh(),
        nn.Linear(12, 8),
        nn.ReLU(),
        nn.Linear(8, num_classes),
    )


def conv_factory():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 4))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"network": user_factory},
        {"network": conv_factory, "granularity": "neuron"},
        {"network": "cnn", "granularity": "neuron", "selector": "random"},
    ],
)
def test_both_checkers_pass(kwargs, fast_env_kwargs):
    env = SparsityEnv(**fast_env_kwargs, **kwargs)
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(SparsityEnv(**fast_env_kwargs, **kwargs), warn=True)


def test_checkers_pass_on_the_default_env():
    gym_check_env(SparsityEnv(total_iterations=40, decision_interval=20), skip_render_check=True)
    sb3_check_env(SparsityEnv(total_iterations=40, decision_interval=20))


def test_gym_make_with_keywords(fast_env_kwargs):
    env = gym.make(
        "SparsityGym/Schedule-v0",
        network="mlp",
        target_density=0.3,
        granularity="neuron",
        selector="random",
        regrowth="random",
        **fast_env_kwargs,
    )
    obs, info = env.reset(seed=0)
    assert env.unwrapped.config.granularity == "neuron"
    assert isinstance(env.unwrapped.model, nn.Module)
    assert obs.shape == (2, len(env.unwrapped.layout.features))  # the output layer is not pruned by neuron
    env.close()


def _rollout(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    trace = [obs]
    rewards = []
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        trace.append(obs)
        rewards.append(r)
    return np.stack(trace), rewards, info


def test_same_seed_same_episode(fast_env_kwargs):
    actions = [np.array([0.5, -0.2, 0.9], np.float32), np.array([-0.5, -0.9, 0.1], np.float32)] * 2
    env = SparsityEnv(**fast_env_kwargs, selector="random", exchange_fraction=0.1)
    a = _rollout(env, 7, actions)
    b = _rollout(SparsityEnv(**fast_env_kwargs, selector="random", exchange_fraction=0.1), 7, actions)
    c = _rollout(env, 8, actions)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1] and a[2]["test_accuracy"] == b[2]["test_accuracy"]
    assert not np.array_equal(a[0], c[0])


def test_reset_builds_a_new_initialisation(fast_env_kwargs):
    env = SparsityEnv(**fast_env_kwargs)
    env.reset(seed=1)
    w1 = env.model[1].weight.detach().clone()
    env.reset(seed=2)
    assert not np.allclose(w1.numpy(), env.model[1].weight.detach().numpy())
    env.reset(seed=1)
    np.testing.assert_array_equal(w1.numpy(), env.model[1].weight.detach().numpy())


def test_episode_structure_projection_and_info(fast_env_kwargs):
    env = SparsityEnv(**fast_env_kwargs, target_density=0.25)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert info["density"] == 1.0
    steps = 0
    while True:
        obs, reward, term, trunc, info = env.step(np.ones(3, np.float32))  # ask for dense every time
        steps += 1
        assert env.observation_space.contains(obs)
        for key in (
            "density",
            "layer_densities",
            "val_accuracy",
            "train_loss",
            "flops",
            "training_flops",
            "target_density",
            "requested_densities",
            "invalid_actions",
        ):
            assert key in info
        if term or trunc:
            break
        assert reward == 0.0 and "test_accuracy" not in info
    assert steps == 4 and trunc and not term
    assert info["requested_densities"] == pytest.approx([0.25] * 3)  # the last decision is projected
    assert info["layer_densities"] == pytest.approx([0.25] * 3, abs=1e-3)
    assert reward == pytest.approx(info["val_accuracy"])
    assert 0.0 <= info["test_accuracy"] <= 1.0
    assert info["flops"] < info["dense_flops"]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(3, np.float32))


def test_flops_and_global_density_by_brute_force(fast_env_kwargs):
    env = SparsityEnv(**fast_env_kwargs, network_kwargs={"widths": (16, 8)})
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([-0.5, 0.0, 0.5], np.float32))
    weights = [m.weight.detach() for m in env.model if isinstance(m, nn.Linear)]
    nnz = [int((w != 0).sum()) for w in weights]
    assert info["flops"] == sum(2 * n for n in nnz)
    assert info["density"] == pytest.approx(sum(nnz) / sum(w.numel() for w in weights))
    assert info["training_flops"] == 3 * 32 * 10 * info["flops"]


def test_action_map_and_invalid_actions(fast_env_kwargs):
    env = SparsityEnv(**fast_env_kwargs, min_density=0.1, max_density=0.9, target_density=None)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([-1.0, 0.0, 1.0], np.float32))
    assert info["requested_densities"] == pytest.approx([0.1, 0.5, 0.9])
    assert info["invalid_actions"] == 0
    before = info["layer_densities"].copy()
    _, _, _, _, info = env.step(np.array([np.nan, np.inf, -7.0], np.float32))
    assert info["invalid_actions"] == 3
    assert info["requested_densities"] == pytest.approx([before[0], 0.9, 0.1], abs=1e-6)
    with pytest.raises(ValueError, match=r"shape \(2,\); expected \(3,\)"):
        env.step(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="dtype"):
        env.step(np.array(["a", "b", "c"]))


def test_docstring_lists_every_observation_column():
    env = SparsityEnv(dataset="synthetic", total_iterations=10, decision_interval=10)
    for feature in env.layout.features:
        assert f"| {feature.name} " in SparsityEnv.__doc__


def test_delta_reward_sums_to_final_minus_initial(fast_env_kwargs):
    env = SparsityEnv(**fast_env_kwargs, reward="delta_accuracy", density_cost=0.5)
    _, info = env.reset(seed=3)
    start = info["val_accuracy"]
    total = 0.0
    done = False
    while not done:
        _, r, term, trunc, info = env.step(np.zeros(3, np.float32))
        total += r
        done = term or trunc
    assert total == pytest.approx(info["val_accuracy"] - start - 0.5 * info["density"])


def test_divergence_terminates_with_the_defined_reward(fast_env_kwargs):
    env = SparsityEnv(**{**fast_env_kwargs, "lr": 1e6, "momentum": 0.0, "weight_decay": 0.0}, divergence_reward=-1.0)
    env.reset(seed=0)
    for _ in range(4):
        obs, r, term, trunc, info = env.step(np.ones(3, np.float32))
        assert np.all(np.isfinite(obs))
        if term:
            break
    assert term and not trunc and r == -1.0 and info["diverged"] and "test_accuracy" in info
    obs, _ = env.reset(seed=0)
    assert np.all(np.isfinite(obs))
