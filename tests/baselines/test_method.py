"""A method as a policy of the pruning driver: its settings, the columns it reads, and what it binds to."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from baselines import env_kwargs, make_policy, method
from baselines.fixed_policies import pruning_context
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.pruning.pruner import Pruner

TINY = {"dataset": "synthetic", "total_iterations": 20, "decision_interval": 10, "batch_size": 16}


@pytest.mark.parametrize("name", ["cubic@0.9+erk", "linear", "snr", "neq", "contribution", "dyno"])
def test_settings_are_the_env_settings_and_reads_are_the_policys_own(name):
    m = method(name)
    assert m.settings == env_kwargs(name)
    kwargs = {**TINY, **env_kwargs(name)}
    if name == "dyno":
        kwargs["observations"] = ("rank",)
    env = SparsityEnv(**kwargs)
    bound = m.bind(env)
    assert type(bound) is type(make_policy(name, env))
    assert m.reads == bound.reads and set(bound.reads) <= set(env.layout.columns)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(bound.predict(obs)[0], make_policy(name, env).predict(obs)[0])


def test_options_go_to_the_factory_and_a_cell_takes_none():
    env = SparsityEnv(**TINY, **env_kwargs("contribution"))
    assert method("contribution", keep=0.5).bind(env).keep == 0.5
    with pytest.raises(ValueError, match="takes no keyword arguments"):
        method("cubic+erk", p_end=0.5)


def test_a_pruning_context_is_an_env_or_a_pruner():
    env = SparsityEnv(**TINY)
    assert pruning_context(env) is env
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    pruner = Pruner(model, torch.optim.SGD(model.parameters(), lr=0.1), total_steps=20)
    assert pruning_context(pruner) is pruner
    with pytest.raises(ValueError, match=r"^context=dict is not allowed; expected a SparsityEnv"):
        pruning_context({})
