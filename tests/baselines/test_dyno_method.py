"""DYNO in the env (CRITERIA §2): capacity layers, the redundancy selector, NORTH growth and the policy."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import FAST_ENV
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from baselines import available_policies, env_kwargs, make_policy
from baselines.criteria import DynoPolicy
from sparsity_gym.criteria.dyno import north_select_scores
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.masks.selectors import SelectionContext
from sparsity_gym.models.layers import find_prunable_layers

KW = {**FAST_ENV, "network_kwargs": {"widths": (16, 12)}}


def test_capacity_builds_wider_layers_with_the_spare_units_masked():
    env = SparsityEnv(**KW, **env_kwargs("dyno"))
    env.reset(seed=0)
    assert [m.num_units for m in env.masks.layers] == [32, 24]
    assert [m.num_active for m in env.masks.layers] == [16, 12]
    first, second, out = (m.info.module for m in env.masks.all_layers)
    assert torch.all(first.weight[16:] == 0) and torch.all(first.bias[16:] == 0)
    assert torch.all(second.weight[:, 16:] == 0) and torch.all(out.weight[:, 12:] == 0)  # fan-out masked too
    with pytest.raises(ValueError, match="capacity"):
        EnvConfig(capacity=2.0)  # weight granularity
    # a user factory with no hidden layer to widen: refused when the env builds it
    with pytest.raises(ValueError, match="capacity"):
        flat = {"network": lambda: nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), "network_kwargs": {}}
        SparsityEnv(**{**KW, **env_kwargs("dyno"), **flat})


def test_redundancy_selector_drops_dormant_then_duplicated_neurons():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    masks = MaskedNetwork(find_prunable_layers(model, (3,)), granularity="neuron", selector="redundancy")
    g = torch.Generator().manual_seed(0)
    base = torch.rand(50, 3, generator=g)
    # unit 3 is dormant; units 0 and 4 are the same direction (scaled); 1 and 2 are independent
    rows = torch.stack([base[:, 0], base[:, 1], base[:, 2], torch.zeros(50), 2 * base[:, 0]], dim=1)
    masks.set_counts([3], SelectionContext(g, {"rank": {"0": rows}}))
    kept = masks.layers[0].unit_mask.tolist()
    assert kept[3] is False  # dormant first
    assert kept[0] != kept[4]  # one of the duplicated pair goes
    assert kept[1] and kept[2]


def test_north_growth_picks_the_best_candidate_with_zero_fan_out_bias_and_state():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masks = MaskedNetwork(find_prunable_layers(model, (4,)), granularity="neuron", regrowth="north", optimizer=opt)
    masks.set_keep([torch.tensor([True, True, True, False, False, False])])
    x = torch.randn(64, 4)
    for _ in range(3):  # momentum state everywhere
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.randn(8, 4)), torch.randint(0, 3, (8,))).backward()
        opt.step()
    out_before = model(x).detach()
    layer = masks.layers[0]
    existing = torch.relu(x @ layer.info.module.weight.detach()[:3].T + layer.info.module.bias.detach()[:3])
    gen_state = torch.Generator().manual_seed(7)
    masks.set_counts([5], SelectionContext(gen_state, {"layer_inputs": {"0": x}}))
    w, b = layer.info.module.weight.detach(), layer.info.module.bias.detach()
    assert layer.unit_mask.tolist() == [True, True, True, True, True, False]  # lowest free slots
    # independent replay: the same 100·n candidates, scored on the inputs; the grown rows are the best two
    replay = torch.Generator().manual_seed(7)
    bound = 1 / 2.0
    cand = torch.rand((200, 4), generator=replay) * (2 * bound) - bound
    scores = north_select_scores(existing, torch.relu(x @ cand.T))
    best = torch.sort(scores, descending=True, stable=True).indices[:2]
    torch.testing.assert_close(w[3:5], cand[best])
    assert torch.all(b[3:5] == 0)
    assert torch.all(model[2].weight.detach()[:, 3:5] == 0)  # zero fan-out
    assert torch.all(opt.state[layer.info.module.weight]["momentum_buffer"][3:5] == 0)
    assert torch.all(opt.state[model[2].weight]["momentum_buffer"][:, 3:5] == 0)
    torch.testing.assert_close(model(x).detach(), out_before)  # growth leaves the function unchanged


def _obs(env, density, share):
    cols = env.layout.columns
    obs = np.zeros(env.observation_space.shape, dtype=np.float32)
    obs[:, cols["progress"]] = 0.5
    obs[:, cols["density"]] = density
    obs[:, cols["rank_active_share"]] = share
    obs[:, cols["rank_ed"]] = share * density
    return obs


def test_policy_counts_follow_the_worked_triggers():
    # CRITERIA §2: φ*=0.9, N=64: E=50 -> prune 5; E=60 -> nothing; E=62 -> grow 2
    env = SparsityEnv(**{**KW, "network_kwargs": {"widths": (64, 64)}}, **env_kwargs("dyno"))
    policy = DynoPolicy(env)
    policy.predict(_obs(env, 0.5, 1.0))  # sets up one episode
    for e, expected in ((50, 59), (60, 64), (62, 66)):
        policy.phi_star[:] = 0.9
        policy.pending[:] = False
        counts = policy.counts(0, np.array([64, 64]), np.array([e, e]), np.array([True, True]))
        assert counts.tolist() == [expected, expected]
    # φ* starts at 1 and is re-measured at the decision after a change (then that decision does nothing)
    policy = DynoPolicy(env)
    action, _ = policy.predict(_obs(env, 0.5, 50 / 64))
    # int(0.97·1·64 − 50) = 12 pruned
    assert np.allclose(env.unwrapped.densities_from_action(action) * 128, 52, atol=1e-3)
    assert policy.pending.all()
    action, _ = policy.predict(_obs(env, 52 / 128, 0.8))  # E = round(0.8·52) = 42
    assert np.allclose(policy.phi_star, 42 / 52) and not policy.pending.any()
    assert np.allclose(env.unwrapped.densities_from_action(action) * 128, 52, atol=1e-3)


def test_linear_layers_keep_at_least_as_many_neurons_as_classes():
    env = SparsityEnv(**KW, **env_kwargs("dyno"))
    policy = DynoPolicy(env)
    policy.predict(_obs(env, 0.5, 1.0))
    counts = policy.counts(0, np.array([16, 12]), np.array([0, 0]), np.array([True, True]))
    assert counts.tolist() == [4, 4]  # synthetic has 4 classes


@pytest.mark.parametrize(
    ("network", "kwargs"), [("mlp", {"widths": (16, 12)}), ("cnn", {"channels": (4, 6)}), ("simple_cnn", {})]
)
def test_dyno_episodes_hold_the_masks(network, kwargs):
    env = SparsityEnv(**{**KW, "network": network, "network_kwargs": kwargs}, **env_kwargs("dyno"))
    units = np.array([m.num_units for m in env.masks.layers])
    policy = make_policy("dyno", env)
    obs, _ = env.reset(seed=1)
    done, widths = False, []
    while not done:
        obs, _, term, trunc, info = env.step(policy.predict(obs)[0])
        done = term or trunc
        widths.append(np.rint(info["layer_densities"] * units))
        for layer in env.masks.all_layers:
            w = layer.info.module.weight.detach()
            assert torch.all(w[~layer.active_weight_mask] == 0)
    assert np.isfinite(info["test_accuracy"]) and np.all(np.array(widths) <= units)


def test_dyno_episode_masks_hold_and_checkers_pass():
    env = SparsityEnv(**KW, **env_kwargs("dyno"))
    policy = make_policy("dyno", env)
    assert "dyno" in available_policies("criterion")
    obs, _ = env.reset(seed=1)
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(policy.predict(obs)[0])
        done = term or trunc
        for layer in env.masks.all_layers:
            w = layer.info.module.weight.detach()
            assert torch.all(w[~layer.active_weight_mask] == 0)
    assert np.isfinite(info["test_accuracy"])
    short = {**KW, "total_iterations": 20}
    gym_check_env(SparsityEnv(**short, **env_kwargs("dyno")), skip_render_check=True)
    sb3_check_env(SparsityEnv(**short, **env_kwargs("dyno")))
