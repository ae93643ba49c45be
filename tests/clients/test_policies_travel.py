"""A fixed policy reads the target from the observation and refuses observations it was not built for."""

import numpy as np
import pytest

from baselines import SCHEDULES, env_kwargs, make_policy
from sparsity_gym.env.sparsity_env import SparsityEnv


@pytest.mark.parametrize("name", ["linear", "cubic"])
def test_a_policy_built_for_one_target_follows_the_schedule_of_the_env_it_acts_in(name, tiny):
    built_on = SparsityEnv(**tiny, target_density=0.1)
    policy = make_policy(name, built_on)
    env = SparsityEnv(**tiny, target_density=0.5)
    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        expected = SCHEDULES[name](env.progress, 0.5)  # independently: the schedule of the 0.5 target
        obs, _, terminated, truncated, info = env.step(policy.predict(obs)[0])
        done = terminated or truncated
        assert info["requested_densities"] == pytest.approx(np.full(3, 0.5 if done else expected), abs=1e-6)
    assert info["density"] == pytest.approx(0.5, abs=0.01)


def test_no_target_keeps_the_schedule_dense(tiny):
    env = SparsityEnv(**tiny, target_density=None)
    obs, _ = env.reset(seed=0)
    action, _ = make_policy("linear", SparsityEnv(**tiny)).predict(obs)
    assert np.allclose(action, 1.0)


def test_an_observation_with_other_columns_is_refused(tiny):
    policy = make_policy("linear", SparsityEnv(**tiny))
    other = SparsityEnv(**{**tiny, "observations": ("equilibrium",)})
    obs, _ = other.reset(seed=0)
    with pytest.raises(ValueError, match="columns"):
        policy.predict(obs)


def test_a_unit_counting_policy_refuses_other_layers(tiny):
    kwargs = {**tiny, **env_kwargs("contribution")}
    policy = make_policy("contribution", SparsityEnv(**kwargs))
    deeper = SparsityEnv(**{**kwargs, "network_kwargs": {"widths": (16, 12, 8)}})
    obs, _ = deeper.reset(seed=0)
    with pytest.raises(ValueError, match="layers"):
        policy.predict(obs)
