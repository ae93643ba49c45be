"""Compaction: the physically smaller network computes exactly what the masked network computes."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.masks.compaction import compact, compaction_summary
from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.models.layers import find_prunable_layers
from sparsity_gym.models.zoo import build_network

SHAPE = (1, 8, 8)
KWARGS = {"mlp": {"widths": (32, 24)}, "cnn": {"channels": (6, 8)}}


def _masked(net, selector="magnitude", seed=0, granularity="neuron"):
    torch.manual_seed(seed)
    model = build_network(net, SHAPE, 10, KWARGS[net])
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masks = MaskedNetwork(
        find_prunable_layers(model, SHAPE), granularity, selector, generator=torch.Generator().manual_seed(seed)
    )
    masks.attach(opt)
    return model, masks, opt


def _train(model, opt, steps=3, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(32, *SHAPE, generator=gen)
    y = torch.randint(0, 10, (32,), generator=gen)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def _assert_same_outputs(model, compacted, x):
    model.eval()
    compacted.eval()
    with torch.no_grad():
        expected, got = model(x), compacted(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-6, rtol=1e-5), (got - expected).abs().max()


def _assert_active_widths(compacted, masks):
    modules = dict(compacted.named_modules())
    for layer in masks.all_layers:
        new = modules[layer.info.name]
        assert type(new) is type(layer.info.module)
        assert new.weight.shape[0] == layer.num_active
        succ = masks.successor(layer)
        if succ is not None:
            per_unit = succ.info.in_units // layer.num_units
            assert modules[succ.info.name].weight.shape[1] == layer.num_active * per_unit


DENSITIES = {
    "mlp": [[1.0, 1.0], [0.5, 0.25], [0.03, 1.0], [1.0, 0.04], [0.01, 0.01]],  # 0.03*32 -> 1 unit kept
    "cnn": [[1.0, 1.0], [0.5, 0.75], [0.1, 1.0], [1.0, 0.1], [0.01, 0.01]],  # 0.1*6 -> 1 channel kept
}


@pytest.mark.parametrize("net", ["mlp", "cnn"])
def test_equal_outputs_and_active_widths(net):
    model, masks, opt = _masked(net)
    x = torch.randn(16, *SHAPE, generator=torch.Generator().manual_seed(3))
    for densities in DENSITIES[net]:
        masks.set_densities(densities)
        _train(model, opt)
        model.train()
        compacted = compact(model, masks)
        _assert_active_widths(compacted, masks)
        _assert_same_outputs(model, compacted, x)
        summary = compaction_summary(model, compacted)
        assert summary["params_after"] == sum(p.numel() for p in compacted.parameters())
        assert summary["params_before"] == sum(p.numel() for p in model.parameters())
        for layer in masks.all_layers:
            assert summary["layers"][layer.info.name]["out_after"] == layer.num_active
        if all(d == 1.0 for d in densities):
            assert summary["param_ratio"] == 1.0
        else:
            assert summary["param_ratio"] < 1.0


def test_one_unit_kept_has_width_one():
    model, masks, opt = _masked("cnn")
    masks.set_densities([0.01, 0.01])
    _train(model, opt)
    compacted = compact(model, masks)
    convs = [m for m in compacted.modules() if isinstance(m, nn.Conv2d)]
    linear = next(m for m in compacted.modules() if isinstance(m, nn.Linear))
    assert [tuple(c.weight.shape[:2]) for c in convs] == [(1, 1), (1, 1)]
    assert linear.weight.shape == (10, 16)  # one channel's 4x4 block of the channel-major flatten
    _assert_same_outputs(model, compacted, torch.randn(8, *SHAPE))


def test_original_untouched_and_settings_kept():
    model, masks, opt = _masked("cnn")
    masks.set_densities([0.5, 0.25])
    _train(model, opt)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modules_before = dict(model.named_modules())
    compacted = compact(model, masks)
    assert dict(model.named_modules()) == modules_before
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(layer.info.module is modules_before[layer.info.name] for layer in masks.all_layers)
    shared = {id(p) for p in model.parameters()} & {id(p) for p in compacted.parameters()}
    assert not shared
    for (_name, old), (_, new) in zip(model.named_modules(), compacted.named_modules(), strict=True):
        assert new.training == old.training
        if isinstance(old, nn.Conv2d):
            assert (new.stride, new.padding, new.dilation, new.kernel_size) == (
                old.stride,
                old.padding,
                old.dilation,
                old.kernel_size,
            )
        if isinstance(old, (nn.Linear, nn.Conv2d)):
            assert new.weight.dtype == old.weight.dtype and new.weight.device == old.weight.device
            assert (new.bias is None) == (old.bias is None)


def test_nested_sequential_and_no_bias():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Sequential(nn.Linear(64, 20, bias=False), nn.Tanh()),
        nn.Sequential(nn.Sequential(nn.Linear(20, 12), nn.Sigmoid())),
        nn.Linear(12, 5),
    )
    layers = find_prunable_layers(model, SHAPE)  # its probe input is float32
    model.double()
    masks = MaskedNetwork(layers, "neuron")
    masks.set_densities([0.3, 0.5])
    compacted = compact(model, masks)
    assert compacted[1][0].weight.shape == (6, 64) and compacted[1][0].bias is None
    assert compacted[2][0][0].weight.shape == (6, 6)
    assert compacted[3].weight.shape == (5, 6)
    assert compacted[3].weight.dtype == torch.float64
    _assert_same_outputs(model, compacted, torch.randn(8, *SHAPE, dtype=torch.float64))


def test_env_episode_compacts_with_equal_outputs():
    env = SparsityEnv(dataset="synthetic", granularity="neuron", total_iterations=20, decision_interval=10)
    try:
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        done = False
        while not done:
            action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
            _, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
        base = env.unwrapped
        assert any(d < 1.0 for d in base.masks.densities)
        compacted = compact(base.model, base.masks, example_input=base.data.test_x[:8])
        # The observers' hooks stay on the env's model; the copy has none.
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in compacted.modules())
        _assert_active_widths(compacted, base.masks)
        _assert_same_outputs(base.model, compacted, base.data.test_x)
    finally:
        env.close()


def test_weight_granularity_is_refused():
    model, masks, _ = _masked("mlp", granularity="weight")
    masks.set_densities([0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="granularity='neuron'"):
        compact(model, masks)


class _SkipNet(nn.Module):
    """``a``'s outputs reach ``b`` concatenated with the input: the shapes do not chain."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(64, 16)
        self.b = nn.Linear(80, 10)

    def forward(self, x):
        x = x.flatten(1)
        return self.b(torch.cat([x, torch.relu(self.a(x))], dim=1))


def test_unknown_successor_is_refused_naming_the_layer():
    torch.manual_seed(0)
    model = _SkipNet()
    masks = MaskedNetwork(find_prunable_layers(model, SHAPE), "neuron")
    assert masks.successor(masks.layers[0]) is None
    compacted = compact(model, masks)  # dense: nothing to remove, nothing to refuse
    _assert_same_outputs(model, compacted, torch.randn(4, *SHAPE))
    masks.set_densities([0.5])
    with pytest.raises(ValueError, match=r"'a'.*no known successor"):
        compact(model, masks)


def test_masks_of_another_model_are_refused():
    model, masks, _ = _masked("mlp")
    other = build_network("mlp", SHAPE, 10, KWARGS["mlp"])
    with pytest.raises(ValueError, match="do not describe this model"):
        compact(other, masks)


def test_example_input_check_catches_per_feature_modules():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.LayerNorm(16), nn.Linear(16, 10))
    masks = MaskedNetwork(find_prunable_layers(model, SHAPE), "neuron")
    masks.set_densities([0.5])
    with pytest.raises(ValueError, match="example_input"):
        compact(model, masks, example_input=torch.randn(4, *SHAPE))
