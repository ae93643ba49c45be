"""The registered id carries each config's horizon; an outside truncation keeps what is known."""

import gymnasium as gym
import pytest

import sparsity_gym  # noqa: F401  (registers the ids)


@pytest.mark.parametrize(("total", "interval"), [(8, 2), (8, 4)])
def test_the_time_limit_is_the_configs_horizon(total, interval, tiny):
    env = gym.make("SparsityGym/Schedule-v0", **{**tiny, "total_iterations": total, "decision_interval": interval})
    assert env.spec.max_episode_steps == total // interval
    env.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps, done = steps + 1, terminated or truncated
    assert steps == total // interval and "test_accuracy" in info  # the env's own end, not cut short
    assert reward == pytest.approx(info["val_accuracy"])  # final_accuracy is paid there


@pytest.mark.parametrize("reward", ["final_accuracy", "delta_accuracy"])
def test_an_outside_truncation_keeps_what_is_known(reward, tiny):
    env = gym.make("SparsityGym/Schedule-v0", max_episode_steps=2, reward=reward, **tiny)
    _, first = env.reset(seed=0)
    rewards = []
    for _ in range(2):
        _, r, terminated, truncated, info = env.step(env.action_space.sample())
        rewards.append(r)
    assert truncated and not terminated
    assert info["decision"] == 2 and info["num_decisions"] == 4 and "test_accuracy" not in info
    assert 0.0 <= info["val_accuracy"] <= 1.0
    if reward == "final_accuracy":  # paid only at the env's own end
        assert sum(rewards) == 0.0
    else:  # paid as it goes: the validation accuracy gained so far
        assert sum(rewards) == pytest.approx(info["val_accuracy"] - first["val_accuracy"])
