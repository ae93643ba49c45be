"""Contribution pruning in the env (CRITERIA §3): rounds of ceil(10%·N), scores over the window, ties."""

import math

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from baselines import env_kwargs, make_policy
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.masks.selectors import lowest_among

KW = {
    "dataset": "synthetic",
    "total_iterations": 50,
    "decision_interval": 10,
    "batch_size": 16,
    "network_kwargs": {"widths": (20, 11)},
}


def _brute_force(pairs, n):
    """λ1·C_avg + λ2·C_max (λ = 0.5) by the triple loop of CRITERIA §3 over every captured forward pass."""
    total, count, best = np.zeros(n), 0, np.zeros(n)
    for a, w in pairs:
        a, w = np.abs(a.double().numpy()), np.abs(w.double().numpy())
        for s in range(a.shape[0]):
            for j in range(w.shape[0]):
                denom = float((w[j] * a[s]).sum())
                c = w[j] * a[s] / denom if denom > 0 else np.zeros(n)
                total += c
                best = np.maximum(best, c)
                count += 1
    return 0.5 * total / count + 0.5 * best


def test_rounds_remove_the_lowest_ceil_tenth_scored_over_the_whole_window():
    env = SparsityEnv(**KW, **env_kwargs("contribution"))
    policy = make_policy("contribution", env, start=0.2, keep=0.6)
    obs, _ = env.reset(seed=0)
    first, second = env.masks.layers
    captured = []
    handle = second.info.module.register_forward_pre_hook(
        lambda m, args: captured.append((args[0].detach().clone(), m.weight.detach().clone())) if m.training else None
    )
    rounds = 0
    for _ in range(5):
        captured.clear()
        active_before = first.unit_mask.clone()
        scores = env.observers["contribution"].unit_scores().get(first.info.name)
        action, _ = policy.predict(obs)
        obs, _, term, trunc, info = env.step(action)
        n_before, n_after = int(active_before.sum()), first.num_active
        if n_after < n_before:
            rounds += 1
            assert n_before - n_after == math.ceil(0.1 * n_before)
            expected = set(lowest_among(scores, active_before, n_before - n_after, high_index_first=True).tolist())
            assert set(torch.nonzero(active_before & ~first.unit_mask).flatten().tolist()) == expected
        if not (term or trunc):  # the scores the next round uses are those of every step just trained
            np.testing.assert_allclose(
                env.observers["contribution"].unit_scores()[first.info.name].numpy(),
                _brute_force(captured, 20),
                rtol=1e-9,
                atol=1e-12,
            )
            assert len(captured) == 10
    handle.remove()
    # decisions at progress 0 (before maturity), 0.2, 0.4, 0.6, 0.8: 20 -> 18 -> 16 -> 14 -> 12 neurons
    assert rounds == 4 and info["layer_densities"][0] == pytest.approx(12 / 20)
    assert trunc


def test_ties_go_to_the_higher_index():
    scores = torch.tensor([0.2, 0.1, 0.1, 0.5, 0.1])
    active = torch.ones(5, dtype=torch.bool)
    assert lowest_among(scores, active, 2, high_index_first=True).tolist() == [4, 2]
    assert lowest_among(scores, active, 2).tolist() == [1, 2]


def test_policy_counts_and_checkers():
    env = SparsityEnv(**KW, **env_kwargs("contribution"))
    policy = make_policy("contribution", env, keep=0.5)
    units = policy.units
    assert policy.counts(0.1, np.ones(2)).tolist() == units.tolist()  # before maturity: nothing
    assert policy.counts(0.5, np.ones(2)).tolist() == [20 - 2, 11 - 2]  # ceil(10% of 20) = 2, ceil(1.1) = 2
    assert policy.counts(0.5, np.array([10, 5]) / units).tolist() == [10, 5]  # target met: stop
    gym_check_env(SparsityEnv(**KW, **env_kwargs("contribution")), skip_render_check=True)
    sb3_check_env(SparsityEnv(**KW, **env_kwargs("contribution")))
