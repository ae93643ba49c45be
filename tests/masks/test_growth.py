"""Growth as the env runs it: MaskedNetwork writes grown units (fan-in, bias 0, fan-out 0, optimizer state 0).

Moved from the tests of ``criteria.dyno.grow_units`` / ``grow_linear_units``, copies the env never ran
(issue 12): the same assertions, on :class:`MaskedNetwork` with NORTH-Select growth (CRITERIA §2).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsity_gym.criteria.dyno import north_select
from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.masks.selectors import SelectionContext
from sparsity_gym.models.layers import find_prunable_layers


def _adam_after_steps(model: nn.Module, x: torch.Tensor, steps: int = 3) -> torch.optim.Adam:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    return opt


def test_linear_growth_writes_slots_and_zeroes_state() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    opt = _adam_after_steps(model, x)  # Adam state everywhere
    masks = MaskedNetwork(find_prunable_layers(model, (4,)), granularity="neuron", regrowth="north", optimizer=opt)
    slots = torch.tensor([1, 4])
    masks.set_keep([~torch.isin(torch.arange(6), slots)])
    layer, nxt = model[0], model[2]
    before_w, before_b, before_n = (
        layer.weight.detach().clone(),
        layer.bias.detach().clone(),
        nxt.weight.detach().clone(),
    )
    out_before = model(x).detach()
    active = ~torch.isin(torch.arange(6), slots)
    expected, _ = north_select(
        x, before_w[active], before_b[active], 2, torch.relu, torch.Generator().manual_seed(5)
    )  # an independent replay of the same draw
    masks.set_counts([6], SelectionContext(torch.Generator().manual_seed(5), {"layer_inputs": {"0": x}}))
    assert torch.equal(layer.weight.detach()[slots], expected)
    assert torch.equal(layer.bias.detach()[slots], torch.zeros(2))
    assert torch.equal(nxt.weight.detach()[:, slots], torch.zeros(3, 2))
    others = torch.tensor([0, 2, 3, 5])
    assert torch.equal(layer.weight.detach()[others], before_w[others])
    assert torch.equal(layer.bias.detach()[others], before_b[others])
    assert torch.equal(nxt.weight.detach()[:, others], before_n[:, others])
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(opt.state[layer.weight][key][slots], torch.zeros(2, 4))
        assert torch.equal(opt.state[layer.bias][key][slots], torch.zeros(2))
        assert torch.equal(opt.state[nxt.weight][key][:, slots], torch.zeros(3, 2))
        assert bool((opt.state[layer.weight][key][others] != 0).any())
    torch.testing.assert_close(model(x).detach(), out_before, rtol=0, atol=0)  # zero fan-out: same function


def test_conv_growth_reshapes_flat_fan_ins() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(2, 5, 3), nn.ReLU(), nn.Conv2d(5, 4, 1))
    masks = MaskedNetwork(find_prunable_layers(model, (2, 6, 6)), granularity="neuron", regrowth="north")
    slots = torch.tensor([0, 3])
    active = ~torch.isin(torch.arange(5), slots)
    masks.set_keep([active, torch.ones(4, dtype=torch.bool)][: len(masks.layers)])
    conv, nxt = model[0], model[2]
    patches = F.unfold(torch.randn(3, 2, 6, 6), 3).transpose(1, 2).reshape(-1, 18)  # (n·h·w, C_in·kh·kw)
    w = conv.weight.detach().flatten(1)
    new, _ = north_select(
        patches, w[active], conv.bias.detach()[active], 2, torch.relu, torch.Generator().manual_seed(9)
    )
    masks.set_counts(
        [5, *([4] if len(masks.layers) > 1 else [])],
        SelectionContext(torch.Generator().manual_seed(9), {"layer_inputs": {"0": patches}}),
    )
    assert torch.equal(conv.weight.detach()[slots], new.reshape(2, 2, 3, 3))
    assert torch.equal(conv.bias.detach()[slots], torch.zeros(2))
    assert float(nxt.weight.detach()[:, slots].abs().sum()) == 0.0
