"""The one function that zeroes optimizer state (regrown units, grown fan-out, thawed rows).

Moved from the tests of ``criteria.dyno.zero_optimizer_state_rows``, a copy the env never ran (issue 12):
the same assertions, on the code the masks and the freezer call.
"""

import torch
import torch.nn as nn

from sparsity_gym.masks.optimizer_state import zero_optimizer_state


def _adam_after_steps(model: nn.Module, steps: int = 3) -> torch.optim.Adam:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randn(16, model[0].in_features, generator=torch.Generator().manual_seed(0))
    for _ in range(steps):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    return opt


def test_sgd_rows_columns_and_keys() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    w = model[0].weight
    buf = opt.state[w]["momentum_buffer"]
    assert bool((buf != 0).all())
    zero_optimizer_state(opt, w, (torch.arange(3) == 2).view(1, 3))  # column 2 (a unit's fan-out)
    assert torch.equal(buf[:, 2], torch.zeros(4))
    zero_optimizer_state(opt, w, torch.tensor([True, False, False, False]).view(4, 1))  # row 0 (fan-in)
    assert torch.equal(buf[0], torch.zeros(3))
    assert bool((buf[1:, :2] != 0).all())
    zero_optimizer_state(opt, w, (torch.arange(4) == 1).view(4, 1), keys=("exp_avg",))  # another key: untouched
    assert bool((buf[1, :2] != 0).all())
    # no state yet, or no optimizer: no-op
    fresh = nn.Linear(2, 2)
    zero_optimizer_state(opt, fresh.weight, torch.ones(2, 1, dtype=torch.bool))
    zero_optimizer_state(None, w, torch.ones(4, 1, dtype=torch.bool))
    assert bool((buf[1:, :2] != 0).all())


def test_adam_step_is_left_alone() -> None:
    model = nn.Sequential(nn.Linear(3, 4))
    opt = _adam_after_steps(model, 2)
    w = model[0].weight
    step = opt.state[w]["step"].clone()
    zero_optimizer_state(opt, w, (torch.arange(4) < 2).view(4, 1))
    assert torch.equal(opt.state[w]["step"], step)
    assert torch.equal(opt.state[w]["exp_avg_sq"][:2], torch.zeros(2, 3))
    assert torch.equal(opt.state[w]["exp_avg"][:2], torch.zeros(2, 3))
    assert bool((opt.state[w]["exp_avg_sq"][2:] != 0).any())
