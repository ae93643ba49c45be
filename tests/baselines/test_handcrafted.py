"""Handcrafted cells by name: parsing, env settings, the grid, and the policies they make."""

import numpy as np
import pytest

from baselines import env_kwargs, handcrafted_grid, make_policy, parse_cell
from baselines.schedules import cubic, linear
from sparsity_gym.env.sparsity_env import SparsityEnv

FAST = {"dataset": "synthetic", "total_iterations": 20, "decision_interval": 10, "batch_size": 32, "observations": ()}


def test_parse_names():
    assert parse_cell("cubic") == ("cubic", None, None)
    assert parse_cell("cubic+erk") == ("cubic", None, "erk")
    assert parse_cell("linear@0.9+lamp") == ("linear", 0.9, "lamp")
    assert parse_cell("cosine@0.5") == ("cosine", 0.5, None)
    for bad, field in (("cubicc", "shape"), ("cubic@x", "@"), ("cubic@1.5", "window end"), ("cubic+foo", "alloc")):
        with pytest.raises(ValueError, match=field):
            parse_cell(bad)


def test_env_kwargs_of_names():
    assert env_kwargs("cubic") == {}  # a plain name keeps its meaning
    assert env_kwargs("linear@0.5") == {}
    assert env_kwargs("cubic+erk") == {"allocation": "erk"}
    assert env_kwargs("linear@0.9+global_magnitude") == {"allocation": "global_magnitude"}
    assert env_kwargs("snr")["selector"] == "snr"  # registered methods unchanged


def test_grid_lists_the_cells():
    grid = handcrafted_grid(["linear", "constant"], [0.5, 0.9], [None, "erk"])
    assert grid == ["linear@0.5", "linear@0.5+erk", "linear@0.9", "linear@0.9+erk", "constant", "constant+erk"]
    assert all(parse_cell(name) for name in grid)
    with pytest.raises(ValueError, match="shape='nope'"):
        handcrafted_grid(["nope"], [0.5], [None])


def test_cell_policy_follows_its_window_and_needs_its_allocation():
    env = SparsityEnv(**FAST, target_density=0.2, **env_kwargs("linear@0.5+erk"))
    policy = make_policy("linear@0.5+erk", env)
    assert policy.name == "linear@0.5+erk"
    assert policy.density(0.25) == pytest.approx(linear(0.25, 0.2, p_end=0.5))
    assert policy.density(0.5) == pytest.approx(0.2) and policy.density(0.7) == pytest.approx(0.2)
    plain = make_policy("cubic", SparsityEnv(**FAST, target_density=0.2))
    assert plain.density(0.3) == pytest.approx(cubic(0.3, 0.2))  # the default window (0.75)
    with pytest.raises(ValueError, match="allocation='policy' is not allowed for policy 'cubic\\+lamp'"):
        make_policy("cubic+lamp", SparsityEnv(**FAST))
    obs, _ = env.reset(seed=0)
    action, _ = policy.predict(obs)
    assert action.shape == env.action_space.shape and np.all(np.abs(action) <= 1)
