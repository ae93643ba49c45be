"""The mask contract of CRITERIA §5, checked by brute force after every optimizer step."""

import pytest
import torch
import torch.nn as nn

from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.masks.selectors import SelectionContext, lowest_among
from sparsity_gym.models.layers import find_prunable_layers
from sparsity_gym.models.zoo import build_network


def _setup(granularity, selector, net="mlp", optimizer="sgd", exchange=0.0, seed=0):
    torch.manual_seed(seed)
    shape = (1, 8, 8)
    model = build_network(net, shape, 10, {"widths": (32, 24)} if net == "mlp" else {"channels": (6, 8)})
    layers = find_prunable_layers(model, shape)
    opt = (
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
        if optimizer == "sgd"
        else torch.optim.Adam(model.parameters(), lr=1e-2)
    )
    gen = torch.Generator().manual_seed(seed)
    masks = MaskedNetwork(layers, granularity, selector, "random", exchange, gen, opt)
    x = torch.randn(64, *shape, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(2))
    return model, masks, opt, x, y


def _train(model, opt, x, y, steps=3):
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def _check_exact(masks, densities):
    for layer, d in zip(masks.layers, densities, strict=True):
        k = max(1, round(d * layer.num_units))
        assert int(layer.unit_mask.sum()) == k
        w = layer.info.module.weight
        inactive = ~layer.weight_mask()
        assert torch.all(w[inactive] == 0)
        if masks.granularity == "neuron" and layer.info.module.bias is not None:
            assert torch.all(layer.info.module.bias[~layer.unit_mask] == 0)


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
@pytest.mark.parametrize("selector", ["magnitude", "random"])
@pytest.mark.parametrize("net", ["mlp", "cnn"])
def test_exact_counts_after_every_step(granularity, selector, net):
    model, masks, opt, x, y = _setup(granularity, selector, net)
    for densities in ([0.7, 0.5, 0.9], [0.3, 0.1, 0.6], [0.55, 0.35, 0.2], [0.05, 0.05, 0.05]):
        densities = densities[: len(masks.layers)]
        masks.set_densities(densities)
        _check_exact(masks, densities)
        for _ in range(4):
            _train(model, opt, x, y, steps=1)
            _check_exact(masks, densities)


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_masked_weights_are_zero_in_forward(granularity):
    model, masks, opt, x, y = _setup(granularity, "magnitude")
    masks.set_densities([0.3] * len(masks.layers))
    _train(model, opt, x, y)
    seen = {}
    hooks = [
        m.info.module.register_forward_pre_hook(lambda mod, inp, i=i: seen.__setitem__(i, mod.weight.detach().clone()))
        for i, m in enumerate(masks.all_layers)
    ]
    model(x)
    for h in hooks:
        h.remove()
    for i, m in enumerate(masks.all_layers):
        assert torch.all(seen[i][~m.weight_mask()] == 0)


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_magnitude_keeps_largest_among_active(granularity):
    model, masks, opt, x, y = _setup(granularity, "magnitude")
    masks.set_densities([0.6] * len(masks.layers))
    _train(model, opt, x, y)
    for layer in masks.layers:
        w = layer.info.module.weight.detach()
        before = layer.unit_mask.flatten().clone()
        scores = (w.abs().flatten() if granularity == "weight" else w.flatten(1).norm(dim=1)).tolist()
        k = max(1, round(0.2 * layer.num_units))
        # brute force: among the active, sort by (score, index) and keep the k largest (the lower index goes first)
        active = [i for i in range(len(scores)) if before[i]]
        keep = set(sorted(active, key=lambda i: (scores[i], i))[len(active) - k :])
        layer_index = masks.layers.index(layer)
        densities = [m.density for m in masks.layers]
        densities[layer_index] = 0.2
        masks.set_densities(densities)
        after = set(torch.nonzero(layer.unit_mask.flatten()).flatten().tolist())
        assert after == keep


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_regrown_units_start_at_zero_with_zero_state(granularity, optimizer):
    model, masks, opt, x, y = _setup(granularity, "magnitude", optimizer=optimizer)
    masks.set_densities([0.2] * len(masks.layers))
    _train(model, opt, x, y, steps=5)
    before = [m.unit_mask.clone() for m in masks.all_layers]
    masks.set_densities([0.6] * len(masks.layers))
    for i, layer in enumerate(masks.layers):
        grown = layer.unit_mask & ~before[i]
        assert int(grown.sum()) == round(0.6 * layer.num_units) - round(0.2 * layer.num_units)
        w = layer.info.module.weight
        state = opt.state[w]
        if granularity == "weight":
            assert torch.all(w[grown] == 0)
            rows = grown
        else:
            rows = grown.view(-1, *([1] * (w.dim() - 1))).expand_as(w)
            assert torch.all(layer.info.module.bias[grown] == 0)
            assert torch.all(w[rows].abs() <= 1 / layer.info.fan_in**0.5)  # fresh fan-in within the init bound
        for value in state.values():
            if torch.is_tensor(value) and value.shape == w.shape:
                assert torch.all(value[rows] == 0)
    if granularity == "neuron":  # the successor's fan-out columns of new neurons start at zero
        first, second = masks.all_layers[0], masks.all_layers[1]
        grown = first.unit_mask & ~before[0]
        assert torch.all(second.info.module.weight[:, grown] == 0)


def test_neuron_pruning_masks_successor_columns_exactly():
    model, masks, opt, x, y = _setup("neuron", "random", net="cnn")
    masks.set_densities([0.5, 0.25])
    _train(model, opt, x, y)
    conv1, conv2, head = masks.all_layers
    assert torch.all(conv2.info.module.weight[:, ~conv1.unit_mask] == 0)
    per_channel = head.info.in_units // conv2.info.fan_out
    cols = (~conv2.unit_mask).repeat_interleave(per_channel)
    assert torch.all(head.info.module.weight[:, cols] == 0)
    assert not masks.all_layers[-1].controlled


def test_exchange_fraction_swaps_units_at_constant_density():
    model, masks, opt, x, y = _setup("weight", "magnitude", exchange=0.2)
    masks.set_densities([0.5] * 3)
    before = [m.unit_mask.clone() for m in masks.layers]
    _train(model, opt, x, y)
    masks.set_densities([0.5] * 3)
    for layer, b in zip(masks.layers, before, strict=True):
        k = round(0.5 * layer.num_units)
        assert int(layer.unit_mask.sum()) == k
        assert int((b & ~layer.unit_mask).sum()) == round(0.2 * k)  # dropped
        assert int((layer.unit_mask & ~b).sum()) == round(0.2 * k)  # regrown, not the just-dropped ones


def test_random_selection_is_reproducible_from_the_generator():
    runs = []
    for _ in range(2):
        model, masks, opt, x, y = _setup("weight", "random", seed=3)
        masks.set_densities([0.4] * 3, SelectionContext(torch.Generator().manual_seed(9)))
        runs.append([m.unit_mask.clone() for m in masks.layers])
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))


def test_lowest_among_breaks_ties_by_lower_index():
    scores = torch.tensor([1.0, 0.5, 0.5, 0.5, 2.0])
    active = torch.tensor([True, True, False, True, True])
    assert lowest_among(scores, active, 2).tolist() == [1, 3]


def test_wrong_number_of_densities_is_a_clear_error():
    _, masks, *_ = _setup("weight", "random")
    with pytest.raises(ValueError, match="expected 3"):
        masks.set_densities([0.5])
