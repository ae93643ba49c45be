"""Growth room on any network: the widened network with its spare units off is the original network."""

import pytest
import torch
import torch.nn as nn

from sparsity_gym.models.layers import LayerInfo, find_prunable_layers
from sparsity_gym.models.widening import widen_network, widened_width


class OddMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(12, 7)
        self.b = nn.Linear(7, 5)
        self.out = nn.Linear(5, 3)

    def forward(self, x):
        return self.out(torch.relu(self.b(nn.functional.leaky_relu(self.a(x.flatten(1)), 0.5))))


def conv_bn_pool():
    return nn.Sequential(
        nn.Conv2d(1, 5, 3, padding=1),
        nn.BatchNorm2d(5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(5, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 9),
        nn.ReLU(),
        nn.Linear(9, 4),
    )


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(16, 6)
        self.inner = nn.Linear(6, 11)
        self.back = nn.Linear(11, 6)
        self.out = nn.Linear(6, 4)

    def forward(self, x):
        h = torch.relu(self.stem(x.flatten(1)))
        h = h + self.back(torch.relu(self.inner(h)))  # stem and back enter the residual addition
        return self.out(h)


class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(2, 5, 3, padding=1)
        self.n1 = nn.BatchNorm1d(5)
        self.c2 = nn.Conv1d(5, 3, 3)
        self.fc = nn.Linear(3 * 6, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.c2(torch.relu(self.n1(self.c1(x))))).flatten(1))


def dyadic_(model):
    """Float64 parameters on a coarse dyadic grid (k/8), BatchNorm with variance 4 and eps 0.

    With integer inputs every product and sum of the forward pass is then exact in float64, so the widened
    network's extra zero terms cannot change a rounding: its outputs must be *equal*, not just close.
    """
    g = torch.Generator().manual_seed(3)
    model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.round(torch.randn(p.shape, generator=g, dtype=torch.float64) * 4) / 8)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eps = 0.0
                m.running_var.fill_(4.0)
                m.running_mean.copy_(torch.round(torch.randn(m.num_features, generator=g) * 2) / 2)
    return model


def check_equivalent(model, shape, capacity, expected_widths, exact=True):
    torch.manual_seed(0)
    infos = find_prunable_layers(model, shape)
    dyadic_(model)
    result = widen_network(model, infos, capacity, shape)
    assert dict(result.widths) == expected_widths
    wide = dict(result.model.named_modules())
    for name, (width, new) in expected_widths.items():
        layer = wide[name]
        assert layer.weight.shape[0] == new and result.active[name].tolist() == [True] * width + [False] * (new - width)
        assert torch.all(layer.weight[width:] == 0) and torch.all(layer.bias[width:] == 0)
        original = dict(model.named_modules())[name]
        assert torch.equal(layer.weight[:width, : original.weight.shape[1]], original.weight)
        assert torch.equal(layer.bias[:width], original.bias)
    x = torch.randint(-3, 4, (32, *shape), generator=torch.Generator().manual_seed(1)).double()
    model.eval()
    result.model.eval()
    with torch.no_grad():  # LayerNorm's division leaves the dyadic grid: close, not equal, after it
        same = torch.equal if exact else lambda a, b: torch.allclose(a, b, rtol=0, atol=1e-12)
        assert same(model(x), result.model(x))
    float32 = widen_network(model.float(), find_prunable_layers(model, shape), capacity, shape).model
    with torch.no_grad():  # float32 weights and inputs: equal up to the rounding of the longer sums
        y = torch.randn(32, *shape, generator=torch.Generator().manual_seed(2))
        assert torch.allclose(model(y), float32.eval()(y), rtol=0, atol=1e-5)
    # the original is untouched
    assert all(dict(model.named_modules())[i.name].weight.shape[0] == i.fan_out for i in infos)
    return result


def test_odd_mlp_every_hidden_layer_widened():
    result = check_equivalent(OddMLP(), (12,), 2.0, {"a": (7, 14), "b": (5, 10)})
    m = dict(result.model.named_modules())
    assert m["b"].weight.shape == (10, 14) and torch.all(m["b"].weight[:, 7:] == 0)
    assert m["out"].weight.shape == (3, 10) and torch.all(m["out"].weight[:, 5:] == 0)


def test_capacity_rounds_up():
    assert widened_width(7, 1.5) == 11 and widened_width(10, 1.1) == 11 and widened_width(4, 1.0) == 4
    check_equivalent(OddMLP(), (12,), 1.5, {"a": (7, 11), "b": (5, 8)})


def test_conv_batchnorm_pooling_flatten():
    result = check_equivalent(conv_bn_pool(), (1, 8, 8), 2.0, {"0": (5, 10), "4": (3, 6), "8": (9, 18)})
    m = dict(result.model.named_modules())
    bn = m["1"]
    assert bn.num_features == 10 and torch.all(bn.running_var[5:] == 1) and torch.all(bn.running_mean[5:] == 0)
    assert torch.all(bn.weight[5:] == 1) and torch.all(bn.bias[5:] == 0)
    # flatten: channel k owns 16 consecutive columns, the new channels' columns come after the old ones
    assert m["8"].weight.shape == (18, 6 * 16) and torch.all(m["8"].weight[:, 3 * 16 :] == 0)
    # trains: the spare units get no gradient through zero fan-out
    result.model.train()
    for norm in (m["1"], m["5"]):
        norm.eps = 1e-5
    result.model(torch.randn(4, 1, 8, 8, dtype=torch.float64)).sum().backward()
    assert torch.all(m["0"].weight.grad[5:] == 0)


def test_residual_layers_keep_their_width():
    result = check_equivalent(Residual(), (16,), 2.0, {"inner": (11, 22)})
    m = dict(result.model.named_modules())
    assert m["stem"].weight.shape[0] == 6 and m["back"].weight.shape == (6, 22)


def test_conv1d_widening_code_with_hand_built_layers():
    torch.manual_seed(0)
    model = dyadic_(Conv1dNet())
    c1, c2, fc = model.c1, model.c2, model.fc
    infos = [
        LayerInfo("c1", c1, 0, "conv", 6, 5, 2, 8, False, (("c2", 1),), True, ("n1",)),
        LayerInfo("c2", c2, 1, "conv", 15, 3, 5, 6, False, (("fc", 6),), True, ()),
        LayerInfo("fc", fc, 2, "linear", 18, 4, 18, 1, True, (), True, ()),
    ]
    result = widen_network(model, infos, 2.0, (2, 8))
    assert dict(result.widths) == {"c1": (5, 10), "c2": (3, 6)}
    x = torch.randint(-3, 4, (16, 2, 8)).double()
    model.eval()
    result.model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), result.model(x))


def test_conv1d_discovered():
    model = Conv1dNet()
    if not any(isinstance(i.module, nn.Conv1d) for i in find_prunable_layers(model, (2, 8))):
        pytest.skip("find_prunable_layers does not discover Conv1d on this branch yet")
    check_equivalent(model, (2, 8), 2.0, {"c1": (5, 10), "c2": (3, 6)})


class HardCodedView(nn.Module):
    """A forward that reshapes with a hard-coded width: that layer cannot be widened, the others can."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc1 = nn.Linear(4 * 16, 6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(torch.relu(self.conv(x)).view(-1, 64))))


def test_a_layer_whose_widening_breaks_the_forward_keeps_its_width():
    result = check_equivalent(HardCodedView(), (1, 4, 4), 2.0, {"fc1": (6, 12)})
    assert dict(result.model.named_modules())["conv"].weight.shape[0] == 4


def test_layer_norm_keeps_width_and_bad_capacity():
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    check_equivalent(model, (4,), 2.0, {"2": (5, 10)}, exact=False)
    infos = find_prunable_layers(model, (4,))
    with pytest.raises(ValueError, match="capacity"):
        widen_network(model, infos, 0.5, (4,))
    with pytest.raises(ValueError, match="layers do not describe"):
        widen_network(nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 2)), infos, 2.0, (4,))
