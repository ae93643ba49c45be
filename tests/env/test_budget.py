"""Budgets and allocation rules in the env: every policy ends on the budget, the default run is unchanged."""

import numpy as np
import pytest
import torch.nn as nn

from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.masks.allocation import ALLOCATIONS
from sparsity_gym.pruning.budget import budget_model, tilted

FAST = {"dataset": "synthetic", "total_iterations": 20, "decision_interval": 10, "batch_size": 32, "observations": ()}


def episode(env: SparsityEnv, action: np.ndarray, seed: int = 0) -> list[dict]:
    """Run one episode with a constant action; the infos of every step."""
    env.reset(seed=seed)
    infos = []
    while True:
        _, _, term, trunc, info = env.step(action)
        infos.append(info)
        if term or trunc:
            return infos


def total_weights(env: SparsityEnv) -> int:
    """Weights over every prunable layer."""
    return sum(m.info.num_weights for m in env.masks.all_layers)


def small_sequential() -> nn.Module:
    """A user factory: a plain nn.Sequential on the synthetic data's 1x4x4 inputs."""
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 12), nn.ReLU(), nn.Linear(12, 4))


def small_cnn() -> nn.Module:
    """A user factory with a conv layer (FLOPs differ from weights) on 1x4x4 inputs."""
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(96, 4))


def test_layer_budget_reproduces_the_main_commit(one_torch_thread):
    # Recorded from commit 7e9fc4d (before budgets existed): digits, the default config shortened to
    # 4 decisions, reset(seed=3), actions uniform in [-1, 1] from default_rng(7).
    env = SparsityEnv(dataset="digits", total_iterations=40, decision_interval=10, batch_size=32)
    assert env.config.budget == "layer" and env.config.allocation == "policy"
    rng = np.random.default_rng(7)
    env.reset(seed=3)
    rows = []
    for _ in range(4):
        _, reward, _, _, info = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        rows.append((reward, info["val_accuracy"], info["train_loss"], info["density"]))
    expected = [
        (0.0, 0.5877437325905293, 2.190509796142578, 0.843939393939394),
        (0.0, 0.7214484679665738, 1.983688735961914, 0.3169507575757576),
        (0.0, 0.7047353760445683, 1.745286750793457, 0.6689985795454545),
        (0.7827298050139275, 0.7827298050139275, 1.4948838233947754, 0.1),
    ]
    # accuracies and densities are counts: exact; the interval's mean loss is a float32 sum whose last bit depends
    # on the CPU's vector kernels (1.7452868 here, 1.7452869 on another machine)
    assert [(r, a, d) for r, a, _, d in rows] == [(r, a, d) for r, a, _, d in expected]
    np.testing.assert_allclose([row[2] for row in rows], [row[2] for row in expected], rtol=1e-6)
    assert info["test_accuracy"] == 0.7771587743732591
    np.testing.assert_array_equal(info["allocation"], info["layer_densities"])


@pytest.mark.parametrize("network", ["mlp", small_sequential])
@pytest.mark.parametrize("action_mode", ["density", "threshold"])
def test_global_budget_ends_within_one_unit_and_keeps_the_allocation(network, action_mode):
    env = SparsityEnv(**FAST, network=network, budget="global", target_density=0.2, action_mode=action_mode)
    finals = []
    for action in (np.array([1.0, -1.0, 0.0]), np.array([-1.0, 1.0, 0.0])):
        info = episode(env, action.astype(np.float32))[-1]
        assert abs(info["density"] - 0.2) * total_weights(env) <= 0.5 + 1e-9  # exact unit count
        np.testing.assert_allclose(info["allocation"], info["layer_densities"], rtol=1e-6)
        assert np.all(info["layer_densities"] > 0)
        finals.append(info["layer_densities"])
    assert not np.allclose(finals[0], finals[1])  # the policy's allocation decides the layers' shares
    if action_mode == "density":  # the first policy favours layer 0, the second layer 1
        assert finals[0][0] > finals[1][0] and finals[0][1] < finals[1][1]


def test_layer_budget_in_threshold_mode_ends_every_layer_at_the_target():
    env = SparsityEnv(**FAST, action_mode="threshold", target_density=0.25)
    info = episode(env, np.full(3, -1.0, np.float32))[-1]  # the lowest thresholds keep everything until the end
    np.testing.assert_allclose(info["layer_densities"], 0.25, atol=1e-3)


def test_flops_budget_on_a_conv_net():
    env = SparsityEnv(**FAST, network=small_cnn, budget="flops", target_density=0.3)
    info = episode(env, np.array([1.0, -1.0], np.float32))[-1]
    largest_unit = max(2 * m.info.output_positions for m in env.masks.all_layers)  # a conv weight: 2 * 16
    assert abs(info["flops"] - 0.3 * info["dense_flops"]) <= largest_unit
    assert abs(info["flops"] / info["dense_flops"] - info["density"]) > 0.01  # FLOPs, not parameters, were budgeted


def test_neuron_granularity_global_budget():
    env = SparsityEnv(**FAST, network=small_sequential, granularity="neuron", budget="global", target_density=0.4)
    info = episode(env, np.array([1.0, -0.5], np.float32))[-1]
    model = budget_model(env.masks, "global")
    counts = np.array([m.num_active for m in env.masks.layers])
    assert model.cost(counts) == sum(m.active_weights() for m in env.masks.all_layers)  # the model is exact
    # one neuron of the largest layer: its fan-in row and its fan-out column
    one_neuron = max(m.info.fan_in for m in env.masks.all_layers) + max(m.info.fan_out for m in env.masks.all_layers)
    assert abs(info["density"] - 0.4) * total_weights(env) <= one_neuron


def test_allocation_rule_reallocates_the_requested_global_density():
    env = SparsityEnv(**FAST, allocation="erk", budget="global", target_density=0.1)
    infos = episode(env, np.array([1.0, -1.0, 0.0], np.float32))
    requested = env.densities_from_action(np.array([1.0, -1.0, 0.0], np.float32))
    weights = np.array([m.info.num_weights for m in env.masks.layers], dtype=float)
    erk = ALLOCATIONS.get("erk").allocate(env.masks.layers, float(np.dot(weights, requested) / weights.sum()))
    np.testing.assert_allclose(infos[0]["allocation"], erk, rtol=1e-6)
    assert np.dot(weights, infos[0]["layer_densities"]) / weights.sum() == pytest.approx(
        np.dot(weights, requested) / weights.sum(), abs=1e-4
    )
    assert abs(infos[-1]["density"] - 0.1) * total_weights(env) <= 0.5 + 1e-9
    uniform = SparsityEnv(**FAST, allocation="uniform", budget="global", target_density=0.1)
    last = episode(uniform, np.array([1.0, -1.0, 0.0], np.float32))[-1]
    assert not np.allclose(last["layer_densities"], infos[-1]["layer_densities"])


def test_config_checks():
    with pytest.raises(ValueError, match="budget='total'"):
        EnvConfig(budget="total")
    with pytest.raises(ValueError, match="allocation='magic'"):
        EnvConfig(allocation="magic")
    with pytest.raises(ValueError, match="allocation='erk' is not allowed with action_mode='threshold'"):
        EnvConfig(allocation="erk", action_mode="threshold")


def brute_tilt(shared: np.ndarray, factors: np.ndarray, weights: np.ndarray, low: np.ndarray) -> np.ndarray:
    """The tilt by a dense scan of the scale (an independent check of the bisection)."""
    budget = float(np.dot(weights, shared))
    base = shared * factors
    scales = np.linspace(0.0, float(np.max(1.0 / base)), 200_001)
    costs = np.array([np.dot(weights, np.clip(s * base, low, 1.0)) for s in scales])
    s = scales[int(np.argmin(np.abs(costs - budget)))]
    return np.clip(s * base, low, 1.0)


def test_tilted_keeps_the_global_density_and_the_tilt():
    shared = np.array([0.3, 0.05, 0.6])
    weights = np.array([400.0, 6000.0, 100.0])
    low = np.array([0.01, 0.001, 0.1])
    factors = np.array([2.0, 0.9, 1.5])
    out = tilted(shared, factors, weights, low)
    assert np.dot(weights, out) == pytest.approx(np.dot(weights, shared), rel=1e-9)
    np.testing.assert_allclose(out, brute_tilt(shared, factors, weights, low), atol=2e-5)
    inside = (out > low) & (out < 1.0)
    ratio = out[inside] / (shared[inside] * factors[inside])
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)  # one scale for every unclipped layer
    np.testing.assert_array_equal(tilted(shared, np.ones(3), weights, low), shared)
    big = tilted(shared, np.array([100.0, 1.0, 1.0]), weights, low)  # the first layer saturates at dense
    assert big[0] == 1.0 and np.dot(weights, big) == pytest.approx(np.dot(weights, shared), rel=1e-9)


def test_allocation_tilt_is_the_rule_for_a_uniform_request_and_moves_with_the_policy():
    rule = SparsityEnv(**FAST, allocation="erk", budget="global", target_density=0.1)
    tilt = SparsityEnv(**FAST, allocation="erk", allocation_tilt=True, budget="global", target_density=0.1)
    flat = np.zeros(3, np.float32)
    for a, b in zip(episode(rule, flat), episode(tilt, flat), strict=True):
        np.testing.assert_array_equal(a["allocation"], b["allocation"])
        np.testing.assert_array_equal(a["layer_densities"], b["layer_densities"])
    skew = np.array([0.5, -0.5, 0.0], np.float32)
    first = episode(tilt, skew)[0]
    requested = tilt.densities_from_action(skew)
    weights = np.array([m.info.num_weights for m in tilt.masks.layers], dtype=float)
    mean = float(np.dot(weights, requested) / weights.sum())
    erk = ALLOCATIONS.get("erk").allocate(tilt.masks.layers, mean)
    assert first["allocation"][0] / erk[0] > first["allocation"][1] / erk[1]  # the first layer got the larger share
    assert np.dot(weights, first["allocation"]) / weights.sum() == pytest.approx(mean, rel=1e-6)
    last = episode(tilt, skew)[-1]
    assert abs(last["density"] - 0.1) * total_weights(tilt) <= 0.5 + 1e-9
    with pytest.raises(ValueError, match="allocation_tilt=True is not allowed with allocation='policy'"):
        EnvConfig(allocation_tilt=True)
