"""Explicit state of the masks and the freezer: a restored copy continues exactly as the uninterrupted run."""

import pytest
import torch
import torch.nn as nn
from state_helpers import assert_same, optimizer_tensors, roundtrip

from sparsity_gym.masks.freezing import RowFreezer
from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.models.layers import find_prunable_layers
from sparsity_gym.models.zoo import build_network

SHAPE = (1, 8, 8)
KWARGS = {"mlp": {"widths": (32, 24)}, "cnn": {"channels": (6, 8)}}


def _model(net, seed, kwargs=None):
    torch.manual_seed(seed)
    return build_network(net, SHAPE, 10, kwargs or KWARGS[net])


def _optimizer(model, kind):
    if kind == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    return torch.optim.Adam(model.parameters(), lr=1e-2)


def _batches(count):
    gen = torch.Generator().manual_seed(7)
    return [(torch.randn(32, *SHAPE, generator=gen), torch.randint(0, 10, (32,), generator=gen)) for _ in range(count)]


def _step(model, opt, batch):
    x, y = batch
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def _copy(model, opt, net, kind, seed=99):
    """A fresh model (another initialisation) and optimizer holding ``model``'s and ``opt``'s saved state."""
    fresh = _model(net, seed)
    fresh.load_state_dict(roundtrip(model.state_dict()))
    fresh_opt = _optimizer(fresh, kind)
    fresh_opt.load_state_dict(roundtrip(opt.state_dict()))
    return fresh, fresh_opt


def _masks(model, opt, granularity, selector, regrowth, exchange, seed, updates_pruned=True):
    layers = find_prunable_layers(model, SHAPE)
    gen = torch.Generator().manual_seed(seed)
    return MaskedNetwork(layers, granularity, selector, regrowth, exchange, gen, opt, updates_pruned)


def _same_run(model_a, opt_a, model_b, opt_b):
    assert_same(model_a.state_dict(), model_b.state_dict(), "parameters")
    for (i, key, a), (j, key_b, b) in zip(optimizer_tensors(opt_a), optimizer_tensors(opt_b), strict=True):
        assert (i, key) == (j, key_b)
        assert_same(a, b, f"optimizer state {i} {key}")


CASES = [
    ("mlp", "weight", "magnitude", "random", 0.2, "sgd", True),
    ("mlp", "neuron", "random", "random", 0.0, "adam", True),
    ("cnn", "neuron", "magnitude", "random", 0.25, "sgd", True),
    ("cnn", "weight", "random", "none", 0.0, "adam", True),
    ("mlp", "weight", "magnitude", "feedback", 0.0, "sgd", True),
    ("cnn", "neuron", "magnitude", "feedback", 0.0, "adam", False),
]
BEFORE = ([0.7, 0.6, 0.9], [0.4, 0.3, 0.8])
AFTER = ([0.8, 0.5, 1.0], [0.3, 0.2, 0.5], [0.6, 0.7, 0.9])


@pytest.mark.parametrize(("net", "granularity", "selector", "regrowth", "exchange", "kind", "updates_pruned"), CASES)
def test_restored_masks_continue_exactly(net, granularity, selector, regrowth, exchange, kind, updates_pruned):
    model_a = _model(net, 0)
    opt_a = _optimizer(model_a, kind)
    masks_a = _masks(model_a, opt_a, granularity, selector, regrowth, exchange, 0, updates_pruned)
    batches = iter(_batches(3 * (len(BEFORE) + len(AFTER))))
    for densities in BEFORE:
        masks_a.set_densities(densities[: len(masks_a.layers)])
        for _ in range(3):
            _step(model_a, opt_a, next(batches))
    state = masks_a.state_dict()
    if regrowth == "feedback":  # DPF keeps θ of pruned weights, which the parameters do not hold
        dense = state["layers"][masks_a.layers[0].info.name]["dense"]
        assert not torch.equal(dense, masks_a.layers[0].info.module.weight.detach())
    model_b, opt_b = _copy(model_a, opt_a, net, kind)
    masks_b = _masks(model_b, opt_b, granularity, selector, regrowth, exchange, 12345, updates_pruned)
    masks_b.load_state_dict(roundtrip(state))
    assert_same(masks_a.state_dict(), masks_b.state_dict())
    assert masks_b.densities == masks_a.densities
    assert masks_b.global_density() == masks_a.global_density()
    for a, b in zip(masks_a.all_layers, masks_b.all_layers, strict=True):
        assert_same(a.active_weight_mask, b.active_weight_mask)
        assert a.active_weights() == b.active_weights() and a.num_active == b.num_active
    _same_run(model_a, opt_a, model_b, opt_b)
    for densities in AFTER:  # growth too: regrown units draw from the restored generator
        for masks in (masks_a, masks_b):
            masks.set_densities(densities[: len(masks.layers)])
        _same_run(model_a, opt_a, model_b, opt_b)
        for _ in range(3):
            batch = next(batches)
            _step(model_a, opt_a, batch)
            _step(model_b, opt_b, batch)
            _same_run(model_a, opt_a, model_b, opt_b)
            assert_same(masks_a.state_dict(), masks_b.state_dict())


def test_loading_reapplies_the_masks_to_the_parameters():
    model = _model("mlp", 0)
    opt = _optimizer(model, "sgd")
    masks = _masks(model, opt, "neuron", "magnitude", "random", 0.0, 0)
    masks.set_densities([0.5, 0.25, 1.0][: len(masks.layers)])
    state = masks.state_dict()
    fresh = _model("mlp", 3)  # dense parameters of another initialisation
    restored = _masks(fresh, _optimizer(fresh, "sgd"), "neuron", "magnitude", "random", 0.0, 0)
    restored.load_state_dict(state)
    for layer in restored.all_layers:
        weight, bias = layer.info.module.weight, layer.info.module.bias
        assert torch.all(weight[~layer.weight_mask()] == 0)
        assert torch.all(bias[~layer.unit_mask] == 0)
        assert torch.all(weight[layer.weight_mask()] != 0)  # active entries keep the parameter's values


def test_state_is_a_copy():
    model = _model("mlp", 0)
    opt = _optimizer(model, "sgd")
    masks = _masks(model, opt, "weight", "magnitude", "feedback", 0.0, 0)
    masks.set_densities([0.5, 0.5, 0.5])
    state = masks.state_dict()
    kept = roundtrip(state)
    for batch in _batches(2):
        _step(model, opt, batch)
    masks.set_densities([0.2, 0.2, 0.2])
    assert_same(state, kept)


def _mismatch_cases():
    return {
        "width": (lambda: _model("mlp", 0, {"widths": (32, 20)}), "weight", "random", r"layer '\S+'.*shape"),
        "names": (lambda: _model("cnn", 0), "weight", "random", "layer"),
        "dpf": (lambda: _model("mlp", 0), "weight", "feedback", "dense"),
        "granularity": (lambda: _model("mlp", 0), "neuron", "random", "unit_mask has shape"),
    }


@pytest.mark.parametrize("case", ["width", "names", "dpf", "granularity"])
def test_mismatched_states_are_refused_and_change_nothing(case):
    source = _model("mlp", 0)
    masks = _masks(source, None, "weight", "magnitude", "random", 0.0, 0)
    masks.set_densities([0.5, 0.4, 0.3])
    build, granularity, regrowth, message = _mismatch_cases()[case]
    target = build()
    other = _masks(target, None, granularity, "magnitude", regrowth, 0.0, 1)
    other.set_densities([0.9] * len(other.layers))
    before, params = other.state_dict(), {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        other.load_state_dict(masks.state_dict())
    assert_same(other.state_dict(), before)
    assert_same(target.state_dict(), params)


def test_malformed_states_are_refused():
    masks = _masks(_model("mlp", 0), None, "weight", "magnitude", "random", 0.0, 0)
    good = masks.state_dict()
    first = masks.all_layers[0].info.name
    with pytest.raises(ValueError, match="generator"):
        masks.load_state_dict({"layers": good["layers"]})
    with pytest.raises(ValueError, match="unit_mask has dtype"):
        masks.load_state_dict(
            {
                **good,
                "layers": {
                    **good["layers"],
                    first: {**good["layers"][first], "unit_mask": 1.0 * good["layers"][first]["unit_mask"]},
                },
            }
        )
    no_unit = {**good["layers"][first], "unit_mask": torch.zeros_like(good["layers"][first]["unit_mask"])}
    with pytest.raises(ValueError, match=f"layer '{first}'.*no active unit"):
        masks.load_state_dict({**good, "layers": {**good["layers"], first: no_unit}})
    with pytest.raises(ValueError, match="generator"):
        masks.load_state_dict({**good, "generator": torch.zeros(3, dtype=torch.uint8)})


# ----------------------------------------------------------------------------------------------- freezer
def _freezer_run(model, opt, freezer, frozen_per_phase, batches):
    for frozen in frozen_per_phase:
        for i, mask in enumerate(frozen):
            freezer.set_frozen(i, torch.tensor(mask))
        for _ in range(2):
            _step(model, opt, next(batches))


def _hidden(model):
    """The hidden Linear / Conv2d layers of a zoo network (the output layer is never frozen)."""
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][:-1]


def _rows(width, frozen):
    return [i in frozen for i in range(width)]


@pytest.mark.parametrize(("net", "kind"), [("mlp", "sgd"), ("mlp", "adam"), ("cnn", "sgd"), ("cnn", "adam")])
def test_restored_freezer_continues_exactly(net, kind):
    model_a = _model(net, 0)
    opt_a = _optimizer(model_a, kind)
    freezer_a = RowFreezer(opt_a, _hidden(model_a))
    n1, n2 = (m.weight.shape[0] for m in _hidden(model_a))
    phases_before = [
        (_rows(n1, range(n1 // 4)), _rows(n2, ())),
        (_rows(n1, range(1, n1 // 2)), _rows(n2, range(n2 // 4))),
    ]
    # the second layer's first rows stay frozen across the checkpoint; thaws reset first moments
    phases_after = [
        (_rows(n1, range(n1 // 2, n1)), _rows(n2, range(n2 // 4))),
        (_rows(n1, ()), _rows(n2, range(n2))),
        (_rows(n1, ()), _rows(n2, ())),
    ]
    batches = iter(_batches(2 * (len(phases_before) + len(phases_after))))
    _freezer_run(model_a, opt_a, freezer_a, phases_before, batches)
    state = freezer_a.state_dict()
    assert_same(state["frozen"], freezer_a.frozen_masks)
    model_b, opt_b = _copy(model_a, opt_a, net, kind)
    freezer_b = RowFreezer(opt_b, _hidden(model_b))
    freezer_b.load_state_dict(roundtrip(state))
    assert_same(freezer_b.state_dict(), state)
    assert freezer_b.frozen_fraction == freezer_a.frozen_fraction
    second = _hidden(model_b)[1]
    frozen_rows = second.weight.detach()[: n2 // 4].clone(), second.bias.detach()[: n2 // 4].clone()
    for frozen in phases_after:
        for freezer in (freezer_a, freezer_b):
            for i, mask in enumerate(frozen):
                freezer.set_frozen(i, torch.tensor(mask))
        _same_run(model_a, opt_a, model_b, opt_b)
        for _ in range(2):
            batch = next(batches)
            _step(model_a, opt_a, batch)
            _step(model_b, opt_b, batch)
            _same_run(model_a, opt_a, model_b, opt_b)
        if frozen is phases_after[0]:  # frozen since before the checkpoint: bit-identical to the saved rows
            assert torch.equal(second.weight.detach()[: n2 // 4], frozen_rows[0])
            assert torch.equal(second.bias.detach()[: n2 // 4], frozen_rows[1])


def test_freezer_mismatched_states_are_refused():
    model = _model("mlp", 0)
    opt = _optimizer(model, "sgd")
    freezer = RowFreezer(opt, [model[1], model[3]])
    freezer.set_frozen(0, torch.arange(32) < 5)
    state = freezer.state_dict()
    one = RowFreezer(opt, [model[1]])
    with pytest.raises(ValueError, match=r"2 masks.*1"):
        one.load_state_dict(state)
    swapped = RowFreezer(opt, [model[3], model[1]])
    with pytest.raises(ValueError, match=r"frozen\[0\] has shape \(32,\); expected \(24,\)"):
        swapped.load_state_dict(state)
    assert not swapped.frozen(0).any() and not swapped.frozen(1).any()
    with pytest.raises(ValueError, match="frozen"):
        freezer.load_state_dict({"masks": state["frozen"]})


def test_freezer_state_during_a_step_is_refused():
    model = _model("mlp", 0)
    opt = _optimizer(model, "sgd")
    freezer = RowFreezer(opt, [model[1]])
    freezer.set_frozen(0, torch.arange(32) < 5)
    seen = []

    def during(opt, args, kwargs):
        try:
            freezer.state_dict()
        except RuntimeError as error:
            seen.append(str(error))

    opt.register_step_pre_hook(during)  # runs after the freezer's own pre-step hook
    _step(model, opt, _batches(1)[0])
    assert seen and "during an optimizer step" in seen[0]
    assert_same(freezer.state_dict()["frozen"][0], torch.arange(32) < 5)
