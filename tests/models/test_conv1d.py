"""Conv1d as a prunable layer: discovery, graph, env (both checkers), compaction, SNR moments, FLOPs."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from sparsity_gym.datasets.splits import DatasetSplits
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.masks.compaction import compact
from sparsity_gym.masks.freezing import FREEZABLE_TYPES
from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.masks.selectors import SELECTORS, available_selectors
from sparsity_gym.models.layers import find_prunable_layers
from sparsity_gym.models.names import parse_network
from sparsity_gym.models.zoo import build_network
from sparsity_gym.stats import GradientMomentCollector, conv1d_grad_moments, gradient_snr
from sparsity_gym.stats.inputs import flatten_units

LENGTH = 16
SHAPE = (1, LENGTH)
NET = {"network": "cnn1d", "network_kwargs": {"channels": (4, 6), "kernel_size": 3}}


def _data_1d(seed=0, n=240, classes=3) -> DatasetSplits:
    """A small learnable 1-D problem under the name 'synthetic' (the env checks the name only)."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(classes, 1, LENGTH, generator=gen)
    y = torch.arange(n) % classes
    x = means[y] + 0.5 * torch.randn(n, 1, LENGTH, generator=gen)
    a, b = n // 2, 3 * n // 4
    return DatasetSplits("synthetic", x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:], classes)


ENV = {"dataset": "synthetic", "total_iterations": 10, "decision_interval": 5, "batch_size": 16, **NET}


def test_discovery_positions_kind_and_successors():
    model = build_network("cnn1d", SHAPE, 3, NET["network_kwargs"])
    infos = find_prunable_layers(model, SHAPE)
    assert [i.kind for i in infos] == ["conv", "conv", "linear"]
    assert [i.kernel_dims for i in infos] == [1, 1, 0]
    assert [i.output_positions for i in infos] == [16, 8, 1]  # L_out before each pool: 16, then 8
    assert [i.fan_in for i in infos] == [1 * 3, 4 * 3, 6 * 4]
    assert infos[0].successors == (("3", 1),)
    assert infos[1].successors == ((infos[2].name, 4),)  # flatten of (6, 4): 4 columns per channel
    assert nn.Conv1d in FREEZABLE_TYPES


def test_sized_names_parse_to_cnn1d():
    spec = parse_network("cnn1d_8x16")
    assert spec.network == "cnn1d" and dict(spec.kwargs) == {"channels": (8, 16)}
    assert spec.name == "cnn1d_8x16"
    from sparsity_gym.experiments.families import parse_network as reexported

    assert reexported is parse_network


def _selector_cases():
    cases = []
    for name in available_selectors():
        for granularity in SELECTORS.get(name).granularities:
            cases.append((name, granularity))
    return cases


@pytest.mark.parametrize(("selector", "granularity"), _selector_cases())
def test_trains_and_prunes_in_the_env(selector, granularity, one_torch_thread):
    env = SparsityEnv(**ENV, selector=selector, granularity=granularity, target_density=0.3, data=_data_1d())
    obs, info = env.reset(seed=0)
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(-np.ones(env.action_space.shape, np.float32))
        assert env.observation_space.contains(obs)
        done = terminated or truncated
    assert not terminated and np.isfinite(reward)
    for layer in env.masks.layers:
        assert layer.density == pytest.approx(0.3, abs=1.0 / layer.num_units + 1e-9)
        inactive = ~layer.active_weight_mask
        assert torch.all(layer.info.module.weight[inactive] == 0)
    assert 0.0 <= info["test_accuracy"] <= 1.0


def test_north_regrowth_uses_unfolded_conv1d_inputs(one_torch_thread):
    env = SparsityEnv(**ENV, granularity="neuron", regrowth="north", target_density=0.5, data=_data_1d())
    env.reset(seed=1)
    done = False
    while not done:
        *_, terminated, truncated, _ = env.step(np.zeros(env.action_space.shape, np.float32))
        done = terminated or truncated


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_both_checkers_pass(granularity, one_torch_thread):
    data = _data_1d()
    gym_check_env(SparsityEnv(**ENV, granularity=granularity, data=data), skip_render_check=True)
    sb3_check_env(SparsityEnv(**ENV, granularity=granularity, data=data), warn=True)


def test_compaction_gives_the_same_outputs():
    torch.manual_seed(0)
    model = build_network("cnn1d", SHAPE, 3, {"channels": (6, 8), "kernel_size": 3})
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masks = MaskedNetwork(
        find_prunable_layers(model, SHAPE), "neuron", "magnitude", generator=torch.Generator().manual_seed(0)
    )
    masks.attach(opt)
    masks.set_densities([0.5, 0.4])
    x = torch.randn(32, *SHAPE)
    y = torch.randint(0, 3, (32,))
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    small = compact(model, masks, example_input=x[:2])
    modules = dict(small.named_modules())
    assert isinstance(modules["0"], nn.Conv1d) and modules["0"].out_channels == 3
    assert modules["3"].in_channels == 3 and modules["3"].out_channels == round(0.4 * 8)
    model.eval()
    small.eval()
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel_size": 3},
        {"kernel_size": 3, "stride": 2, "padding": 1},
        {"kernel_size": 2, "dilation": 2, "padding": "same"},
        {"kernel_size": 3, "padding": 1, "padding_mode": "reflect"},
        {"kernel_size": 3, "padding": 1, "groups": 2},
    ],
)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_snr_moments_match_a_per_sample_autograd_loop(kwargs):
    torch.manual_seed(3)
    conv = nn.Conv1d(4, 6, **kwargs)
    x = torch.randn(7, 4, 11)
    target = torch.randn_like(conv(x))
    out = conv(x)
    out.retain_grad()
    ((out - target) ** 2).sum((1, 2)).mean().backward()
    mean, sq = conv1d_grad_moments(conv, out.grad, x, grad_scale=7, chunk_size=3)
    per_sample = []
    for n in range(len(x)):  # brute force: one backward per sample of its own loss term
        conv.zero_grad()
        ((conv(x[n : n + 1]) - target[n : n + 1]) ** 2).sum().backward()
        per_sample.append(conv.weight.grad.clone())
    ref = torch.stack(per_sample)
    assert mean.shape == conv.weight.shape
    torch.testing.assert_close(mean, ref.mean(0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(sq, ref.square().sum(0), rtol=1e-4, atol=1e-3)


def test_gradient_snr_and_collector_accept_conv1d():
    torch.manual_seed(4)
    model = build_network("cnn1d", SHAPE, 3, {"channels": (3,), "kernel_size": 3})
    x, y = torch.randn(10, *SHAPE), torch.randint(0, 3, (10,))
    snr = gradient_snr(model, x, y, nn.functional.cross_entropy)
    assert snr["0"].shape == model[0].weight.shape
    GradientMomentCollector([("0", model[0])])
    assert flatten_units(torch.arange(24.0).reshape(2, 3, 4)).shape == (8, 3)


def test_flops_against_a_hand_count():
    env = SparsityEnv(**ENV, target_density=None, data=_data_1d())
    _, info = env.reset(seed=0)
    # conv 1->4 k3 on 16 positions, conv 4->6 k3 on 8 positions, linear 24->3; 2 FLOPs per MAC
    dense = 2 * (16 * 4 * 1 * 3 + 8 * 6 * 4 * 3 + 1 * 3 * 24)
    assert info["flops"] == dense
    env.masks.set_densities([0.5, 0.25, 1.0])
    assert env.inference_flops() == 2 * (16 * 6 + 8 * 18 + 72)  # 6 of 12, 18 of 72, 72 of 72 weights active
