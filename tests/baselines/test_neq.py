"""NEq in the env (CRITERIA §4): equilibrium selector, threshold actions, freezing instead of pruning."""

import math

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from baselines import available_policies, env_kwargs, make_policy
from sparsity_gym.env.sparsity_env import SparsityEnv

KW = {
    "dataset": "synthetic",
    "total_iterations": 60,
    "decision_interval": 10,
    "batch_size": 32,
    "network_kwargs": {"widths": (16, 12)},
}


@pytest.mark.parametrize(("optimizer", "eps"), [("sgd", 1e-3), ("adam", 5e-2), ("adamw", 5e-2)])
def test_neq_freezes_exactly_the_settled_neurons_and_keeps_them_bit_identical(optimizer, eps):
    env = SparsityEnv(**KW, **env_kwargs("neq"), optimizer=optimizer, lr=0.01, weight_decay=1e-2)
    policy = make_policy("neq", env, eps=eps)
    assert "neq" in available_policies("criterion")
    obs, _ = env.reset(seed=0)
    trackers = env.observers["equilibrium"].trackers
    evaluations = 1
    saved = 0
    while True:
        ready = [t.velocity_ready for t in trackers]
        expected = [
            t.velocity.abs() < eps if r else torch.zeros(t.num_neurons, dtype=torch.bool)
            for t, r in zip(trackers, ready, strict=True)
        ]
        before = [
            (m.info.module.weight.detach().clone(), m.info.module.bias.detach().clone()) for m in env.masks.layers
        ]
        action, _ = policy.predict(obs)
        assert action == pytest.approx(np.full(2, (np.log10(eps) + 6) / 3 - 1))  # log10(eps) on [-6, 0]
        obs, _, term, trunc, info = env.step(action)
        evaluations += 1
        frozen = [env.freezer.frozen(i) for i in range(len(env.masks.layers))]
        for i, layer in enumerate(env.masks.layers):
            assert torch.equal(frozen[i], expected[i])  # |v| < eps, strictly; nothing before the 3rd pass
            w, b = layer.info.module.weight.detach(), layer.info.module.bias.detach()
            assert torch.equal(w[frozen[i]], before[i][0][frozen[i]])  # bit-identical through 10 steps
            assert torch.equal(b[frozen[i]], before[i][1][frozen[i]])
            if (~frozen[i]).any():
                assert not torch.equal(w[~frozen[i]], before[i][0][~frozen[i]])
        # saved backward FLOPs: 2·B·P·F per frozen neuron per iteration (P = 1 for Linear)
        saved += 10 * sum(2 * 32 * int(f.sum()) * m.info.fan_in for f, m in zip(frozen, env.masks.layers, strict=True))
        assert info["saved_backward_flops"] == saved
        assert info["density"] == 1.0  # freezing is not pruning
        if term or trunc:
            break
    assert evaluations == 7 and saved > 0
    assert info["frozen_fraction"] > 0


def test_freezing_leaves_the_forward_pass_unchanged():
    env = SparsityEnv(**KW, **env_kwargs("neq"))
    env.reset(seed=3)
    x = env.data.val_x
    for _ in range(4):
        env.step(np.zeros(2, np.float32))
    env.freezer.set_frozen(0, torch.ones(16, dtype=torch.bool))
    frozen_out = env.model(x)
    env.freezer.remove()
    assert torch.equal(frozen_out, env.model(x))


def test_checkers_pass_in_neq_settings():
    gym_check_env(SparsityEnv(**KW, **env_kwargs("neq")), skip_render_check=True)
    sb3_check_env(SparsityEnv(**KW, **env_kwargs("neq")))


@pytest.mark.parametrize("selector", ["magnitude", "random", "equilibrium"])
@pytest.mark.parametrize("effect", ["prune", "freeze"])
def test_threshold_actions_work_for_every_selector(selector, effect):
    kw = {**KW, "selector": selector, "action_mode": "threshold", "effect": effect, "granularity": "neuron"}
    if effect == "freeze":
        kw["target_density"] = None
    env = SparsityEnv(**kw)
    env.reset(seed=0)
    for a in (-1.0, 0.2, 0.6, float("nan"), 1.0, 0.0):
        obs, _, term, trunc, info = env.step(np.full(2, a, np.float32))
        assert env.observation_space.contains(obs)
    assert info["invalid_actions"] == 0


def test_magnitude_threshold_keeps_units_above_the_rms_scaled_threshold():
    env = SparsityEnv(**{**KW, "granularity": "weight"}, action_mode="threshold", target_density=None)
    env.reset(seed=0)
    w = [m.info.module.weight.detach().abs().clone() for m in env.masks.layers]
    thr = 0.9
    _, _, _, _, info = env.step(env.threshold_to_action(np.full(3, thr)))
    for layer, weights in zip(env.masks.layers, w, strict=True):
        scaled = weights / weights.square().mean().sqrt()
        assert layer.num_active == max(1, int((scaled >= thr).sum()))
        assert info["requested_densities"] == pytest.approx([thr] * 3)


def test_freeze_configuration_errors():
    with pytest.raises(ValueError, match="granularity='weight' is not allowed with effect='freeze'"):
        SparsityEnv(**KW, effect="freeze", target_density=None)
    with pytest.raises(ValueError, match=r"target_density=0\.1 is not allowed with effect='freeze'"):
        SparsityEnv(**KW, effect="freeze", granularity="neuron")
    env = SparsityEnv(**KW)
    with pytest.raises(ValueError, match=r"action_mode='density' is not allowed for policy 'neq'"):
        make_policy("neq", env)
    assert math.isclose(env_kwargs("neq")["target_density"] or 0.0, 0.0)
