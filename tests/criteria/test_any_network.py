"""Every criterion runs as a fixed policy on any network a user brings (issue 15).

User factories of each kind: an MLP with odd widths, a small Conv2d + BatchNorm + pooling net, and a net with
a residual addition. Each criterion (``make_policy(name, env)`` in the env settings it needs) plays a whole
episode on each; the episode ends with a finite accuracy, and DYNO (growth room on any network, capacity 2)
changes the widths (layers wider than their inputs' rank, so that DYNO finds redundancy to prune).
"""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from baselines import env_kwargs, make_policy
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.experiments.evaluation import run_episode


def odd_mlp(input_shape, num_classes):
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), 37),
        nn.ReLU(),
        nn.Linear(37, 7),
        nn.ReLU(),
        nn.Linear(7, num_classes),
    )


def conv_bn_pool(input_shape, num_classes):
    c, h, w = input_shape
    return nn.Sequential(
        nn.Conv2d(c, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * (h // 2) * (w // 2), 41),
        nn.ReLU(),
        nn.Linear(41, num_classes),
    )


class Residual(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.stem = nn.Linear(math.prod(input_shape), 9)
        self.inner = nn.Linear(9, 31)
        self.back = nn.Linear(31, 9)
        self.out = nn.Linear(9, num_classes)

    def forward(self, x):
        h = torch.relu(self.stem(x.flatten(1)))
        return self.out(h + self.back(torch.relu(self.inner(h))))


FACTORIES = {"odd_mlp": odd_mlp, "conv_bn_pool": conv_bn_pool, "residual": Residual}
FAST = {"dataset": "synthetic", "total_iterations": 40, "decision_interval": 10, "batch_size": 16}


@pytest.mark.parametrize("factory", sorted(FACTORIES))
@pytest.mark.parametrize("name", ["snr", "dyno", "contribution", "neq"])
def test_criterion_runs_on_a_user_network(name, factory, one_torch_thread):
    settings = {**env_kwargs(name), **FAST}
    if name == "snr":  # burn-in of one epoch would leave no decision to prune at in 40 steps
        settings["burn_in_epochs"] = 0.0
    env = SparsityEnv(network=FACTORIES[factory], **settings)
    policy = make_policy(name, env)
    start = [m.num_active for m in env.masks.layers]
    info, _, schedule = run_episode(env, policy, seed=0)
    assert math.isfinite(info["test_accuracy"]) and 0.0 <= info["test_accuracy"] <= 1.0
    assert len(schedule) == 4 and info["invalid_actions"] == 0
    if name == "dyno":
        units = np.array([m.num_units for m in env.masks.layers])
        assert [m.num_active for m in env.masks.layers] != start  # the widths changed
        assert all(n == 2 * a for n, a in zip(units, start, strict=True))  # every controlled layer has growth room
    env.close()
