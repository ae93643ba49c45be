"""Tests of NEq freezing mechanics (CRITERIA.md §4)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from sparsity_gym.masks.freezing import RowFreezer

OptFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]

OPTIMIZERS: dict[str, OptFactory] = {
    "sgd_nesterov_wd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=True),
    "adam_wd": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-1),
    "adam_amsgrad_foreach": lambda p: torch.optim.Adam(p, lr=1e-2, amsgrad=True, foreach=True),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-2, momentum=0.5, weight_decay=1e-2),
}


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int, in_shape: tuple[int, ...], seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, *in_shape, generator=g)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_frozen_rows_bit_identical(name: str) -> None:
    model = _mlp()
    opt = OPTIMIZERS[name](list(model.parameters()))
    _train(model, opt, 3, (6,))  # optimizer state exists before freezing
    freezer = RowFreezer(opt, [model[0], model[2]])
    freezer.set_frozen(0, torch.tensor([False, True, False, True, False]))
    freezer.set_frozen(model[2], torch.tensor([True, False, False]))
    w0, b0 = model[0].weight.detach().clone(), model[0].bias.detach().clone()
    w2, b2 = model[2].weight.detach().clone(), model[2].bias.detach().clone()
    state_before = {k: v.clone() for k, v in opt.state[model[0].weight].items()}
    _train(model, opt, 25, (6,), seed=2)
    rows = torch.tensor([1, 3])
    assert torch.equal(model[0].weight.detach()[rows], w0[rows])
    assert torch.equal(model[0].bias.detach()[rows], b0[rows])
    assert torch.equal(model[2].weight.detach()[0], w2[0])
    assert torch.equal(model[2].bias.detach()[0], b2[0])
    # unfrozen rows do change
    free = torch.tensor([0, 2, 4])
    assert not torch.equal(model[0].weight.detach()[free], w0[free])
    assert not torch.equal(model[2].weight.detach()[1:], w2[1:])
    # per-element optimizer state of frozen rows does not drift while frozen
    for key, value in opt.state[model[0].weight].items():
        if value.dim() > 0:
            assert torch.equal(value[rows], state_before[key][rows]), key
    freezer.remove()


@pytest.mark.parametrize("name", ["sgd_nesterov_wd", "adamw"])
def test_freeze_before_first_step(name: str) -> None:
    model = _mlp()
    opt = OPTIMIZERS[name](list(model.parameters()))
    with RowFreezer(opt, [model[0]]) as freezer:
        freezer.set_frozen(0, torch.tensor([True, False, False, False, True]))
        w0 = model[0].weight.detach().clone()
        _train(model, opt, 5, (6,))
        assert torch.equal(model[0].weight.detach()[0], w0[0])
        assert torch.equal(model[0].weight.detach()[4], w0[4])
        # state created by the step starts at 0 for frozen rows
        for value in opt.state[model[0].weight].values():
            if value.dim() > 0:
                assert float(value[torch.tensor([0, 4])].abs().sum()) == 0.0
        # grads of frozen rows are zeroed before the step
        assert float(model[0].weight.grad[0].abs().sum()) == 0.0


def test_forward_unchanged() -> None:
    model = _mlp()
    x = torch.randn(4, 6)
    y = model(x)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    freezer = RowFreezer(opt, [model[0], model[2]])
    freezer.set_frozen(0, torch.ones(5, dtype=torch.bool))
    assert torch.equal(model(x), y)


def test_thaw_restarts_first_moment_keeps_second() -> None:
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    _train(model, opt, 3, (6,))
    w = model[0].weight
    freezer = RowFreezer(opt, [model[0]])
    freezer.set_frozen(0, torch.tensor([True, True, False, False, False]))
    _train(model, opt, 3, (6,))
    sq_before = opt.state[w]["exp_avg_sq"][:2].clone()
    assert float(opt.state[w]["exp_avg"][:2].abs().sum()) > 0
    freezer.set_frozen(0, torch.tensor([False, True, False, False, False]))  # row 0 thaws
    assert torch.equal(opt.state[w]["exp_avg"][0], torch.zeros(6))
    assert torch.equal(opt.state[model[0].bias]["exp_avg"][0], torch.zeros(()))
    assert float(opt.state[w]["exp_avg"][1].abs().sum()) > 0  # still frozen: untouched
    assert torch.equal(opt.state[w]["exp_avg_sq"][:2], sq_before)
    w_row0 = w.detach()[0].clone()
    _train(model, opt, 1, (6,))
    assert not torch.equal(w.detach()[0], w_row0)  # thawed row trains again


def test_thaw_zeroes_sgd_momentum() -> None:
    model = _mlp()
    opt = OPTIMIZERS["sgd_nesterov_wd"](list(model.parameters()))
    _train(model, opt, 3, (6,))
    freezer = RowFreezer(opt, [model[0], model[2]])
    freezer.set_frozen(1, torch.tensor([False, True, True]))
    _train(model, opt, 2, (6,))
    buf = opt.state[model[2].weight]["momentum_buffer"]
    assert float(buf[1:].abs().sum()) > 0
    freezer.set_frozen(1, torch.zeros(3, dtype=torch.bool))
    assert torch.equal(buf[1:], torch.zeros(2, 5))
    assert torch.equal(opt.state[model[2].bias]["momentum_buffer"][1:], torch.zeros(2))
    assert float(buf[0].abs().sum()) > 0


def test_masks_change_between_steps() -> None:
    model = _mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    freezer = RowFreezer(opt, [model[0]])
    g = torch.Generator().manual_seed(3)
    for step in range(12):
        mask = torch.rand(5, generator=g) > 0.5
        freezer.set_frozen(0, mask)
        w, b = model[0].weight.detach().clone(), model[0].bias.detach().clone()
        _train(model, opt, 1, (6,), seed=step)
        assert torch.equal(model[0].weight.detach()[mask], w[mask])
        assert torch.equal(model[0].bias.detach()[mask], b[mask])
        if bool((~mask).any()):
            assert not torch.equal(model[0].weight.detach()[~mask], w[~mask])


@pytest.mark.parametrize("name", ["sgd_nesterov_wd", "adam_wd", "adamw"])
def test_conv_channels(name: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1), nn.Flatten())
    opt = OPTIMIZERS[name](list(model.parameters()))
    _train(model, opt, 2, (3, 6, 6))
    freezer = RowFreezer(opt, [model[0], model[2]])
    mask = torch.tensor([False, True, False, True])
    freezer.set_frozen(0, mask)
    w, b = model[0].weight.detach().clone(), model[0].bias.detach().clone()
    _train(model, opt, 10, (3, 6, 6), seed=5)
    assert torch.equal(model[0].weight.detach()[mask], w[mask])  # whole kernels
    assert torch.equal(model[0].bias.detach()[mask], b[mask])
    assert not torch.equal(model[0].weight.detach()[~mask], w[~mask])


def test_remove_stops_enforcement() -> None:
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    freezer = RowFreezer(opt, [model[0]])
    freezer.set_frozen(0, torch.ones(5, dtype=torch.bool))
    freezer.remove()
    freezer.remove()  # idempotent
    w = model[0].weight.detach().clone()
    _train(model, opt, 1, (6,))
    assert not torch.equal(model[0].weight.detach(), w)


def test_layer_without_bias_and_closure_step() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(4, 3, bias=False)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    freezer = RowFreezer(opt, [layer])
    freezer.set_frozen(layer, torch.tensor([False, False, True]))
    w = layer.weight.detach().clone()
    x = torch.randn(5, 4)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = layer(x).pow(2).mean()
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    assert torch.equal(layer.weight.detach()[2], w[2])
    assert not torch.equal(layer.weight.detach()[:2], w[:2])


def test_frozen_fraction_and_masks() -> None:
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    freezer = RowFreezer(opt, [model[0], model[2]])
    assert freezer.frozen_fraction == 0.0
    freezer.set_frozen(0, torch.tensor([True, True, False, False, False]))
    freezer.set_frozen(-1, torch.tensor([True, False, True]))
    assert freezer.frozen_fraction == pytest.approx(4 / 8)
    assert freezer.frozen(model[2]).tolist() == [True, False, True]
    assert freezer.frozen_masks[0].tolist() == [True, True, False, False, False]


def test_saved_backward_flops() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(6, 5)
    conv = nn.Conv2d(3, 4, 3)  # on 8×8 input: 6×6 output positions, F = 27
    grouped = nn.Conv2d(4, 4, 3, groups=2)  # F = 2·3·3 = 18
    opt = torch.optim.SGD([*lin.parameters(), *conv.parameters(), *grouped.parameters()], lr=0.1)
    freezer = RowFreezer(opt, [lin, conv, grouped])
    freezer.set_frozen(lin, torch.tensor([True, True, False, False, False]))
    assert freezer.saved_backward_flops(8) == 2 * 2 * 8 * 1 * 6
    freezer.set_frozen(conv, torch.tensor([True, False, False, False]))
    freezer.set_frozen(grouped, torch.tensor([False, False, True, True]))
    with pytest.raises(ValueError, match="conv layer 1"):
        freezer.saved_backward_flops(8)
    expected = 2 * 2 * 8 * 1 * 6 + 1 * 2 * 8 * 36 * 27 + 2 * 2 * 8 * 16 * 18
    assert freezer.saved_backward_flops(8, {1: 36, grouped: 16}) == expected
    assert freezer.saved_backward_flops(8, {conv: 36, 2: 16, 0: 3}) == expected + 2 * 2 * 8 * 2 * 6


def test_validation() -> None:
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError):
        RowFreezer(opt, [model[1]])
    freezer = RowFreezer(opt, [model[0]])
    with pytest.raises(ValueError, match="shape"):
        freezer.set_frozen(0, torch.ones(4, dtype=torch.bool))
    with pytest.raises(IndexError):
        freezer.set_frozen(1, torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError):
        freezer.set_frozen(model[2], torch.ones(3, dtype=torch.bool))
