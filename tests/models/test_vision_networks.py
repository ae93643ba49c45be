"""The seeds' vision networks: architectures, VGG11 weight files, exact neuron removal with BatchNorm and
residual connections, compaction, per-sample gradient terms under BatchNorm, and episodes with every selector."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsity_gym.core.torchvision_compat import import_torchvision
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.masks.compaction import compact
from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.masks.selectors import SELECTORS, SelectionContext, available_selectors
from sparsity_gym.models.layers import find_prunable_layers
from sparsity_gym.models.zoo import available_networks, build_network
from sparsity_gym.stats import GradientMomentCollector

TINY = {
    "simple_cnn": {"channels": (4, 6), "hidden": (12, 8)},
    "resnet18": {"base_width": 2},
    "vgg11": {"width_multiplier": 1 / 16, "classifier_width": 8, "batch_norm": True},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_registered():
    assert {"simple_cnn", "resnet18", "vgg11"} <= set(available_networks())


def test_simple_cnn_is_the_five_layer_cifar_net():
    model = build_network("simple_cnn", (3, 32, 32), 10)
    shapes = [tuple(m.weight.shape) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert shapes == [(6, 3, 5, 5), (16, 6, 5, 5), (120, 400), (84, 120), (10, 84)]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    small = build_network("simple_cnn", (1, 4, 4), 4)  # too small for valid 5x5 convs: "same" padding
    assert [m.padding for m in small.modules() if isinstance(m, nn.Conv2d)] == [(2, 2), (2, 2)]
    assert small(torch.zeros(2, 1, 4, 4)).shape == (2, 4)
    with pytest.raises(ValueError, match="padding"):
        build_network("simple_cnn", (1, 4, 4), 4, {"padding": 0})


def test_resnet18_has_the_cifar_resnet18_parameter_count():
    model = build_network("resnet18", (3, 32, 32), 10)
    assert sum(p.numel() for p in model.parameters()) == 11_173_962  # the well-known CIFAR ResNet-18 count
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    tiny = build_network("resnet18", (1, 4, 4), 4, {"base_width": 2})
    assert tiny(torch.zeros(2, 1, 4, 4)).shape == (2, 4)
    with pytest.raises(ValueError, match="base_width"):
        build_network("resnet18", (3, 8, 8), 10, {"base_width": 0})


@pytest.mark.parametrize("batch_norm", [False, True])
def test_vgg11_is_torchvisions(batch_norm):
    tv = import_torchvision()
    with torch.device("meta"):  # full size, no memory
        ours = build_network("vgg11", (3, 32, 32), 10, {"batch_norm": batch_norm})
        theirs = (tv.models.vgg11_bn if batch_norm else tv.models.vgg11)(num_classes=10, init_weights=False)
    assert isinstance(ours, tv.models.vgg.VGG)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    assert str(ours) == str(theirs)
    small = build_network("vgg11", (3, 4, 4), 10, TINY["vgg11"])
    assert all(m.ceil_mode for m in small.modules() if isinstance(m, nn.MaxPool2d))
    assert small(torch.zeros(2, 3, 4, 4)).shape == (2, 10)


def test_vgg11_loads_a_local_weights_file_and_replaces_the_head(tmp_path):
    kwargs = {"width_multiplier": 1 / 16, "classifier_width": 8}
    torch.manual_seed(0)
    source = build_network("vgg11", (3, 8, 8), 1000, kwargs)
    path = tmp_path / "vgg11.pt"
    torch.save(source.state_dict(), path)
    saved = torch.load(path, weights_only=True)

    model = build_network("vgg11", (3, 8, 8), 10, {**kwargs, "weights_path": str(path)})
    state = model.state_dict()
    for key, value in saved.items():
        if not key.startswith("classifier.6"):
            assert torch.equal(state[key], value), key
    assert model.classifier[6].weight.shape == (10, 8)
    assert not torch.equal(model.classifier[6].weight, saved["classifier.6.weight"][:10])

    picked = build_network("vgg11", (3, 8, 8), 3, {**kwargs, "weights_path": path, "head_classes": [7, 0, 999]})
    assert torch.equal(picked.classifier[6].weight, saved["classifier.6.weight"][[7, 0, 999]])
    assert torch.equal(picked.classifier[6].bias, saved["classifier.6.bias"][[7, 0, 999]])


def test_bad_vgg11_weights_files_are_clear_errors(tmp_path):
    kwargs = {"width_multiplier": 1 / 16, "classifier_width": 8}
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    not_a_dict = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], not_a_dict)
    other = tmp_path / "other.pt"
    torch.save(build_network("vgg11", (3, 8, 8), 1000, {**kwargs, "classifier_width": 4}).state_dict(), other)
    for path, match in [
        (tmp_path / "missing.pt", "no such file"),
        (garbage, "could not be read"),
        (not_a_dict, "not a state dict"),
        (other, r"does not match.*classifier.0.weight"),
    ]:
        with pytest.raises(ValueError, match=rf"weights_path=.*{match}"):
            build_network("vgg11", (3, 8, 8), 10, {**kwargs, "weights_path": str(path)})


def _prune_one(model, shape, layer_name, n_keep):
    infos = find_prunable_layers(model, shape)
    masks = MaskedNetwork(infos, "neuron", selector="random", generator=torch.Generator().manual_seed(3))
    counts = [n_keep if m.info.name == layer_name else m.num_units for m in masks.layers]
    masks.set_counts(counts, SelectionContext(masks.generator))
    layer = next(m for m in masks.layers if m.info.name == layer_name)
    return masks, layer, torch.nonzero(~layer.unit_mask).flatten()


@pytest.mark.parametrize(
    ("net", "layer_name", "successor", "per_unit"),
    [
        ("resnet18", "layer2.0.conv1", "layer2.0.conv2", 1),
        ("vgg11", "features.8", "features.11", 1),
        ("vgg11", "features.25", "classifier.0", 49),  # through BatchNorm, max-pool, avgpool and flatten
    ],
)
def test_pruned_channels_are_removed_exactly(net, layer_name, successor, per_unit):
    shape = (3, 8, 8)
    torch.manual_seed(1)
    model = build_network(net, shape, 10, TINY[net])
    dense = copy.deepcopy(model)
    masks, _, pruned = _prune_one(model, shape, layer_name, 1)
    assert len(pruned) > 0
    columns = (pruned[:, None] * per_unit + torch.arange(per_unit)).flatten()

    def drop(module, args):  # brute force: the successor does not see the pruned channels
        x = args[0].clone()
        x[:, columns] = 0
        return (x,)

    dict(dense.named_modules())[successor].register_forward_pre_hook(drop)
    x = torch.randn(4, *shape)
    for train in (False, True):  # BatchNorm in eval and in train mode (batch statistics are per channel)
        model.train(train)
        dense.train(train)
        with torch.no_grad():
            torch.manual_seed(5)  # the same dropout draws in both
            got = model(x)
            torch.manual_seed(5)
            torch.testing.assert_close(got, dense(x))
    # the BatchNorm after the pruned channels cannot leak them back: perturb its parameters for those channels
    bn_name = find_bn_after(model, layer_name)
    bn = dict(model.named_modules())[bn_name]
    model.eval()
    with torch.no_grad():
        before = model(x)
        bn.weight[pruned] += 3.0
        bn.bias[pruned] -= 5.0
        bn.running_mean[pruned] += 2.0
        bn.running_var[pruned] *= 4.0
        torch.testing.assert_close(model(x), before)


def find_bn_after(model, layer_name):
    info = next(i for i in find_prunable_layers(model, (3, 8, 8)) if i.name == layer_name)
    (bn_name,) = info.channel_modules
    assert isinstance(dict(model.named_modules())[bn_name], nn.BatchNorm2d)
    return bn_name


@pytest.mark.parametrize("net", ["resnet18", "vgg11"])
def test_compaction_resizes_batchnorm_and_keeps_residual_layers(net):
    shape = (3, 8, 8)
    torch.manual_seed(2)
    model = build_network(net, shape, 10, TINY[net])
    masks = MaskedNetwork(find_prunable_layers(model, shape), "neuron", selector="random")
    masks.set_densities([0.5] * len(masks.layers))
    x = torch.randn(4, *shape)
    # eval mode: running statistics; the example_input check compares the outputs
    small = compact(model, masks, example_input=x, atol=1e-5)
    modules = dict(small.named_modules())
    for layer in masks.layers:
        assert modules[layer.info.name].weight.shape[0] == layer.num_active
        for bn in layer.info.channel_modules:
            assert modules[bn].num_features == layer.num_active
    coupled = [m for m in masks.all_layers if not m.info.neuron_prunable]
    assert (net == "resnet18") == bool(coupled)
    for layer in coupled:  # residual layers keep their width
        assert modules[layer.info.name].weight.shape[0] == layer.info.fan_out


def test_per_sample_terms_sum_to_the_batch_gradient_under_batchnorm():
    """With BatchNorm in train mode the per-sample terms g_n = B·δ_n x_nᵀ are terms of the batch gradient."""
    torch.manual_seed(4)
    model = build_network("resnet18", (3, 6, 6), 5, {"base_width": 2}).train()
    names = ["layer1.0.conv1", "layer3.1.conv2", "fc"]
    modules = dict(model.named_modules())
    collector = GradientMomentCollector([(n, modules[n]) for n in names]).attach()
    collector.active = True
    outputs = {}
    hooks = [modules[n].register_forward_hook(lambda m, a, o, n=n: outputs.__setitem__(n, (a[0], o))) for n in names]
    x, y = torch.randn(8, 3, 6, 6), torch.randint(0, 5, (8,))
    out = model(x)
    for _, o in outputs.values():
        o.retain_grad()
    F.cross_entropy(out, y).backward()
    collector.update()
    for h in hooks:
        h.remove()
    for name in names:
        mean, sq_sum, batch = collector.moments[name]
        assert batch == 8
        torch.testing.assert_close(mean * batch, modules[name].weight.grad * batch, rtol=1e-4, atol=1e-6)
        # independent per-sample terms: B·δ_n x_nᵀ from autograd's output gradient, one sample at a time
        inp, o = outputs[name]
        terms = []
        for n in range(8):
            if isinstance(modules[name], nn.Conv2d):
                m = modules[name]
                g = torch.nn.grad.conv2d_weight(inp[n : n + 1], m.weight.shape, o.grad[n : n + 1], m.stride, m.padding)
            else:
                g = o.grad[n][:, None] * inp[n][None, :]
            terms.append(8 * g)
        terms = torch.stack(terms)
        torch.testing.assert_close(terms.sum(0), 8 * modules[name].weight.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(sq_sum.float(), terms.square().sum(0), rtol=1e-4, atol=1e-8)
    collector.detach()


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
@pytest.mark.parametrize("selector", available_selectors())
@pytest.mark.parametrize("net", sorted(TINY))
def test_episodes_with_every_selector(net, selector, granularity):
    if granularity not in SELECTORS.get(selector).granularities:  # refused by the selector's spec, not run
        with pytest.raises(ValueError, match=f"granularity='{granularity}' is not allowed with selector"):
            SparsityEnv(
                network=net, network_kwargs=TINY[net], dataset="synthetic", selector=selector, granularity=granularity
            )
        return
    env = SparsityEnv(
        network=net,
        network_kwargs=TINY[net],
        dataset="synthetic",
        total_iterations=4,
        decision_interval=2,
        batch_size=8,
        granularity=granularity,
        selector=selector,
        target_density=0.5,
    )
    assert set(env.config.observations) == {"snr", "rank", "contribution", "equilibrium"}
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    controlled = [m.info for m in env.masks.layers]
    if granularity == "neuron":  # never the output layer, never a layer that enters a residual addition
        assert all(i.neuron_prunable and not i.is_output for i in controlled)
        if net == "resnet18":
            assert len(controlled) == 8  # the eight conv1 layers of the BasicBlocks
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(np.full(env.action_space.shape, -0.5, np.float32))
        assert env.observation_space.contains(obs) and np.all(np.isfinite(obs))
        done = term or trunc
    assert trunc and not term
    np.testing.assert_allclose(info["layer_densities"], 0.5, atol=0.26)  # round(0.5 * n) of tiny layers
    if granularity == "neuron":  # the pruned channels' fan-out columns are zero in every successor
        for layer in env.masks.layers:
            for succ, cols in env.masks.successors(layer):
                w = succ.info.module.weight
                assert bool((w[:, cols(~layer.unit_mask)] == 0).all())
    env.close()
