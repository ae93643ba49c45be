"""The traced data-flow graph: successors, column maps, the residual rule and the fallback to module order."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.models.graph import trace_layer_graph
from sparsity_gym.models.layers import find_prunable_layers
from sparsity_gym.models.zoo import build_network

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _graph(net, shape, **kwargs):
    torch.manual_seed(0)
    model = build_network(net, shape, 10, kwargs)
    return model, {i.name: i for i in find_prunable_layers(model, shape)}


def _successors(infos):
    return {name: info.successors for name, info in infos.items()}


def test_mlp_and_cnn_chain_in_module_order():
    _, infos = _graph("mlp", (1, 8, 8), widths=(16, 8))
    assert _successors(infos) == {"1": (("3", 1),), "3": (("5", 1),), "5": ()}
    _, infos = _graph("cnn", (1, 8, 8), channels=(4, 6))
    # conv 0 -> maxpool -> conv 3 -> flatten of 6 x 4 x 4 -> Linear: 16 columns per channel
    assert _successors(infos) == {"0": (("3", 1),), "3": (("6", 16),), "6": ()}
    assert all(i.neuron_prunable and i.channel_modules == () for i in infos.values())


def test_simple_cnn_on_cifar_shapes():
    _, infos = _graph("simple_cnn", (3, 32, 32))
    # conv(5) 32 -> 28, pool -> 14, conv(5) -> 10, pool -> 5: 16 channels x 25 columns = 400 inputs of fc1
    assert _successors(infos) == {"0": (("3", 1),), "3": (("7", 25),), "7": (("9", 1),), "9": (("11", 1),), "11": ()}


def test_resnet18_successors_and_coupling():
    _, infos = _graph("resnet18", (3, 8, 8), base_width=2)
    s = _successors(infos)
    # a block's conv1 feeds only its conv2, through BatchNorm and ReLU
    for block in ("layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1", "layer4.0", "layer4.1"):
        assert s[f"{block}.conv1"] == ((f"{block}.conv2", 1),)
        assert infos[f"{block}.conv1"].neuron_prunable
        assert infos[f"{block}.conv1"].channel_modules == (f"{block}.bn1",)
        assert not infos[f"{block}.conv2"].neuron_prunable  # its output enters the residual addition
    # the stem's output reaches layer1.0 directly and, through the identity shortcuts, every later input of
    # the stage until the first downsampling block
    assert s["conv1"] == (
        ("layer1.0.conv1", 1),
        ("layer1.1.conv1", 1),
        ("layer2.0.conv1", 1),
        ("layer2.0.shortcut.0", 1),
    )
    # a downsampling block's conv2 and shortcut conv are summed: both feed the next block and the next stage
    assert (
        s["layer2.0.conv2"]
        == s["layer2.0.shortcut.0"]
        == (
            ("layer2.1.conv1", 1),
            ("layer3.0.conv1", 1),
            ("layer3.0.shortcut.0", 1),
        )
    )
    # the last block feeds the head through the global average pool and the flatten
    assert s["layer4.1.conv2"] == (("fc", 1),)
    assert s["layer4.0.conv2"] == s["layer4.0.shortcut.0"] == (("layer4.1.conv1", 1), ("fc", 1))
    coupled = {n for n, i in infos.items() if not i.neuron_prunable}
    assert coupled == {"conv1"} | {f"{b}.conv2" for b in _blocks()} | {f"layer{k}.0.shortcut.0" for k in (2, 3, 4)}
    assert s["fc"] == () and infos["fc"].is_output


def _blocks():
    return [f"layer{k}.{j}" for k in (1, 2, 3, 4) for j in (0, 1)]


@pytest.mark.parametrize("batch_norm", [False, True])
def test_vgg11_successors_on_a_tiny_input(batch_norm):
    _, infos = _graph("vgg11", (3, 4, 4), width_multiplier=1 / 16, classifier_width=8, batch_norm=batch_norm)
    convs = [0, 3, 6, 8, 11, 13, 16, 18] if not batch_norm else [0, 4, 8, 11, 15, 18, 22, 25]
    expected = {f"features.{a}": ((f"features.{b}", 1),) for a, b in itertools.pairwise(convs)}
    # the last conv -> ReLU -> max-pool -> adaptive avgpool to 7 x 7 -> flatten: 49 columns per channel
    expected[f"features.{convs[-1]}"] = (("classifier.0", 49),)
    expected.update(
        {"classifier.0": (("classifier.3", 1),), "classifier.3": (("classifier.6", 1),), "classifier.6": ()}
    )
    assert _successors(infos) == expected
    assert all(i.neuron_prunable for i in infos.values())
    if batch_norm:
        assert [infos[f"features.{c}"].channel_modules for c in convs] == [(f"features.{c + 1}",) for c in convs]


class _Fork(nn.Module):
    """conv a feeds b and c (two successors, one through BatchNorm); b + c is a residual join."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.b = nn.Conv2d(4, 3, 3, padding=1)
        self.c = nn.Conv2d(4, 3, 1)
        self.head = nn.Linear(3, 5)

    def forward(self, x):
        y = F.relu(self.a(x)) * 0.5  # arithmetic with a scalar keeps the channels
        z = self.b(self.bn(y)) + self.c(y)
        return self.head(z.mean((2, 3)))


def test_residual_rule_and_several_successors():
    torch.manual_seed(0)
    model = _Fork()
    infos = {i.name: i for i in find_prunable_layers(model, (2, 5, 5))}
    assert infos["a"].successors == (("b", 1), ("c", 1))
    assert infos["a"].neuron_prunable and infos["a"].channel_modules == ("bn",)
    assert not infos["b"].neuron_prunable and not infos["c"].neuron_prunable
    assert infos["b"].successors == infos["c"].successors == (("head", 1),)

    dense = copy.deepcopy(model)
    masks = MaskedNetwork(list(infos.values()), "neuron", selector="random")
    assert [m.info.name for m in masks.layers] == ["a"]  # coupled layers and the output are not controlled
    masks.set_counts([2])
    pruned = torch.nonzero(~masks.layers[0].unit_mask).flatten()
    assert [s.info.name for s, _ in masks.successors(masks.layers[0])] == ["b", "c"]
    for name in ("b", "c"):  # the fan-out columns are masked in both successors
        assert bool((dict(model.named_modules())[name].weight[:, pruned] == 0).all())

    # brute force: the dense network with the pruned channels zeroed where b and c read them
    def zero_channels(module, args):
        x = args[0].clone()
        x[:, pruned] = 0
        return (x,)

    dense.b.register_forward_pre_hook(zero_channels)
    dense.c.register_forward_pre_hook(zero_channels)
    # b reads bn(y): zeroing y's channel in front of bn would leak bn's bias, so the hook sits on b's input
    x = torch.randn(6, 2, 5, 5)
    model.eval()
    dense.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), dense(x))


class _Cat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 4)
        self.b = nn.Linear(12, 3)

    def forward(self, x):
        x = x.flatten(1)
        return self.b(torch.cat([x, torch.relu(self.a(x))], dim=1))


class _Reused(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 4)
        self.shared = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.shared(torch.relu(self.shared(torch.relu(self.a(x.flatten(1)))))))


def test_unknown_ops_and_reused_modules():
    graph = trace_layer_graph(_Cat(), (2, 4))
    assert graph is not None and graph.successors["a"] == () and graph.unresolved == {"a"}
    graph = trace_layer_graph(_Reused(), (2, 4))
    pairs = {name: [(e.successor, e.columns_per_unit) for e in edges] for name, edges in graph.successors.items()}
    assert pairs == {"a": [("shared", 1)], "shared": [("shared", 1), ("head", 1)], "head": []}
    assert graph.coupled == {"a", "shared"}  # both feed the module that is called twice


class _ViewNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 4, 2)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.fc(x.view(x.size(0), -1))


def test_view_flatten_is_channel_major():
    graph = trace_layer_graph(_ViewNet(), (1, 4, 4))
    assert graph.successors["conv"][0].successor == "fc"
    assert graph.successors["conv"][0].columns_per_unit == 4


class _DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 6)
        self.b = nn.Linear(6, 3)

    def forward(self, x):
        h = torch.relu(self.a(x.flatten(1)))
        if h.sum() > 0:  # data-dependent control flow: symbolic tracing fails
            h = h * 2
        return self.b(h)


def test_untraceable_networks_fall_back_to_module_order():
    model = _DataDependent()
    assert trace_layer_graph(model, (1, 4, 4)) is None
    infos = find_prunable_layers(model, (1, 4, 4))
    assert [i.successors for i in infos] == [None, None]
    masks = MaskedNetwork(infos, "neuron")
    assert masks.successor(masks.layers[0]).info.name == "b"  # the order-based rule, as before
    masks.set_counts([3])
    assert int((model.b.weight == 0).all(dim=0).sum()) == 3
